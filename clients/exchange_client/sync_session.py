"""The blocking OrderEntry session: :class:`OrderEntrySession`
(``ExchangeClient.order_entry(...)``), the counterpart of
:class:`exchange_client.session.AsyncOrderEntrySession` with the same rules (one command
in flight per order, a normal exit of the ``with`` block is the goodbye).

The requests go out from a queue that gRPC's own thread reads; a reader thread takes
the answers. Each method blocks until its command's answer; :meth:`send` places many in
one message; :meth:`submit` returns a ``concurrent.futures.Future``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import grpc

from exchange.order.v1 import order_pb2
from exchange_client._convert import DecimalLike
from exchange_client.errors import ExchangeError, from_grpc_error
from exchange_client.session import (
    Correlator,
    amend_command,
    cancel_command,
    create_command,
    is_session_error,
    options_message,
)


class OrderEntrySession:
    """One OrderEntry stream (made by ``ExchangeClient.order_entry``)."""

    def __init__(self, stub: Any, metadata: Sequence[tuple[str, str]], *,
                 cancel_on_disconnect: bool = False, dead_man_seconds: int = 0) -> None:
        self._stub = stub
        self._metadata = tuple(metadata)
        self._options = options_message(cancel_on_disconnect, dead_man_seconds)
        self._initial_options = cancel_on_disconnect or dead_man_seconds > 0
        self._correlator = Correlator()
        self._lock = threading.Lock()
        self._requests: queue.Queue[order_pb2.OrderEntryRequest | None] = queue.Queue()
        self._call: Any = None
        self._reader: threading.Thread | None = None
        self._closing = False
        self._ended = False
        self._failed: ExchangeError | None = None
        #: The session's own responses (notices, session-level errors), oldest first.
        self.notices: list[order_pb2.OrderEntryResponse] = []
        self._notices: queue.Queue[order_pb2.OrderEntryResponse] = queue.Queue()

    def __enter__(self) -> OrderEntrySession:
        if self._initial_options:
            self._requests.put(order_pb2.OrderEntryRequest(options=self._options))
        self._call = self._stub.OrderEntry(self._outgoing(), metadata=self._metadata)
        self._reader = threading.Thread(target=self._read, name="order-entry-reader",
                                        daemon=True)
        self._reader.start()
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _outgoing(self) -> Iterator[order_pb2.OrderEntryRequest]:
        while True:
            request = self._requests.get()
            if request is None:
                return  # the goodbye: gRPC half-closes the stream
            yield request

    # -- commands -----------------------------------------------------------------------

    def create(self, instrument: str, side: str, quantity: DecimalLike | None,
               **kwargs: Any) -> order_pb2.OrderEntryEvent:
        return self.submit(create_command(instrument, side, quantity, **kwargs)).result()

    def cancel(self, order_id: str | None = None, *,
               client_order_id: str | None = None) -> order_pb2.Order:
        return self.submit(cancel_command(order_id,
                                          client_order_id=client_order_id)).result().order

    def amend(self, order_id: str | None = None, *, client_order_id: str | None = None,
              price: DecimalLike | None = None, quantity: DecimalLike | None = None
              ) -> order_pb2.OrderEntryEvent:
        return self.submit(amend_command(order_id, client_order_id=client_order_id,
                                         price=price, quantity=quantity)).result()

    def submit(self, command: order_pb2.OrderEntryCommand
               ) -> Future[order_pb2.OrderEntryEvent]:
        return self._submit([command])[0]

    def send(self, commands: Sequence[order_pb2.OrderEntryCommand], *,
             return_exceptions: bool = False) -> list[Any]:
        """Many commands in one message; their answers in order (errors raised, or
        returned with ``return_exceptions``)."""
        out: list[Any] = []
        for future in self._submit(commands):
            try:
                out.append(future.result())
            except ExchangeError as err:
                if not return_exceptions:
                    raise
                out.append(err)
        return out

    def _submit(self, commands: Sequence[order_pb2.OrderEntryCommand]
                ) -> list[Future[order_pb2.OrderEntryEvent]]:
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._closing or self._call is None:
                raise RuntimeError("the session is not open")
            futures: list[Future[order_pb2.OrderEntryEvent]] = []
            now = []
            for command in commands:
                future: Future[order_pb2.OrderEntryEvent] = Future()
                futures.append(future)
                if self._correlator.submit(command, future):
                    now.append(command)
            if now:
                self._requests.put(order_pb2.OrderEntryRequest(commands=now))
        return futures

    # -- options and notices ------------------------------------------------------------

    def set_options(self, *, cancel_on_disconnect: bool | None = None,
                    dead_man_seconds: int | None = None) -> None:
        current = self._options
        self._options = options_message(
            current.cancel_on_disconnect if cancel_on_disconnect is None
            else cancel_on_disconnect,
            current.dead_man_seconds if dead_man_seconds is None else dead_man_seconds)
        self._requests.put(order_pb2.OrderEntryRequest(options=self._options))

    def renew(self) -> None:
        """Restart the dead-man timer (the options sent again)."""
        self.set_options()

    def next_notice(self, timeout: float | None = None) -> order_pb2.OrderEntryResponse:
        """The next notice (queue.Empty after ``timeout`` seconds)."""
        return self._notices.get(timeout=timeout)

    # -- the stream ---------------------------------------------------------------------

    def _read(self) -> None:
        try:
            for response in self._call:
                self._received(response)
            failure = ExchangeError("the session ended", reason="SESSION_ENDED")
        except grpc.RpcError as err:
            failure = from_grpc_error(err)
        with self._lock:
            self._ended = True
            if self._failed is None:
                self._failed = failure
            self._correlator.fail_all(failure)

    def _received(self, response: order_pb2.OrderEntryResponse) -> None:
        session_events = [e for e in response.events if is_session_error(e)]
        if response.notice or response.cancelled or session_events:
            notice = order_pb2.OrderEntryResponse(notice=response.notice,
                                                  cancelled=response.cancelled,
                                                  events=session_events)
            self.notices.append(notice)
            self._notices.put(notice)
        with self._lock:
            now = []
            for event in response.events:
                if not is_session_error(event):
                    now.extend(self._correlator.resolve(event))
            if now:
                self._requests.put(order_pb2.OrderEntryRequest(commands=now))
            if self._closing and not self._correlator.pending:
                self._requests.put(None)

    def close(self) -> None:
        """Say goodbye: half-close once every command is answered; wait for the end."""
        if self._call is None:
            return
        with self._lock:
            self._closing = True
            if not self._correlator.pending:
                self._requests.put(None)
        if self._reader is not None:
            self._reader.join()
        if self._failed is not None and self._failed.reason != "SESSION_ENDED":
            raise self._failed

    def abort(self) -> None:
        """End the session without a goodbye (the server treats it as a disconnect)."""
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.join()
