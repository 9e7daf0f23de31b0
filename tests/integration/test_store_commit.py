"""Group commit writes the engine's records as they are, column for column, small
batches and large, and a fenced-out commit writes nothing."""

from __future__ import annotations

import random

import asyncpg
import pytest

from exchange_common import db
from exchange_dev.accounts import ensure_account
from matching_service.engine import (
    BUY,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    SELL,
    STP_NONE,
    JournalEvent,
    OrderBook,
    OrderRow,
    Trade,
)
from matching_service.rows import column, fields, ns_of
from matching_service.store import FencedOut, Store

pytestmark = pytest.mark.integration


def stored(row: asyncpg.Record, record: type) -> tuple:
    """A table row as the values of ``record``'s fields (times back in nanoseconds)."""
    return tuple(ns_of(row[column(f)]) if f.endswith("_ns") else row[column(f)]
                 for f in fields(record))


def values(record: object) -> tuple:
    return tuple(getattr(record, f) for f in fields(type(record)))


@pytest.mark.parametrize("commands", [20, 600])  # a few events per batch; thousands
async def test_commit_writes_the_engine_records(database_url, commands) -> None:
    conn = await asyncpg.connect(database_url)
    accounts = [await ensure_account(conn, f"a{i}") for i in range(3)]
    await conn.execute("UPDATE instrument_state SET owner_epoch = 1 WHERE instrument_id = 1")
    pool = await db.create_pool(database_url)
    try:
        store, book, rng = Store(pool), OrderBook(1), random.Random(commands)
        orders: dict[int, OrderRow] = {}
        events: list[JournalEvent] = []
        trades: list[Trade] = []
        for batch in range(3):
            for i in range(commands):
                side = rng.choice((BUY, SELL))
                type_ = MARKET if rng.random() < 0.2 else LIMIT
                book.new_order(rng.choice(accounts), side, type_, GTC if type_ == LIMIT else IOC,
                               rng.randint(99, 101) if type_ == LIMIT else 0, rng.randint(1, 9),
                               f"{batch}-{i}", False, 1_000_000 * (batch + 1))
            if book.orders:
                victim = book.orders[next(iter(book.orders))]
                book.amend(victim.account_id, victim.order_id, 0, victim.filled + 1, 5_000)
            changes = book.drain_changes()
            orders.update((o.order_id, o) for o in changes.orders)
            events.extend(changes.events)
            trades.extend(changes.trades)
            await store.commit(1, 1, changes)
        assert (len(events) > 2_000) == (commands > 100)

        # every row is the engine's record, column for column
        rows = await conn.fetch("SELECT * FROM orders WHERE instrument_id = 1 ORDER BY order_id")
        assert [stored(r, OrderRow) for r in rows] == [values(orders[k]) for k in sorted(orders)]
        rows = await conn.fetch("SELECT * FROM journal WHERE instrument_id = 1 ORDER BY sequence")
        assert [stored(r, JournalEvent) for r in rows] == [values(e) for e in events]
        assert {r["owner_epoch"] for r in rows} == {1}
        rows = await conn.fetch("SELECT * FROM trades WHERE instrument_id = 1 ORDER BY trade_id")
        assert [stored(r, Trade) for r in rows] == [values(t) for t in trades]
        assert trades

        resting = await conn.fetch(
            "SELECT order_id FROM orders WHERE state = ANY($1::smallint[]) ORDER BY order_id",
            [NEW, PARTIALLY_FILLED])
        assert [r["order_id"] for r in resting] == sorted(o.order_id for o in book.resting())
        assert await conn.fetchval("SELECT last_sequence FROM instrument_state "
                                   "WHERE instrument_id = 1") == book.sequence
        reloaded = await store.load_book(1)
        assert [o.order_id for o in reloaded.resting()] == [o.order_id for o in book.resting()]

        # a stale epoch writes nothing
        book.new_order(accounts[0], BUY, LIMIT, GTC, 50, 1, "late", False, 9_000_000)
        book.new_order(accounts[1], SELL, LIMIT, GTC, 50, 1, "", False, 9_000_000)
        with pytest.raises(FencedOut):
            await store.commit(1, 0, book.drain_changes())
        assert await conn.fetchval("SELECT count(*) FROM journal") == len(events)
        assert await conn.fetchval("SELECT count(*) FROM orders") == len(orders)
        assert await conn.fetchval("SELECT count(*) FROM trades") == len(trades)
        assert await conn.fetchval("SELECT last_sequence FROM instrument_state "
                                   "WHERE instrument_id = 1") == len(events)
    finally:
        await pool.close()
        await conn.close()


async def test_a_column_added_while_the_pod_runs_takes_its_default(database_url) -> None:
    """A migration that adds a column to the tables a running pod writes (expand before a
    release that sets it) stops nothing: the next commit reads the tables again, writes
    what its records hold and leaves the new column to its default."""
    conn = await asyncpg.connect(database_url)
    account = await ensure_account(conn, "a")
    await conn.execute("UPDATE instrument_state SET owner_epoch = 1 WHERE instrument_id = 1")
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        store, book = Store(pool), OrderBook(1)
        book.new_order(account, SELL, LIMIT, GTC, 100, 5, "first", False, 1_000_000)
        await store.commit(1, 1, book.drain_changes())
        for table in ("journal", "orders", "trades"):
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN later int NOT NULL DEFAULT 7")
        book.new_order(account, BUY, LIMIT, GTC, 100, 2, "second", False, 2_000_000,
                       self_trade_prevention=STP_NONE)  # it trades with the first
        changes = book.drain_changes()
        assert changes.trades and len(changes.orders) == 2  # a new row and a changed one
        await store.commit(1, 1, changes)
        assert await conn.fetchval("SELECT count(*) FROM journal WHERE later = 7") == 3
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE later = 7") == 2
        assert await conn.fetchval("SELECT count(*) FROM trades WHERE later = 7") == 1
        assert await conn.fetchval("SELECT filled FROM orders WHERE client_order_id = "
                                   "'first'") == 2
        assert [o.order_id for o in (await store.load_book(1)).resting()] == [
            o.order_id for o in book.resting()]
    finally:
        await pool.close()
        await conn.close()
