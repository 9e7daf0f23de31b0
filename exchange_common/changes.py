"""Change notifications: caches are dropped when the data changes, not when they age.

Migration 0003 puts a trigger on ``api_keys``, ``accounts``, ``rate_tiers``,
``admin_keys`` and ``instruments`` that sends ``NOTIFY exchange_changes, '<table>'``
in the transaction of the change, whoever makes it (the admin API or SQL by hand).
PostgreSQL delivers it to every listening session when that transaction commits.

``ChangeListener`` keeps one connection per process listening and calls the
callbacks registered for the table. While it is not connected it cannot promise
anything, so ``live`` is False and the caches fall back to a short age limit; when
it (re)connects every callback runs, since changes may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "exchange_changes"
# Every table a callback may be registered for.
TABLES = ("api_keys", "accounts", "rate_tiers", "admin_keys", "instruments")
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
        self.live = False
        # Bumped at every notification and reconnection: a look-up that started under
        # an older generation must not be cached (it may have read the old row).
        self.generation = 0
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._lost = asyncio.Event()

    def on(self, table: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously, on the event loop) when ``table`` changes."""
        self.callbacks[table].append(callback)

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

    async def _run(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(
                    self.database_url, timeout=self.connect_timeout,
                    server_settings={"application_name": APPLICATION_NAME})
            except (TimeoutError, OSError, asyncpg.PostgresError) as err:
                log.warning("change listener: cannot connect (%s); caches age out meanwhile",
                            err)
                await asyncio.sleep(self.retry)
                continue
            self._conn = conn
            self._lost.clear()
            try:
                await conn.add_listener(CHANNEL, self._on_notify)
                conn.add_termination_listener(lambda _c: self._lost.set())
                # Anything may have changed while not listening.
                self._all_changed()
                self.live = True
                log.info("listening for changes on %s", CHANNEL)
                # The listener session needs no queries; ping now and then to notice a
                # dead server (a TCP connection to a vanished host stays open).
                while not self._lost.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), 5.0)
                    if not self._lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=5.0)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("change listener: connection lost (%s)", err)
            finally:
                self.live = False
                self.generation += 1
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(self.retry)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._notified(payload)
