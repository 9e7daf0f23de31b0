"""Bounds on open streams: per connection, and per process.

A connection is named by the peer string gRPC gives (address and port of the
client's end, e.g. ``ipv4:10.0.0.7:53000``), so every stream of one channel
counts against the same connection. A stream past either bound is refused at
once with RESOURCE_EXHAUSTED (``STREAM_LIMIT`` or ``SUBSCRIBER_LIMIT``) and a
RetryInfo, instead of being opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from exchange_common.errors import ResourceExhausted

RETRY_AFTER = 1.0


class StreamSlots:
    def __init__(self, per_connection: int, total: int | None = None,
                 what: str = "streams") -> None:
        self.per_connection = per_connection
        self.total = total
        self.what = what
        self.open = 0
        self.by_peer: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, context: grpc.aio.ServicerContext) -> Iterator[None]:
        """A slot for the stream of ``context`` while the block runs, or the refusal."""
        peer = context.peer() or ""
        if self.total is not None and self.open >= self.total:
            raise ResourceExhausted(
                f"this server has {self.total} {self.what} open, its limit; try again "
                "later or elsewhere", reason="SUBSCRIBER_LIMIT", retry_after=RETRY_AFTER)
        mine = self.by_peer.get(peer, 0)
        if mine >= self.per_connection:
            raise ResourceExhausted(
                f"{self.per_connection} {self.what} are open on this connection, its limit; "
                "close one or open another connection", reason="STREAM_LIMIT",
                retry_after=RETRY_AFTER)
        self.open += 1
        self.by_peer[peer] = mine + 1
        try:
            yield
        finally:
            self.open -= 1
            left = self.by_peer[peer] - 1
            if left:
                self.by_peer[peer] = left
            else:
                del self.by_peer[peer]
