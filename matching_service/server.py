"""The matching pod: owns instruments, runs one writer loop per instrument.

Ownership: for every instrument this pod may own (``EXCHANGE_MATCHING_INSTRUMENTS``)
it tries to take the instrument's PostgreSQL advisory lock on a dedicated
session, and keeps trying every second for those another pod holds, so a
standby takes over when the owner dies. Taking ownership bumps the owner
epoch that fences every journal write (see store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import asyncpg
import grpc
from redis.asyncio import Redis

from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange_common import logs
from exchange_common.changes import ChangeListener
from exchange_common.config import MatchingSettings, load
from exchange_common.db import OLTP_SETTINGS, create_pool
from exchange_common.errors import NotFound, grpc_errors
from exchange_common.server import Service, run_until_signal
from matching_service.loop import InstrumentLoop, error_result
from matching_service.store import Store

log = logging.getLogger(__name__)


def instrument_of_command(cmd: mpb.Command) -> int:
    which = cmd.WhichOneof("command")
    return getattr(cmd, which).instrument_id if which else 0


class MatchingNode:
    """The instruments this pod owns, and the work of owning them."""

    def __init__(self, settings: MatchingSettings, store: Store, redis: Redis) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self.loops: dict[int, InstrumentLoop] = {}
        self._lock_conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        # Set when the instruments table changed (a notification): look again at once.
        self.changed = asyncio.Event()

    def allowed(self, symbol: str) -> bool:
        spec = self.settings.matching_instruments.strip()
        return spec == "*" or symbol in {s.strip() for s in spec.split(",")}

    def dispatch(self, cmd: mpb.Command, deliver) -> None:
        loop = self.loops.get(instrument_of_command(cmd))
        if loop is None:
            deliver(error_result(cmd.request_id, mpb.ERROR_CODE_NOT_OWNER,
                                 "this matching pod does not own the instrument"))
            return
        loop.submit(cmd, deliver)

    async def start(self) -> None:
        await self.acquire()
        self._task = asyncio.create_task(self._keep_acquiring(), name="ownership")

    async def acquire(self) -> None:
        """Take every allowed instrument nobody else holds."""
        if self._lock_conn is None or self._lock_conn.is_closed():
            if self.loops:
                log.warning("ownership session lost; releasing %d instruments", len(self.loops))
                await self._release_all()
            self._lock_conn = await self._connect_owner_session()
        else:
            await self._lock_conn.execute("SELECT 1")  # heartbeat: keeps the locks alive
        for spec in await self.store.instruments():
            loop = self.loops.get(spec.instrument_id)
            if loop is not None:
                loop.update_spec(spec)  # a new price band or status
                continue
            if not self.allowed(spec.symbol):
                continue
            owned = await self.store.take_ownership(self._lock_conn, spec.instrument_id,
                                                    self.settings.matching_advertise)
            if owned is None:
                continue
            book = await self.store.load_book(spec.instrument_id)
            loop = InstrumentLoop(spec, book, self.store, self.redis, owned.epoch,
                                  batch_max=self.settings.matching_batch_max,
                                  stream_maxlen=self.settings.stream_maxlen,
                                  snapshot_interval=self.settings.snapshot_interval,
                                  publish_backlog=self.settings.publish_backlog,
                                  on_lost=self._lost,
                                  commit_min_interval=self.settings.commit_min_interval)
            loop.start()
            self.loops[spec.instrument_id] = loop
            log.info("owning %s (epoch %d, sequence %d, %d resting orders)", spec.symbol,
                     owned.epoch, book.sequence, book.order_count)

    async def _connect_owner_session(self) -> asyncpg.Connection:
        """The session that holds this pod's instrument locks. PostgreSQL ends it
        after owner_session_timeout of silence (a paused or partitioned pod), which
        frees the locks for a standby; the epoch bump then fences the old owner."""
        timeout_ms = int(self.settings.owner_session_timeout * 1000)
        return await asyncpg.connect(
            # Its statements are short: one that hangs fails (and is retried next round)
            # rather than stopping the ownership loop.
            self.settings.database_url, timeout=5, command_timeout=10,
            server_settings={
                "idle_session_timeout": str(timeout_ms),
                "application_name": f"matching-owner {self.settings.matching_advertise}"})

    async def _keep_acquiring(self) -> None:
        interval = min(self.settings.ownership_poll, self.settings.owner_session_timeout / 3)
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), interval)
            self.changed.clear()
            try:
                await self.acquire()
            except Exception as err:  # noqa: BLE001 - database away; try again next round
                log.warning("ownership check failed: %s", err)
                if self._lock_conn is not None and not self._lock_conn.is_closed():
                    continue
                self._lock_conn = None

    def _lost(self, instrument_id: int) -> None:
        # Another pod bumped the epoch, which it can only do holding the lock, so this
        # pod's lock session is already gone: there is nothing to unlock.
        loop = self.loops.pop(instrument_id, None)
        if loop is not None:
            log.error("lost ownership of %s", loop.spec.symbol)

    async def _release_all(self) -> None:
        loops, self.loops = self.loops, {}
        await asyncio.gather(*(loop.stop() for loop in loops.values()))

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        await self._release_all()
        if self._lock_conn is not None and not self._lock_conn.is_closed():
            await self._lock_conn.close()


class MatchingServicer(mpb_grpc.MatchingServiceServicer):
    def __init__(self, node: MatchingNode) -> None:
        self.node = node

    @grpc_errors
    async def Execute(self, request_iterator, context: grpc.aio.ServicerContext):
        out: deque[mpb.Result] = deque()
        wake = asyncio.Event()
        state = {"outstanding": 0, "reading": True}
        # Why reading stopped early (a malformed message): the call ends with it once the
        # commands already read are answered.
        failed: list[Exception] = []

        def deliver(result: mpb.Result) -> None:
            out.append(result)
            state["outstanding"] -= 1
            wake.set()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    state["outstanding"] += len(request.commands)
                    for cmd in request.commands:
                        self.node.dispatch(cmd, deliver)
            except Exception as err:  # noqa: BLE001 - ends the call, after the answers
                failed.append(err)
            finally:
                state["reading"] = False
                wake.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                if out:
                    results = list(out)
                    out.clear()
                    yield mpb.ExecuteResponse(results=results)
                    continue
                if not state["reading"] and state["outstanding"] <= 0:
                    break
                wake.clear()
                await wake.wait()
        finally:
            reader.cancel()
        if failed:
            raise failed[0]

    @grpc_errors
    async def GetBook(self, request: mpb.GetBookRequest,
                      context: grpc.aio.ServicerContext) -> mpb.GetBookResponse:
        loop = self.node.loops.get(request.instrument_id)
        if loop is None:
            raise NotFound(f"this matching pod does not own instrument {request.instrument_id}",
                           reason="NOT_OWNER")
        return await loop.get_book()

    @grpc_errors
    async def ExecuteOnce(self, request: mpb.ExecuteRequest,
                          context: grpc.aio.ServicerContext) -> mpb.ExecuteResponse:
        loop = asyncio.get_running_loop()
        futures = []
        for cmd in request.commands:
            fut: asyncio.Future = loop.create_future()
            futures.append(fut)
            self.node.dispatch(cmd, lambda r, f=fut: f.done() or f.set_result(r))
        return mpb.ExecuteResponse(results=await asyncio.gather(*futures))


async def serve() -> None:
    settings = load(MatchingSettings)
    logs.setup(settings.log_level, settings.log_format, "matching")
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
        # A hung pod must not keep a transaction (and its row locks) open.
        server_settings={**OLTP_SETTINGS, "idle_in_transaction_session_timeout":
                         str(int(settings.owner_session_timeout * 1000))})
    # A Redis that hangs fails a publish (kept and retried) instead of holding it forever.
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
    node = MatchingNode(settings, Store(pool), redis)
    # A halt, a new status or price band, a new instrument: applied at once, not at the
    # next poll.
    changes = ChangeListener(settings.database_url)
    changes.on("instruments", node.changed.set)
    changes.start()
    # Internal: only authenticated order services get past health and reflection.
    service = Service(settings, settings.matching_listen, internal=True)
    service.add_service(mpb.DESCRIPTOR.services_by_name["MatchingService"],
                        MatchingServicer(node))
    await node.start()
    port = await service.start()
    await service.set_serving(True)
    log.info("matching service listening on port %d, owning %s", port,
             sorted(loop.spec.symbol for loop in node.loops.values()) or "nothing yet")
    await run_until_signal(service, [changes.stop, node.stop, redis.aclose, pool.close])


def main() -> None:
    asyncio.run(serve())
