"""Change notifications: caches are dropped when the data changes, not when they age.

Migration 0003 puts a trigger on ``api_keys``, ``accounts``, ``rate_tiers``,
``admin_keys`` and ``instruments`` that sends ``NOTIFY exchange_changes, '<table>'``
in the transaction of the change, whoever makes it (the admin API or SQL by hand).
PostgreSQL delivers it to every listening session when that transaction commits.

``ChangeListener`` keeps one connection per process listening and calls the
callbacks registered for the table. While it is not connected it cannot promise
anything, so ``live`` is False and the caches fall back to a short age limit; when
it (re)connects every callback runs, since changes may have been missed meanwhile.

Once its callbacks have run, a listener says so: ``NOTIFY exchange_changes_applied,
'<transaction id>:<its backend pid>'``. ``wait_applied`` lets the one who made the
change (the admin API) wait until every listening process has applied it, so that
when a revocation or a halt is answered, the next call to any process is refused.

Its session is also how a process notices PostgreSQL going away and coming back (it
pings every few seconds): the outage is logged once when it begins (WARNING) and once
when it ends (INFO), not at every attempt to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "exchange_changes"
APPLIED_CHANNEL = "exchange_changes_applied"
# Every table a callback may be registered for.
TABLES = ("api_keys", "accounts", "rate_tiers", "admin_keys", "instruments",
          "account_fees", "matching_pods")
# Sent by the matching pods (not a trigger) when one registers, hands an instrument over
# or releases instruments: the others look at the placement at once
# (matching_service/placement.py).
PODS_TABLE = "matching_pods"
# The listening session's name in pg_stat_activity.
APPLICATION_NAME = "exchange-changes"
# How old a cached entry may be while the listener is down.
FALLBACK_MAX_AGE = 1.0


class ChangeListener:
    def __init__(self, database_url: str, *, retry: float = 1.0,
                 connect_timeout: float = 5.0) -> None:
        self.database_url = database_url
        self.retry = retry
        self.connect_timeout = connect_timeout
        self.callbacks: dict[str, list[Callable[[], None]]] = {t: [] for t in TABLES}
        # Callbacks whose work must be done before this process says it applied a change.
        self.async_callbacks: dict[str, list[Callable[[], Awaitable[None]]]] = {
            t: [] for t in TABLES}
        self.live = False
        # Bumped at every notification and reconnection: a look-up that started under
        # an older generation must not be cached (it may have read the old row).
        self.generation = 0
        self._conn: asyncpg.Connection | None = None
        # One query at a time on the listening connection (pings and acknowledgements).
        self._conn_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._lost = asyncio.Event()
        # Transaction id -> backend pids of the listeners that applied it (recent ones),
        # and the waiters of wait_applied.
        self._applied: dict[int, set[int]] = {}
        self._waiters: list[tuple[int, set[int], asyncio.Future]] = []
        # PostgreSQL is unreachable (logged when that begins, and when it ends).
        self.down = False

    def on(self, table: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously, on the event loop) when ``table`` changes."""
        self.callbacks[table].append(callback)

    def on_async(self, table: str, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` when ``table`` changes, and say the change applied (to
        ``wait_applied``) only once it has finished: for a process whose state is not a
        cache to drop but something to reload (a matching pod's instrument rules)."""
        self.async_callbacks[table].append(callback)

    def max_age(self, ttl: float) -> float:
        """How old a cached entry may be now: ``ttl`` while notifications arrive, at most
        FALLBACK_MAX_AGE while they cannot."""
        return ttl if self.live else min(ttl, FALLBACK_MAX_AGE)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="change-listener")

    async def connected(self, timeout: float) -> bool:
        """Wait until listening (for start-up and tests); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.live:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                await self._conn.close()

    def _notified(self, table: str) -> None:
        self.generation += 1
        for callback in self.callbacks.get(table, ()):
            try:
                callback()
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                log.exception("change callback for %s failed", table)

    def _all_changed(self) -> None:
        for table in TABLES:
            self._notified(table)
            pending = [callback() for callback in self.async_callbacks[table]]
            if pending:
                asyncio.ensure_future(self._apply_then_say(None, pending, None))

    async def _run(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(
                    self.database_url, timeout=self.connect_timeout,
                    server_settings={"application_name": APPLICATION_NAME})
            except (TimeoutError, OSError, asyncpg.PostgresError) as err:
                if not self.down:
                    self.down = True
                    log.warning("PostgreSQL unreachable: the change listener cannot connect "
                                "(%s); caches age out meanwhile", err)
                else:
                    log.debug("change listener: still cannot connect (%s)", err)
                await asyncio.sleep(self.retry)
                continue
            self._conn = conn
            self._lost.clear()
            try:
                await conn.add_listener(CHANNEL, self._on_notify)
                await conn.add_listener(APPLIED_CHANNEL, self._on_applied)
                conn.add_termination_listener(lambda _c: self._lost.set())
                # Anything may have changed while not listening.
                self._all_changed()
                self.live = True
                if self.down:
                    self.down = False
                    log.info("PostgreSQL reachable again: listening for changes on %s",
                             CHANNEL)
                else:
                    log.info("listening for changes on %s", CHANNEL)
                # The listener session needs no queries; ping now and then to notice a
                # dead server (a TCP connection to a vanished host stays open).
                while not self._lost.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), 5.0)
                    if not self._lost.is_set():
                        async with self._conn_lock:
                            await conn.fetchval("SELECT 1", timeout=5.0)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                self.down = True
                log.warning("PostgreSQL unreachable: the change listener's connection was "
                            "lost (%s); caches age out meanwhile", err)
            finally:
                self.live = False
                self.generation += 1
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(self.retry)

    def _on_notify(self, conn: asyncpg.Connection, _pid: int, _channel: str,
                   payload: str) -> None:
        table, _, txid = payload.partition(":")
        self._notified(table)
        pending = [callback() for callback in self.async_callbacks.get(table, ())]
        if txid.isdigit() or pending:  # applied: say so (not awaited here)
            asyncio.ensure_future(self._apply_then_say(
                conn, pending, f"{txid}:{conn.get_server_pid()}" if txid.isdigit() else None))

    async def _apply_then_say(self, conn: asyncpg.Connection | None,
                              pending: list[Awaitable[None]], payload: str | None) -> None:
        for work in pending:
            try:
                await work
            except Exception:  # noqa: BLE001 - logged; the change still counts as seen
                log.exception("change callback failed")
        if conn is not None and payload is not None:
            await self._say_applied(conn, payload)

    async def _say_applied(self, conn: asyncpg.Connection, payload: str) -> None:
        with contextlib.suppress(Exception):  # the connection went: it flushed everything
            async with self._conn_lock:
                await conn.execute("SELECT pg_notify($1, $2)", APPLIED_CHANNEL, payload)

    def _on_applied(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        txid, _, pid = payload.partition(":")
        if not (txid.isdigit() and pid.isdigit()):
            return
        if len(self._applied) > 1000:
            self._applied.clear()
        done = self._applied.setdefault(int(txid), set())
        done.add(int(pid))
        for want_txid, pids, fut in self._waiters:
            if want_txid == int(txid) and pids <= done and not fut.done():
                fut.set_result(None)

    async def wait_applied(self, conn: asyncpg.Connection, txid: int,
                           timeout: float = 2.0) -> set[int]:
        """After transaction ``txid`` committed (on ``conn``): wait until every process
        listening now has applied its changes. Returns the backend pids of those that
        had not within ``timeout`` (a hung or paused process: it drops its caches when
        it comes back, or its connection ends and it flushes them on reconnecting)."""
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", APPLICATION_NAME)
        pids = {r["pid"] for r in rows}
        if pids <= self._applied.get(txid, set()):
            return set()
        fut = asyncio.get_running_loop().create_future()
        entry = (txid, pids, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
            return set()
        except TimeoutError:
            missing = pids - self._applied.get(txid, set())
            log.warning("change %d not acknowledged by %d listening processes within %.1f s",
                        txid, len(missing), timeout)
            return missing
        finally:
            self._waiters.remove(entry)
