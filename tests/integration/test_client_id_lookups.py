"""client_order_id look-ups: coalesced into one query at a time, at most every min_interval."""

from __future__ import annotations

import asyncio

import asyncpg

from exchange_common import db
from exchange_dev.accounts import ensure_account
from order_service.store import ClientIdLookups


class CountingPool:
    """The real pool, counting the queries that reach it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.started: list[float] = []

    async def fetch(self, *args):
        self.started.append(asyncio.get_running_loop().time())
        return await self.pool.fetch(*args)


async def test_lookups_wait_for_the_interval_and_go_together(database_url) -> None:
    conn = await asyncpg.connect(database_url)
    account = await ensure_account(conn, "lookups")
    await conn.execute(
        """INSERT INTO orders (order_id, instrument_id, account_id, client_order_id, side,
               order_type, time_in_force, price, quantity, state, priority, last_sequence,
               created_at, updated_at)
           VALUES (99, 1, $1, 'taken', 1, 1, 1, 100, 1, 1, 99, 99, now(), now())""", account)
    await conn.close()
    pool = await db.create_pool(database_url, server_settings=db.OLTP_SETTINGS)
    try:
        counting = CountingPool(pool)
        lookups = ClientIdLookups(counting, min_interval=0.2)  # type: ignore[arg-type]
        first = lookups.lookup(account, "taken")  # idle: its query starts at once
        await asyncio.sleep(0.01)
        later = [lookups.lookup(account, "free-1"), lookups.lookup(account, "taken")]
        await asyncio.sleep(0.01)
        later.append(lookups.lookup(account, "free-3"))
        assert (await first)["order_id"] == 99
        one, taken, three = await asyncio.gather(*later)
        assert one is None and three is None
        assert taken["order_id"] == 99
        # two queries: the lone first one, then everything that waited, 0.2 s after it
        assert len(counting.started) == 2
        assert counting.started[1] - counting.started[0] >= 0.19
        # idle again long enough: the next look-up does not wait
        await asyncio.sleep(0.25)
        t = asyncio.get_running_loop().time()
        assert await lookups.lookup(account, "free-4") is None
        assert counting.started[2] - t < 0.1
    finally:
        await pool.close()
