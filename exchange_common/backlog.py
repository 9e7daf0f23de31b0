"""Calls a gRPC server's core has received and this process has not taken yet.

A gRPC asyncio server takes calls from core one at a time, each after a trip through the
event loop; the calls that arrive meanwhile wait in core, out of the process's sight. Core
counts the calls it has received (channelz's ``callsStarted``, read in-process as
grpcio-channelz's servicer reads it), a server interceptor counts the calls taken, and the
difference is that queue. Reading channelz costs about 0.1 ms, so it is sampled, not read
per call.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

try:  # channelz, read in-process (what grpcio-channelz's servicer serves over gRPC)
    from grpc._cython import cygrpc  # type: ignore[attr-defined]

    _channelz_servers: Callable[[int], bytes] | None = cygrpc.channelz_get_servers
    _channelz_server: Callable[[int], bytes] | None = cygrpc.channelz_get_server
except (ImportError, AttributeError):  # pragma: no cover - a grpcio without channelz
    _channelz_servers = _channelz_server = None


def server_ids() -> set[int]:
    """The channelz ids of this process's gRPC servers."""
    if _channelz_servers is None:
        return set()
    found = json.loads(_channelz_servers(0)).get("server", [])
    return {int(s["ref"]["serverId"]) for s in found}


class Backlog(grpc.aio.ServerInterceptor):
    """Calls a server's core has received and this process has not taken yet. Install it
    as the server's interceptor and ``attach`` the server's channelz id."""

    def __init__(self) -> None:
        self.taken = 0
        self.server_id: int | None = None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails],
                               Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        self.taken += 1
        return await continuation(handler_call_details)

    def attach(self, server_id: int | None) -> None:
        self.server_id = server_id

    def received(self) -> int | None:
        """Calls the server's core has received (None when channelz cannot say)."""
        if self.server_id is None or _channelz_server is None:
            return None
        try:
            data = json.loads(_channelz_server(self.server_id))["server"]["data"]
        except (ValueError, KeyError):
            return None
        return int(data.get("callsStarted", 0))
