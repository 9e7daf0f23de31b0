"""Who owns which instrument, read from PostgreSQL as the order services read it
(``instrument_state.owner_address`` and ``owner_epoch``), plus whether the owner still
holds the instrument's ownership lock (a dead pod's lock goes with its session).

``OwnershipWatch`` polls it and logs every change with the pods' names, e.g.
``ETH-USD: matching-1 -> matching-3 (epoch 4)``: what ``make run SHARDS=...`` prints
while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import asyncpg

log = logging.getLogger("exchange-dev")

_DATABASE_AWAY = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

OWNERS_SQL = """
SELECT i.symbol, s.owner_address, coalesce(s.owner_epoch, 0) AS owner_epoch,
       EXISTS (SELECT 1 FROM pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                  AND l.database = (SELECT oid FROM pg_database
                                     WHERE datname = current_database())
                  AND l.classid::bigint = (i.instrument_id::bigint >> 32)
                  AND l.objid::bigint = (i.instrument_id::bigint & 4294967295)) AS held
  FROM instruments i LEFT JOIN instrument_state s USING (instrument_id)
 ORDER BY i.instrument_id
"""


@dataclass(frozen=True)
class Owner:
    """An instrument's owner: its advertise address ("" when it never had one), its
    epoch, and whether some pod holds the ownership lock now."""

    address: str
    epoch: int
    held: bool


async def read_owners(conn: asyncpg.Connection) -> dict[str, Owner]:
    """symbol -> Owner, in instrument-id order."""
    return {r["symbol"]: Owner(r["owner_address"] or "", r["owner_epoch"], r["held"])
            for r in await conn.fetch(OWNERS_SQL)}


def changes(before: Mapping[str, Owner], after: Mapping[str, Owner],
            name: Callable[[str], str]) -> list[str]:
    """One line per instrument whose owner changed, with the pods' names (``name``
    maps an advertise address to a pod name)."""
    lines = []
    for symbol, now in after.items():
        was = before.get(symbol)
        if was == now:
            continue
        if was is None:
            lines.append(f"{symbol}: new instrument, owned by "
                         f"{name(now.address) if now.held else 'nobody'}")
        elif now.epoch != was.epoch:
            lines.append(f"{symbol}: {name(was.address) if was.address else 'nobody'} -> "
                         f"{name(now.address)} (epoch {now.epoch})")
        elif was.held and not now.held:
            lines.append(f"{symbol}: {name(now.address)} is gone; no owner until a standby "
                         "takes it")
    return lines


class OwnershipWatch:
    """Polls the owners every ``interval`` seconds and logs each change."""

    def __init__(self, database_url: str, name: Callable[[str], str],
                 interval: float = 0.5) -> None:
        self.database_url = database_url
        self.name = name
        self.interval = interval
        self.owners: dict[str, Owner] = {}
        self._conn: asyncpg.Connection | None = None
        self._failing = False

    async def poll(self) -> list[str]:
        """Read the owners once; the lines describing what changed since the last read
        (none the first time)."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.database_url, timeout=5,
                                               command_timeout=5)
        first = not self.owners
        owners = await read_owners(self._conn)
        lines = [] if first else changes(self.owners, owners, self.name)
        self.owners = owners
        return lines

    async def run(self) -> None:
        """Log changes until cancelled; PostgreSQL away is logged once, then retried."""
        try:
            while True:
                try:
                    for line in await self.poll():
                        log.info("%s", line)
                    if self._failing:
                        self._failing = False
                        log.info("ownership: PostgreSQL answers again")
                except _DATABASE_AWAY as err:
                    if not self._failing:
                        self._failing = True
                        log.warning("ownership: cannot read the owners (%s); retrying", err)
                    await self.close()
                await asyncio.sleep(self.interval)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
