"""The OrderEntry session in the client library: :class:`AsyncOrderEntrySession`
(``client.order_entry(...)``); the blocking one is in ``sync_session.py``.

Each ``create`` / ``cancel`` / ``amend`` returns the answer to that command. Commands
issued together (``asyncio.gather``, or :meth:`AsyncOrderEntrySession.send`) go out in
one request message. The server answers by client_order_id and in any order, so the
session keeps at most one command in flight per order (per client_order_id; commands by
order_id alone, whose errors name no client_order_id, one at a time): a later command
about the same order waits for the earlier one's answer, and an answer can never be
taken for another command's.

Leaving the ``async with`` block normally is a goodbye (the session half-closes and
waits for the answers still due); leaving it with an exception, or losing the process,
is not: with ``cancel_on_disconnect`` the server then cancels the session's open orders.
Notices (the dead-man timer's, with the orders it cancelled, and session-level errors)
are kept in :attr:`AsyncOrderEntrySession.notices` and can be awaited with
:meth:`AsyncOrderEntrySession.next_notice`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import grpc

from exchange.order.v1 import order_pb2
from exchange_client import _convert as cv
from exchange_client._convert import DecimalLike, TimeLike
from exchange_client.errors import ExchangeError, from_grpc_error, from_status_proto

# How the server echoes a long client_order_id (order_service.session.echoed).
MAX_ECHOED = 64
MAX_DEAD_MAN_SECONDS = 3600
MAX_COMMANDS_PER_MESSAGE = 1000
# Error events that answer no command: a refused options message, a dead-man timer
# whose mass cancel did not finish.
SESSION_REASONS = frozenset({"DEAD_MAN_SECONDS_INVALID", "CANCEL_ALL_INCOMPLETE"})


def key_of(command: order_pb2.OrderEntryCommand) -> str:
    """The client_order_id an answer to ``command`` will carry when it fails ("" for a
    cancel or amend by order_id)."""
    which = command.WhichOneof("command")
    coid = getattr(command, which).client_order_id if which else ""
    return coid if len(coid) <= MAX_ECHOED else coid[:MAX_ECHOED] + "..."


def options_message(cancel_on_disconnect: bool, dead_man_seconds: int
                    ) -> order_pb2.SessionOptions:
    if (isinstance(dead_man_seconds, bool) or not isinstance(dead_man_seconds, int)
            or not 0 <= dead_man_seconds <= MAX_DEAD_MAN_SECONDS):
        raise ValueError(f"dead_man_seconds must be 1-{MAX_DEAD_MAN_SECONDS}, or 0 (off)")
    return order_pb2.SessionOptions(cancel_on_disconnect=bool(cancel_on_disconnect),
                                    dead_man_seconds=dead_man_seconds)


class Correlator:
    """Which command an answer is for: no I/O, any future type with ``set_result`` /
    ``set_exception`` / ``done`` (asyncio's, or concurrent.futures' for the blocking
    session)."""

    def __init__(self) -> None:
        self.in_flight: dict[str, tuple[order_pb2.OrderEntryCommand, Any]] = {}
        self.waiting: dict[str, deque[tuple[order_pb2.OrderEntryCommand, Any]]] = {}

    def submit(self, command: order_pb2.OrderEntryCommand, future: Any) -> bool:
        """Take ``command``; True if it may be sent now (else it waits its turn)."""
        key = key_of(command)
        if key in self.in_flight:
            self.waiting.setdefault(key, deque()).append((command, future))
            return False
        self.in_flight[key] = (command, future)
        return True

    def resolve(self, event: order_pb2.OrderEntryEvent) -> list[order_pb2.OrderEntryCommand]:
        """Answer the command ``event`` is for; the commands that may be sent now."""
        key = event.client_order_id
        by_id = self.in_flight.get("")
        if event.HasField("order") and by_id is not None:
            command = by_id[0]
            which = command.WhichOneof("command")
            if which and getattr(command, which).order_id == event.order.order_id:
                key = ""
        entry = self.in_flight.pop(key, None)
        if entry is None:
            return []
        future = entry[1]
        if not future.done():
            if event.HasField("error"):
                future.set_exception(from_status_proto(event.error))
            else:
                future.set_result(event)
        queue = self.waiting.get(key)
        if not queue:
            self.waiting.pop(key, None)
            return []
        command, future = queue.popleft()
        self.in_flight[key] = (command, future)
        return [command]

    def fail_all(self, err: BaseException) -> None:
        for _, future in [*self.in_flight.values(),
                          *(e for q in self.waiting.values() for e in q)]:
            if not future.done():
                future.set_exception(err)
        self.in_flight.clear()
        self.waiting.clear()

    @property
    def pending(self) -> int:
        return len(self.in_flight) + sum(len(q) for q in self.waiting.values())


def is_session_error(event: order_pb2.OrderEntryEvent) -> bool:
    if not event.HasField("error"):
        return False
    err = from_status_proto(event.error)
    return err.reason in SESSION_REASONS


def create_command(instrument: str, side: str, quantity: DecimalLike | None, *,
                   price: DecimalLike | None = None, type: str = "limit",  # noqa: A002
                   time_in_force: str | None = None, client_order_id: str | None = None,
                   post_only: bool = False, funds: DecimalLike | None = None,
                   self_trade_prevention: str | None = None,
                   stop_price: DecimalLike | None = None,
                   expire_time: TimeLike | None = None) -> order_pb2.OrderEntryCommand:
    """A create command (the arguments of ``create_order``)."""
    return order_pb2.OrderEntryCommand(create=cv.create_order_request(
        instrument, side, quantity, price=price, type_=type, time_in_force_=time_in_force,
        client_order_id=client_order_id, post_only=post_only, funds=funds,
        self_trade_prevention_=self_trade_prevention, stop_price=stop_price,
        expire_time=expire_time))


def cancel_command(order_id: str | None = None, *, client_order_id: str | None = None
                   ) -> order_pb2.OrderEntryCommand:
    return order_pb2.OrderEntryCommand(cancel=cv.cancel_order_request(order_id,
                                                                      client_order_id))


def amend_command(order_id: str | None = None, *, client_order_id: str | None = None,
                  price: DecimalLike | None = None, quantity: DecimalLike | None = None
                  ) -> order_pb2.OrderEntryCommand:
    return order_pb2.OrderEntryCommand(amend=cv.amend_order_request(
        order_id, client_order_id, price, quantity))


class AsyncOrderEntrySession:
    """One OrderEntry stream (made by ``AsyncExchangeClient.order_entry``)."""

    def __init__(self, stub: Any, metadata: Sequence[tuple[str, str]], *,
                 cancel_on_disconnect: bool = False, dead_man_seconds: int = 0) -> None:
        self._stub = stub
        self._metadata = tuple(metadata)
        self._options = options_message(cancel_on_disconnect, dead_man_seconds)
        self._send_options = cancel_on_disconnect or dead_man_seconds > 0
        self._correlator = Correlator()
        self._outbox: deque[order_pb2.OrderEntryCommand] = deque()
        self._wake = asyncio.Event()
        self._call: Any = None
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._failed: ExchangeError | None = None
        #: The session's own responses (``notice`` and ``cancelled``, or a session-level
        #: error event), oldest first.
        self.notices: list[order_pb2.OrderEntryResponse] = []
        self._notice_queue: asyncio.Queue[order_pb2.OrderEntryResponse] = asyncio.Queue()

    async def __aenter__(self) -> AsyncOrderEntrySession:
        self._call = self._stub.OrderEntry(metadata=self._metadata)
        self._writer = asyncio.create_task(self._write())
        self._reader = asyncio.create_task(self._read())
        if self._send_options:
            self._wake.set()
        return self

    async def __aexit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            await self.close()
        else:
            self.abort()

    # -- commands -----------------------------------------------------------------------

    async def create(self, instrument: str, side: str, quantity: DecimalLike | None,
                     **kwargs: Any) -> order_pb2.OrderEntryEvent:
        """Place an order (the arguments of ``create_order``); the answer: ``.order``
        and ``.fills``, or the typed error raised."""
        return await self.execute(create_command(instrument, side, quantity, **kwargs))

    async def cancel(self, order_id: str | None = None, *,
                     client_order_id: str | None = None) -> order_pb2.Order:
        """Cancel by either id; the order after it."""
        event = await self.execute(cancel_command(order_id, client_order_id=client_order_id))
        return event.order

    async def amend(self, order_id: str | None = None, *, client_order_id: str | None = None,
                    price: DecimalLike | None = None, quantity: DecimalLike | None = None
                    ) -> order_pb2.OrderEntryEvent:
        """Amend a resting order's price and/or quantity; ``.order`` and ``.fills``."""
        return await self.execute(amend_command(order_id, client_order_id=client_order_id,
                                                price=price, quantity=quantity))

    async def execute(self, command: order_pb2.OrderEntryCommand) -> order_pb2.OrderEntryEvent:
        """Send one command; its answer (the typed error raised if it failed)."""
        return await self.submit(command)

    def submit(self, command: order_pb2.OrderEntryCommand
               ) -> asyncio.Future[order_pb2.OrderEntryEvent]:
        """Queue one command (sent with the others queued in the same turn of the event
        loop); the future of its answer."""
        if self._failed is not None:
            raise self._failed
        if self._closing or self._call is None:
            raise RuntimeError("the session is not open")
        future: asyncio.Future[order_pb2.OrderEntryEvent] = (
            asyncio.get_running_loop().create_future())
        if self._correlator.submit(command, future):
            self._queue(command)
        return future

    async def send(self, commands: Sequence[order_pb2.OrderEntryCommand], *,
                   return_exceptions: bool = False) -> list[Any]:
        """Many commands at once (one message, as far as their turns allow); their
        answers in order (errors raised, or returned with ``return_exceptions``)."""
        futures = [self.submit(c) for c in commands]
        return list(await asyncio.gather(*futures, return_exceptions=return_exceptions))

    # -- options and notices ------------------------------------------------------------

    async def set_options(self, *, cancel_on_disconnect: bool | None = None,
                          dead_man_seconds: int | None = None) -> None:
        """Change the session's options (each message replaces all of them; what is not
        given stays as it was)."""
        current = self._options
        self._options = options_message(
            current.cancel_on_disconnect if cancel_on_disconnect is None
            else cancel_on_disconnect,
            current.dead_man_seconds if dead_man_seconds is None else dead_man_seconds)
        self._send_options = True
        self._wake.set()

    async def renew(self) -> None:
        """Restart the dead-man timer (the options sent again)."""
        await self.set_options()

    async def next_notice(self, timeout: float | None = None) -> order_pb2.OrderEntryResponse:
        """The next notice (asyncio.TimeoutError after ``timeout`` seconds)."""
        return await asyncio.wait_for(self._notice_queue.get(), timeout)

    # -- the stream ---------------------------------------------------------------------

    def _queue(self, command: order_pb2.OrderEntryCommand) -> None:
        self._outbox.append(command)
        self._wake.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._failed is not None:
                    return
                while self._outbox or self._send_options:
                    n = min(len(self._outbox), MAX_COMMANDS_PER_MESSAGE)
                    request = order_pb2.OrderEntryRequest(
                        commands=[self._outbox.popleft() for _ in range(n)])
                    if self._send_options:
                        request.options.CopyFrom(self._options)
                        self._send_options = False
                    await self._call.write(request)
                if self._closing and not self._correlator.pending:
                    await self._call.done_writing()
                    return
        except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as err:
            self._fail(err)

    async def _read(self) -> None:
        try:
            async for response in self._call:
                self._received(response)
            self._fail(None)
        except grpc.RpcError as err:
            self._fail(err)

    def _received(self, response: order_pb2.OrderEntryResponse) -> None:
        session_events = [e for e in response.events if is_session_error(e)]
        if response.notice or response.cancelled or session_events:
            notice = order_pb2.OrderEntryResponse(notice=response.notice,
                                                  cancelled=response.cancelled,
                                                  events=session_events)
            self.notices.append(notice)
            self._notice_queue.put_nowait(notice)
        for event in response.events:
            if is_session_error(event):
                continue
            for command in self._correlator.resolve(event):
                self._queue(command)
        if self._closing and not self._correlator.pending:
            self._wake.set()

    def _fail(self, err: BaseException | None) -> None:
        if isinstance(err, grpc.RpcError):
            failure = from_grpc_error(err)
        else:
            failure = ExchangeError("the session ended", reason="SESSION_ENDED")
        if self._failed is None:
            self._failed = failure
        self._correlator.fail_all(failure)
        self._wake.set()

    async def close(self) -> None:
        """Say goodbye: half-close once every command sent is answered, and wait for the
        server to end the call."""
        if self._call is None:
            return
        self._closing = True
        self._wake.set()
        tasks = [t for t in (self._writer, self._reader) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._failed is not None and self._failed.reason != "SESSION_ENDED":
            raise self._failed

    def abort(self) -> None:
        """End the session without a goodbye (the server treats it as a disconnect)."""
        if self._call is not None:
            self._call.cancel()
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
        self._correlator.fail_all(ExchangeError("the session was aborted",
                                                reason="SESSION_ABORTED"))
