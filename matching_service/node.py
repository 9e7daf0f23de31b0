"""Ownership: the instruments this matching pod owns, and their writer loops.

For every instrument this pod may own (``EXCHANGE_MATCHING_INSTRUMENTS``) it tries to
take the instrument's PostgreSQL advisory lock on a dedicated session, and keeps trying
every ``EXCHANGE_OWNERSHIP_POLL`` seconds (at once when the instruments table changes) for
those another pod holds, so a standby takes over when the owner dies. Taking ownership
bumps the owner epoch that fences every journal write (see store.py). Owned instruments
follow the instruments table: a new price band or status goes to their loop.

Logged: every instrument owned, lost or released, and PostgreSQL unreachable for the
ownership checks, once when that begins and once when they work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from redis.asyncio import Redis

from exchange.matching.v1 import matching_pb2 as mpb
from exchange_common.config import MatchingSettings
from matching_service.loop import Deliver, InstrumentLoop, error_result
from matching_service.metrics import MatchingMetrics
from matching_service.store import Store, terms_of

log = logging.getLogger(__name__)


def instrument_of_command(cmd: mpb.Command) -> int:
    which = cmd.WhichOneof("command")
    return getattr(cmd, which).instrument_id if which else 0


class MatchingNode:
    """The instruments this pod owns, and the work of owning them."""

    def __init__(self, settings: MatchingSettings, store: Store, redis: Redis,
                 metrics: MatchingMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        metrics.registry.sample(self._sample)
        self.store = store
        self.redis = redis
        self.loops: dict[int, InstrumentLoop] = {}
        self._lock_conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        # Set when the instruments table changed (a notification): look again at once.
        self.changed = asyncio.Event()
        # The ownership checks fail (logged when that begins and when it ends).
        self.checks_failing = False

    def allowed(self, symbol: str) -> bool:
        spec = self.settings.matching_instruments.strip()
        return spec == "*" or symbol in {s.strip() for s in spec.split(",")}

    def dispatch(self, cmd: mpb.Command, deliver: Deliver) -> None:
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
            book = await self.store.load_book(spec.instrument_id, terms_of(spec))
            loop = InstrumentLoop(spec, book, self.store, self.redis, owned.epoch,
                                  batch_max=self.settings.matching_batch_max,
                                  stream_maxlen=self.settings.stream_maxlen,
                                  snapshot_interval=self.settings.snapshot_interval,
                                  publish_backlog=self.settings.publish_backlog,
                                  on_lost=self._lost, metrics=self.metrics,
                                  commit_min_interval=self.settings.commit_min_interval)
            loop.start()
            self.loops[spec.instrument_id] = loop
            self.metrics.owned(spec, owned.epoch)
            log.info("owning %s (epoch %d, sequence %d, %d resting orders)", spec.symbol,
                     owned.epoch, book.sequence, book.order_count)
        self.metrics.without_owner.set(await self.store.instruments_without_owner())

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
                if not self.checks_failing:
                    self.checks_failing = True
                    log.warning("ownership check failed (%s); trying again every %.1f s",
                                err, interval)
                else:
                    log.debug("ownership check failed again: %s", err)
                if self._lock_conn is not None and not self._lock_conn.is_closed():
                    continue
                self._lock_conn = None
                continue
            if self.checks_failing:
                self.checks_failing = False
                log.info("ownership checks work again; owning %s",
                         sorted(loop.spec.symbol for loop in self.loops.values()) or "nothing")

    def _lost(self, instrument_id: int) -> None:
        # Another pod bumped the epoch, which it can only do holding the lock, so this
        # pod's lock session is already gone: there is nothing to unlock.
        loop = self.loops.pop(instrument_id, None)
        if loop is not None:
            self.metrics.released(loop.spec)
            log.error("lost ownership of %s", loop.spec.symbol)

    def _sample(self) -> None:
        for loop in self.loops.values():
            self.metrics.queue_depth(loop.spec.symbol).set(len(loop.pending))
            self.metrics.publish_backlog(loop.spec.symbol).set(len(loop.to_publish))

    async def _release_all(self) -> None:
        loops, self.loops = self.loops, {}
        for loop in loops.values():
            self.metrics.released(loop.spec)
        await asyncio.gather(*(loop.stop() for loop in loops.values()))

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        await self._release_all()
        if self._lock_conn is not None and not self._lock_conn.is_closed():
            await self._lock_conn.close()
