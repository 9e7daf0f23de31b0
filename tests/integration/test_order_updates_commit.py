"""The matching commit numbers each account's order updates with no gap, also when two
instruments commit for the same accounts at the same time, answers each account's latest
(what the loop publishes), and a fenced-out commit writes none (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from exchange_common import db
from exchange_dev.accounts import ensure_account
from matching_service.engine import BUY, EV_TRADE, GTC, IOC, LIMIT, MARKET, SELL, OrderBook
from matching_service.store import FencedOut, Store

pytestmark = pytest.mark.integration


async def test_two_instruments_commit_concurrently_for_one_account(database_url) -> None:
    conn = await asyncpg.connect(database_url)
    accounts = [await ensure_account(conn, f"a{i}") for i in range(3)]
    instruments = [r["instrument_id"] for r in await conn.fetch(
        "SELECT instrument_id FROM instruments ORDER BY instrument_id LIMIT 2")]
    await conn.execute("UPDATE instrument_state SET owner_epoch = 1 WHERE instrument_id = "
                       "ANY($1)", instruments)
    notified: dict[int, int] = {}

    def published(latest: str) -> None:
        for item in latest.split(",") if latest else ():
            account, _, sequence = item.partition(":")
            notified[int(account)] = max(notified.get(int(account), 0), int(sequence))

    pool = await db.create_pool(database_url, min_size=4, max_size=4)
    events: dict[int, list] = {i: [] for i in instruments}
    try:
        store = Store(pool)

        async def trade(instrument_id: int) -> None:
            book, rng = OrderBook(instrument_id), random.Random(instrument_id)
            for batch in range(40):
                for i in range(rng.randint(1, 12)):
                    type_ = MARKET if rng.random() < 0.2 else LIMIT
                    book.new_order(rng.choice(accounts), rng.choice((BUY, SELL)), type_,
                                   GTC if type_ == LIMIT else IOC,
                                   rng.randint(99, 101) if type_ == LIMIT else 0,
                                   rng.randint(1, 9), f"{instrument_id}-{batch}-{i}", False,
                                   1_000_000 * (batch + 1))
                changes = book.drain_changes()
                events[instrument_id].extend(changes.events)
                published((await store.commit(instrument_id, 1, changes)).latest_updates)

        await asyncio.gather(*(trade(i) for i in instruments))

        # Per account: 1..N with no gap, one per (event, order of the account).
        expected: dict[int, int] = {}
        orders = {r["order_id"]: r["account_id"] for r in await conn.fetch(
            "SELECT order_id, account_id FROM orders")}
        for evs in events.values():
            for e in evs:
                ids = (e.other_order_id, e.order_id) if e.kind == EV_TRADE else (e.order_id,)
                for oid in ids:
                    expected[orders[oid]] = expected.get(orders[oid], 0) + 1
        for account in accounts:
            sequences = [r["sequence"] for r in await conn.fetch(
                "SELECT sequence FROM order_updates WHERE account_id = $1 ORDER BY sequence",
                account)]
            assert sequences == list(range(1, expected[account] + 1))
            assert await conn.fetchval(
                "SELECT last_sequence FROM account_update_sequences WHERE account_id = $1",
                account) == expected[account]
        # Both instruments' updates interleave in each account's numbering.
        per = await conn.fetch("SELECT account_id, count(DISTINCT order_id >> 44) AS n "
                               "FROM order_updates GROUP BY account_id")
        assert {r["n"] for r in per} == {2}
        # Each update is the event it says, of the order it names.
        bad = await conn.fetchval(
            """SELECT count(*) FROM order_updates u
                LEFT JOIN journal j ON j.instrument_id = (u.order_id >> 44)::integer
                                   AND j.sequence = u.journal_sequence AND j.kind = u.kind
                                   AND u.order_id IN (j.order_id, j.other_order_id)
                WHERE j.sequence IS NULL""")
        assert bad == 0
        assert notified == expected

        # A stale epoch writes no update and advances no counter.
        book = OrderBook(instruments[0], last_sequence=len(events[instruments[0]]))
        book.new_order(accounts[0], BUY, LIMIT, GTC, 50, 1, "late", False, 9_000_000)
        with pytest.raises(FencedOut):
            await store.commit(instruments[0], 0, book.drain_changes())
        assert await conn.fetchval("SELECT count(*) FROM order_updates WHERE account_id = $1",
                                   accounts[0]) == expected[accounts[0]]
        assert await conn.fetchval(
            "SELECT last_sequence FROM account_update_sequences WHERE account_id = $1",
            accounts[0]) == expected[accounts[0]]
    finally:
        await pool.close()
        await conn.close()
