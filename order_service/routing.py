"""Reaching the matching pod that owns an instrument.

``MatchingClient`` keeps one long-lived ``Execute`` stream per matching pod.
Concurrent commands are coalesced: while one request message is being
written, new commands queue up and go out together in the next message, so
under load the hop costs little per order (PERFORMANCE.md). Results come back
correlated by request id.

``Router`` learns owners from PostgreSQL (``instrument_state.owner_address``),
caches them, and refreshes when a pod answers NOT_OWNER.

When tracing, each command sent is a CLIENT span (the wait for matching's answer, one per
attempt when it is sent again) whose ``traceparent`` the command carries, so that the
matching pod's span of the command is its child. A pod that cannot be reached is logged
once when that begins and once when it answers again.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections import deque

import asyncpg
import grpc
from opentelemetry.trace import Span

from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange_common import tracing
from exchange_common.config import OrderSettings
from exchange_common.errors import DeadlineExceeded, Unavailable
from exchange_common.server import channel_options
from exchange_common.tls import InternalCaller

log = logging.getLogger(__name__)

MAX_COMMANDS_PER_MESSAGE = 1000
NOT_OWNER_RETRIES = 20
NOT_OWNER_BACKOFF = 0.1
# After a NOT_OWNER answer the first retry comes this soon, doubling up to
# NOT_OWNER_BACKOFF x the attempt: a live hand-over (matching_service/placement.py) gives
# the instrument to its new owner within tens of milliseconds.
NOT_OWNER_FIRST_RETRY = 0.02
# While a command waits, how often to check that its pod still owns the instrument.
OWNER_CHECK_INTERVAL = 1.0
# How often the watchdog looks at waiting commands (deadline resolution).
WATCHDOG_TICK = 0.1
# Owner look-ups are coalesced: at most one database read per instrument this often.
OWNER_REFRESH_MIN = 0.02
# The span of a command's wait for matching (the RPC its stream is).
EXECUTE_SPAN = "exchange.matching.v1.MatchingService/Execute"


class OwnerMoved(Exception):
    """The pod a command waits on went silent and another pod owns the instrument now."""


class StreamBroken(Exception):
    """The stream to the matching pod broke with the command in flight: its
    outcome is unknown (a retry with the same client_order_id is safe)."""


class MatchingClient:
    def __init__(self, address: str, settings: OrderSettings) -> None:
        self.address = address
        # Authenticated as an order service: a client certificate (mutual TLS) or the
        # internal token, which goes with the stream's metadata (not an interceptor,
        # which would cost a task per message).
        caller = InternalCaller.from_settings(settings)
        self.channel = caller.channel(address, channel_options(settings),
                                      token_on_every_call=False)
        self.metadata = caller.metadata
        self.stub = mpb_grpc.MatchingServiceStub(self.channel)
        self.pending: dict[int, asyncio.Future] = {}
        # Request ids written to the current stream (their outcome is unknown if it breaks).
        self.sent: set[int] = set()
        self.outbox: deque[mpb.Command] = deque()
        self.wake = asyncio.Event()
        self.ids = itertools.count(1)
        self.task: asyncio.Task | None = None
        self.closed = False
        # The stream broke and no answer has come since (logged when that begins and ends).
        self.broken = False

    def submit(self, command: mpb.Command) -> tuple[int, asyncio.Future]:
        """Queue ``command`` for the pod; returns its request id and the future of
        its result. The caller must ``abandon`` the id when it stops waiting."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=f"matching-{self.address}")
        rid = next(self.ids)
        command.request_id = rid
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        self.outbox.append(command)
        self.wake.set()
        return rid, fut

    def abandon(self, rid: int) -> None:
        self.pending.pop(rid, None)
        self.sent.discard(rid)

    async def _run(self) -> None:
        backoff = 0.05
        while not self.closed:
            call = self.stub.Execute(metadata=self.metadata)
            reader = asyncio.create_task(self._read(call))
            try:
                while not self.closed:
                    if not self.outbox:
                        self.wake.clear()
                        waiter = asyncio.ensure_future(self.wake.wait())
                        done, _ = await asyncio.wait({waiter, reader},
                                                     return_when=asyncio.FIRST_COMPLETED)
                        if reader in done:
                            waiter.cancel()
                            ended = reader.result()
                            if ended is not None:
                                self._broken(ended)
                            break
                        continue
                    n = min(len(self.outbox), MAX_COMMANDS_PER_MESSAGE)
                    batch = [self.outbox[i] for i in range(n)]
                    await call.write(mpb.ExecuteRequest(commands=batch))
                    # Written: from here on the pod may act on them.
                    for _ in range(n):
                        self.sent.add(self.outbox.popleft().request_id)
                    backoff = 0.05
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError,
                    ConnectionError) as err:
                self._broken(err)
            finally:
                reader.cancel()
                call.cancel()
            # Everything in flight has an unknown outcome now.
            self._fail_pending()
            if self.closed:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
            if not self.pending and not self.outbox:
                return  # reconnect lazily on the next command

    async def _read(self, call) -> grpc.aio.AioRpcError | None:
        """Deliver the stream's results; the error that ended it, if any."""
        try:
            async for response in call:
                if self.broken:
                    self.broken = False
                    log.info("matching %s answers again", self.address)
                for result in response.results:
                    self.sent.discard(result.request_id)
                    fut = self.pending.get(result.request_id)
                    if fut is not None and not fut.done():
                        fut.set_result(result)
        except grpc.aio.AioRpcError as err:
            return err
        except asyncio.CancelledError:
            pass
        return None

    def _broken(self, err: Exception) -> None:
        if (isinstance(err, grpc.aio.AioRpcError)
                and err.code() == grpc.StatusCode.UNAUTHENTICATED):
            log.error("matching %s refuses this order service (%s): check "
                      "EXCHANGE_INTERNAL_TOKEN or the EXCHANGE_INTERNAL_TLS_* certificates",
                      self.address, err.details())
        elif not self.broken:
            log.warning("stream to matching %s broke: %s", self.address, err)
        else:
            log.debug("stream to matching %s broke again: %s", self.address, err)
        self.broken = True

    def _fail_pending(self) -> None:
        """The stream broke: commands written to it have an unknown outcome; those
        never written did not reach the pod (safe to retry anywhere)."""
        sent, self.sent = self.sent, set()
        self.outbox.clear()
        for rid, fut in list(self.pending.items()):
            if fut.done():
                continue
            if rid in sent:
                fut.set_exception(StreamBroken())
            else:
                fut.set_exception(Unavailable("matching engine unreachable",
                                              reason="MATCHING_UNAVAILABLE"))

    async def close(self) -> None:
        self.closed = True
        self.wake.set()
        if self.task is not None:
            self.task.cancel()
        await self.channel.close()


class Router:
    def __init__(self, pool: asyncpg.Pool, settings: OrderSettings) -> None:
        self.pool = pool
        self.settings = settings
        self.owners: dict[int, tuple[str | None, float]] = {}
        self.clients: dict[str, MatchingClient] = {}
        # Commands waiting for a result: future -> (instrument, pod address, deadline,
        # idempotent, when to check the owner next).
        self.waiting: dict[asyncio.Future, tuple[int, str, float, bool, float]] = {}
        self.watchdog: asyncio.Task | None = None

    async def owner(self, instrument_id: int, refresh: bool = False) -> str | None:
        cached = self.cached_owner(instrument_id, OWNER_REFRESH_MIN if refresh else max(
            OWNER_REFRESH_MIN, self.settings.cache_ttl))
        if cached is not None:
            return cached
        now = time.monotonic()
        address = await self.pool.fetchval(
            "SELECT owner_address FROM instrument_state WHERE instrument_id = $1", instrument_id)
        self.owners[instrument_id] = (address, now)
        return address

    def client(self, address: str) -> MatchingClient:
        client = self.clients.get(address)
        if client is None:
            client = self.clients[address] = MatchingClient(address, self.settings)
        return client

    async def execute(self, instrument_id: int, command: mpb.Command, deadline: float,
                      idempotent: bool, parent: Span | None = None) -> mpb.Result:
        """Send to the owner; follow ownership changes until ``deadline`` (monotonic).

        ``idempotent`` commands (new orders, which always carry a client_order_id)
        are sent again when the stream broke with them in flight, or when their pod
        went silent and another pod owns the instrument now (a paused owner keeps its
        connections open, so silence is the only sign). ``parent``: the command's span
        when tracing (None: the current span)."""
        refresh = False
        for attempt in range(NOT_OWNER_RETRIES):
            if time.monotonic() >= deadline:
                if attempt == 0:
                    raise too_short()
                break
            address = await self.owner(instrument_id, refresh)
            if not address:
                refresh = True
                await _pause(NOT_OWNER_BACKOFF, deadline)
                continue
            fut = self.send(instrument_id, address, command, deadline, idempotent, parent)
            try:
                result = await fut
            except StreamBroken:
                if not idempotent:
                    raise Unavailable("the connection to the matching engine broke; the "
                                      "outcome is unknown: check the order and retry",
                                      reason="OUTCOME_UNKNOWN") from None
                refresh = True
                await _pause(NOT_OWNER_BACKOFF, deadline)
                continue
            except (Unavailable, OwnerMoved):
                # Never reached the pod, or the pod lost the instrument: retry on the owner.
                refresh = True
                await _pause(NOT_OWNER_BACKOFF, deadline)
                continue
            if (result.WhichOneof("result") == "error"
                    and result.error.code == mpb.ERROR_CODE_NOT_OWNER):
                refresh = True
                await _pause(min(NOT_OWNER_FIRST_RETRY * 2 ** attempt,
                                 NOT_OWNER_BACKOFF * (attempt + 1)), deadline)
                continue
            return result
        raise Unavailable("no matching engine owns this instrument right now; retry later",
                          reason="MATCHING_UNAVAILABLE")

    def cached_owner(self, instrument_id: int, max_age: float | None = None) -> str | None:
        """The owner as cached, if cached less than ``max_age`` (default: the cache
        TTL) seconds ago; no database read."""
        cached = self.owners.get(instrument_id)
        if max_age is None:
            max_age = self.settings.cache_ttl
        if cached is not None and cached[0] and time.monotonic() - cached[1] < max_age:
            return cached[0]
        return None

    def send(self, instrument_id: int, address: str, command: mpb.Command, deadline: float,
             idempotent: bool, parent: Span | None = None) -> asyncio.Future:
        """Queue ``command`` for the pod at ``address``; the future of its result.

        The watchdog (one task, not a timer per command) fails the future at the
        deadline (DeadlineExceeded), or with OwnerMoved when an ``idempotent``
        command's pod went silent and another pod owns the instrument now; a broken
        stream fails it with StreamBroken or Unavailable (see MatchingClient). A
        ``deadline`` already passed is refused (DEADLINE_TOO_SHORT): nothing is sent.
        ``parent``: the command's span when tracing (None: the current span)."""
        if time.monotonic() >= deadline:
            raise too_short()
        client = self.client(address)
        if tracing.ENABLED:
            span = tracing.child(EXECUTE_SPAN, parent, tracing.CLIENT, {
                "rpc.system": "grpc", "server.address": address,
                "exchange.instrument_id": instrument_id})
            command.traceparent = tracing.traceparent(span)
        rid, fut = client.submit(command)
        if tracing.ENABLED:
            fut.add_done_callback(functools.partial(_matching_answered, span))
        self.waiting[fut] = (instrument_id, address, deadline, idempotent,
                             time.monotonic() + OWNER_CHECK_INTERVAL)
        if self.watchdog is None or self.watchdog.done():
            self.watchdog = asyncio.create_task(self._watch(), name="router-watchdog")
        waiting = self.waiting

        def done(f: asyncio.Future) -> None:
            waiting.pop(f, None)
            client.abandon(rid)

        fut.add_done_callback(done)
        return fut

    async def _watch(self) -> None:
        while self.waiting:
            await asyncio.sleep(WATCHDOG_TICK)
            now = time.monotonic()
            owners: dict[int, str | None] = {}
            for fut, (iid, address, deadline, idempotent, check_at) in list(
                    self.waiting.items()):
                if fut.done():
                    continue
                if now >= deadline:
                    fut.set_exception(DeadlineExceeded(
                        "the matching engine did not answer in time; the order may or may "
                        "not have been placed: retry with the same client_order_id",
                        reason="MATCHING_TIMEOUT"))
                elif idempotent and now >= check_at:
                    if iid not in owners:
                        try:
                            owners[iid] = await self.owner(iid, refresh=True)
                        except Exception:  # noqa: BLE001 - database away: keep waiting
                            owners[iid] = None
                    if owners[iid] and owners[iid] != address and not fut.done():
                        fut.set_exception(OwnerMoved())

    async def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        await asyncio.gather(*(c.close() for c in self.clients.values()))


def _matching_answered(span: Span, fut: asyncio.Future) -> None:
    """End the span of a command's wait for matching: with the error code of matching's
    answer, or ERROR when no answer came (deadline, broken stream, owner moved)."""
    if fut.cancelled():
        tracing.end(span, asyncio.CancelledError())
        return
    err = fut.exception()
    if err is None and span.is_recording():
        result = fut.result()
        if result.WhichOneof("result") == "error":
            span.set_attribute("exchange.error.code", mpb.ErrorCode.Name(result.error.code))
        else:
            span.set_attribute("exchange.order_id", str(result.order.order_id))
    tracing.end(span, err)


def too_short() -> DeadlineExceeded:
    return DeadlineExceeded("the call's deadline leaves no time to reach the matching engine; "
                            "nothing was placed", reason="DEADLINE_TOO_SHORT")


async def _pause(seconds: float, deadline: float) -> None:
    await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))
