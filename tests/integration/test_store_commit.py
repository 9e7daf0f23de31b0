"""Group commit writes the same rows whether a batch goes as one statement or by COPY."""

from __future__ import annotations

import random

import asyncpg
import pytest

from exchange_common import db
from exchange_dev.accounts import ensure_account
from matching_service import store as store_module
from matching_service.engine import BUY, GTC, LIMIT, MARKET, SELL, OrderBook
from matching_service.store import FencedOut, Store

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("commands", [20, 600])  # one statement; COPY (> 400 events)
async def test_commit_paths_write_the_engine_state(database_url, commands) -> None:
    conn = await asyncpg.connect(database_url)
    accounts = [await ensure_account(conn, f"a{i}") for i in range(3)]
    await conn.execute("UPDATE instrument_state SET owner_epoch = 1 WHERE instrument_id = 1")
    pool = await db.create_pool(database_url)
    try:
        store, book, rng = Store(pool), OrderBook(1), random.Random(commands)
        for batch in range(3):
            for i in range(commands):
                side = rng.choice((BUY, SELL))
                type_ = MARKET if rng.random() < 0.2 else LIMIT
                book.new_order(rng.choice(accounts), side, type_, GTC if type_ == LIMIT else 2,
                               rng.randint(99, 101) if type_ == LIMIT else 0, rng.randint(1, 9),
                               f"{batch}-{i}", False, 1_000_000 * (batch + 1))
            if book.orders:
                victim = book.orders[next(iter(book.orders))]
                book.amend(victim.account_id, victim.order_id, 0, victim.filled + 1, 5_000)
            changes = book.drain_changes()
            assert (len(changes.events) > store_module.ONE_STATEMENT_EVENTS) == (commands > 100)
            await store.commit(1, 1, changes)
        rows = await conn.fetch("SELECT * FROM orders WHERE state IN (1, 2) ORDER BY order_id")
        assert [(r["order_id"], r["price"], r["quantity"], r["filled"], r["priority"])
                for r in rows] == sorted(
            (o.order_id, o.price, o.quantity, o.filled, o.priority) for o in book.resting())
        assert await conn.fetchval("SELECT count(*) FROM journal") == book.sequence
        assert await conn.fetchval("SELECT last_sequence FROM instrument_state "
                                   "WHERE instrument_id = 1") == book.sequence
        reloaded = await store.load_book(1)
        assert [o.order_id for o in reloaded.resting()] == [o.order_id for o in book.resting()]
        # a stale epoch writes nothing, on either path
        book.new_order(accounts[0], BUY, LIMIT, GTC, 50, 1, "late", False, 9_000_000)
        with pytest.raises(FencedOut):
            await store.commit(1, 0, book.drain_changes())
        assert await conn.fetchval("SELECT count(*) FROM journal") == book.sequence - 1
    finally:
        await pool.close()
        await conn.close()
