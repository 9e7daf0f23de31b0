"""Ownership: the instruments this matching pod owns, and their writer loops.

For every instrument this pod may own (``EXCHANGE_MATCHING_INSTRUMENTS``) it tries to
take the instrument's PostgreSQL advisory lock on a dedicated session, and keeps trying
every ``EXCHANGE_OWNERSHIP_POLL`` seconds (at once when the instruments table changes) for
those another pod holds, so a standby takes over when the owner dies. Taking ownership
bumps the owner epoch that fences every journal write (see store.py). Owned instruments
follow the instruments table: a new price band or status goes to their loop.

Which pod takes an instrument, and when an owner hands one over to another pod (its
home: EXCHANGE_MATCHING_HOME, or where an admin moved it), is placement.py's: every round
reads the placement and applies its rules. A hand-over drains the instrument's loop (the
batch in progress commits; the commands behind it are refused NOT_OWNER, and the order
services retry them on the new owner), then unlocks it and wakes the target. A clean stop
hands over what has a live home elsewhere, keeps its own home instruments for its next
incarnation when EXCHANGE_MATCHING_RESTART_GRACE > 0, and releases the rest.

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
from exchange_common.config import MatchingSettings, spec_includes
from exchange_common.instruments import InstrumentSpec
from matching_service.loop import Deliver, InstrumentLoop, error_result
from matching_service.metrics import MatchingMetrics
from matching_service.store import PodNameTaken, Store, terms_of

log = logging.getLogger(__name__)


def instrument_of_command(cmd: mpb.Command) -> int:
    which = cmd.WhichOneof("command")
    return getattr(cmd, which).instrument_id if which else 0


class MatchingNode:
    """The instruments this pod owns, and the work of owning them."""

    def __init__(self, settings: MatchingSettings, store: Store, redis: Redis,
                 metrics: MatchingMetrics) -> None:
        self.settings = settings
        self.name = settings.pod_name
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
        # Instruments whose lock this pod still holds without owning them (an unlock
        # failed): unlocked again every round, so that their new owner can take them.
        self._unreleased: set[int] = set()
        # The ownership checks fail (logged when that begins and when it ends).
        self.checks_failing = False

    def allowed(self, symbol: str) -> bool:
        return spec_includes(self.settings.matching_instruments, symbol)

    def dispatch(self, cmd: mpb.Command, deliver: Deliver) -> None:
        loop = self.loops.get(instrument_of_command(cmd))
        if loop is None:
            deliver(error_result(cmd.request_id, mpb.ERROR_CODE_NOT_OWNER,
                                 "this matching pod does not own the instrument"))
            return
        loop.submit(cmd, deliver)

    async def start(self) -> None:
        try:
            await self.acquire()
        except PodNameTaken as err:
            # The previous incarnation's session may outlive it for a while (a crashed
            # node: owner_session_timeout); the ownership rounds try again.
            log.warning("%s; trying again every round", err)
        self._task = asyncio.create_task(self._keep_acquiring(), name="ownership")

    async def refresh_specs(self) -> None:
        """The instruments' rules (status, price band, limits) into the loops this pod
        owns, then an ownership round. The change listener runs it on every change of
        ``instruments`` and says the change applied only once it has finished, so the
        admin call that halted an instrument or moved its band is answered only when this
        pod enforces it."""
        for spec in await self.store.instruments():
            loop = self.loops.get(spec.instrument_id)
            if loop is not None:
                loop.update_spec(spec)
        self.changed.set()

    async def acquire(self) -> None:
        """Register, hand over what belongs elsewhere, take what placement allows."""
        settings = self.settings
        if self._lock_conn is None or self._lock_conn.is_closed():
            if self.loops:
                log.warning("ownership session lost; releasing %d instruments", len(self.loops))
                await self._release_all()
            conn = await self._connect_owner_session()
            try:
                await self.store.register_pod(conn, self.name, settings.matching_advertise,
                                              settings.matching_home,
                                              settings.matching_instruments)
            except BaseException:
                await conn.close()
                raise
            self._lock_conn = conn
            self._unreleased.clear()  # a new session holds no lock
            log.info("registered as matching pod %s (home: %s)", self.name,
                     settings.matching_home or "none, a standby")
        else:
            await self._lock_conn.execute("SELECT 1")  # heartbeat: keeps the locks alive
        if self._unreleased:
            await self._release(list(self._unreleased))
        specs = await self.store.instruments()
        for spec in specs:
            if (owned := self.loops.get(spec.instrument_id)) is not None:
                owned.update_spec(spec)  # a new price band or status, before anything else
        placement = await self.store.placement()
        for spec in specs:
            iid = spec.instrument_id
            loop = self.loops.get(iid)
            if loop is not None:
                target = placement.hand_over_to(self.name, iid, spec.symbol)
                if target is not None and not self._stopping:
                    await self._hand_over(loop, target)
                continue
            if not self.allowed(spec.symbol) or self._stopping:
                continue
            if not placement.may_take(self.name, iid, spec.symbol):
                continue
            await self._take(spec)
        self.metrics.without_owner.set(await self.store.instruments_without_owner())

    async def _take(self, spec: InstrumentSpec) -> None:
        assert self._lock_conn is not None
        settings = self.settings
        owned = await self.store.take_ownership(self._lock_conn, spec.instrument_id,
                                                settings.matching_advertise, self.name)
        if owned is None:
            return
        try:
            book = await self.store.load_book(spec.instrument_id, terms_of(spec))
        except BaseException:
            # Not owning it after all: let another pod (or the next round) take it.
            await self._release([spec.instrument_id])
            raise
        loop = InstrumentLoop(spec, book, self.store, self.redis, owned.epoch,
                              batch_max=settings.matching_batch_max,
                              stream_maxlen=settings.stream_maxlen,
                              snapshot_interval=settings.snapshot_interval,
                              publish_backlog=settings.publish_backlog,
                              on_lost=self._lost, metrics=self.metrics,
                              commit_min_interval=settings.commit_min_interval)
        loop.start()
        self.loops[spec.instrument_id] = loop
        self.metrics.owned(spec, owned.epoch)
        log.info("owning %s (epoch %d, sequence %d, %d resting orders)", spec.symbol,
                 owned.epoch, book.sequence, book.order_count)

    async def _hand_over(self, loop: InstrumentLoop, target: str) -> None:
        """Give an owned instrument to pod ``target``: mark the hand-over (only the target
        may take it now), drain the loop, unlock, wake the target."""
        assert self._lock_conn is not None
        symbol = loop.spec.symbol
        if not await self.store.begin_handover(self._lock_conn, loop.instrument_id,
                                               loop.epoch, target):
            return  # fenced out meanwhile: the loop finds out at its next commit
        log.info("handing %s over to %s (epoch %d)", symbol, target, loop.epoch)
        self.loops.pop(loop.instrument_id, None)
        self.metrics.released(loop.spec)
        await loop.stop()
        await self._release([loop.instrument_id])
        log.info("handed %s over to %s at sequence %d", symbol, target, loop.book.sequence)

    async def _release(self, instrument_ids: list[int]) -> None:
        """Unlock instruments this pod does not own (any more); one that fails is
        unlocked again at the next round (until then nobody else can take it)."""
        assert self._lock_conn is not None
        self._unreleased.update(instrument_ids)
        await self.store.release(self._lock_conn, instrument_ids)
        self._unreleased.difference_update(instrument_ids)

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
                "application_name": f"matching-owner {self.name}"})

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
        """Clean stop (SIGTERM): hand over what has a live home elsewhere; with a restart
        grace, keep this pod's home instruments for its next incarnation; drain and
        release everything else."""
        self._stopping = True
        if self._task is not None:
            self.changed.set()  # let a round in progress finish (it takes nothing now)
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        conn = self._lock_conn
        if conn is None or conn.is_closed():
            await self._release_all()
            return
        try:
            placement = await self.store.placement()
            handed = []
            for loop in list(self.loops.values()):
                target = placement.hand_over_to(self.name, loop.instrument_id, loop.spec.symbol)
                if target is not None:
                    handed.append(self._hand_over(loop, target))
            await asyncio.gather(*handed)
            grace = self.settings.matching_restart_grace
            await self.store.deregister(conn, self.name, grace)
            if grace > 0:
                kept = [loop.spec.symbol for loop in self.loops.values()
                        if (home := placement.home(loop.instrument_id, loop.spec.symbol))
                        is not None and home.name == self.name]
                log.info("keeping %s for this pod's next incarnation for %.1f s",
                         sorted(kept) or "nothing", grace)
            await self._release_all()
            await self.store.release(conn)
        except Exception as err:  # noqa: BLE001 - the database is away: closing frees all
            log.warning("clean hand-over failed (%s); releasing by closing the session", err)
            await self._release_all()
        with contextlib.suppress(Exception):
            await conn.close()
