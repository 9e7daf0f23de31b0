"""An account's open orders in PostgreSQL (resting and untriggered): the instruments a mass
cancel visits (through the index orders_account_open of migration 0008), which of a
session's orders are still open, and a long session forgetting the orders that closed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import asyncpg

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common import db
from exchange_common.changes import ChangeListener
from exchange_dev.accounts import ensure_account
from order_service import session_guard
from order_service.session_guard import SessionGuard
from order_service.store import Store

BUY, SELL = cpb.SIDE_BUY, cpb.SIDE_SELL
# (order id, instrument, side, state)
ORDERS = [
    (1, 1, BUY, cpb.ORDER_STATE_NEW), (2, 1, SELL, cpb.ORDER_STATE_FILLED),
    (3, 2, SELL, cpb.ORDER_STATE_UNTRIGGERED), (4, 2, BUY, cpb.ORDER_STATE_CANCELLED),
    (5, 2, BUY, cpb.ORDER_STATE_PARTIALLY_FILLED), (6, 1, SELL, cpb.ORDER_STATE_EXPIRED),
]


async def _orders(conn: asyncpg.Connection, account: int, rows) -> None:
    await conn.executemany(
        """INSERT INTO orders (order_id, instrument_id, account_id, side, order_type,
               time_in_force, price, quantity, state, priority, last_sequence, created_at,
               updated_at)
           VALUES ($1, $2, $3, $4, 1, 1, 100, 1, $5, $1, $1, now(), now())""",
        [(oid, iid, account, side, state) for oid, iid, side, state in rows])


async def test_open_instruments_and_open_among(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        account = await ensure_account(conn, "mass")
        other = await ensure_account(conn, "other")
        await _orders(conn, account, ORDERS)
        await _orders(conn, other, [(7, 1, SELL, cpb.ORDER_STATE_NEW)])
        plan = "\n".join(r[0] for r in await conn.fetch(
            f"""EXPLAIN SELECT DISTINCT instrument_id FROM orders
                 WHERE account_id = 1 AND {db.OPEN_ORDERS_SQL}"""))
        assert "orders_account_open" in plan, plan
    finally:
        await conn.close()
    pool = await db.create_pool(database_url, server_settings=db.OLTP_SETTINGS)
    try:
        store = Store(pool, ChangeListener(database_url), cache_ttl=60)
        assert await store.open_instruments(account, None, 0) == [1, 2]
        assert await store.open_instruments(account, None, SELL) == [2]  # the stop
        assert await store.open_instruments(account, None, BUY) == [1, 2]
        assert await store.open_instruments(account, 1, SELL) == []
        assert await store.open_instruments(other, None, 0) == [1]
        assert await store.open_among(account, [1, 2, 3, 4, 5, 6, 7]) == [1, 3, 5]
        assert await store.open_among(account, []) == []
    finally:
        await pool.close()


async def test_a_long_session_forgets_its_closed_orders(database_url: str,
                                                        monkeypatch) -> None:
    """Past PRUNE_AT remembered orders, the session keeps only those still open."""
    monkeypatch.setattr(session_guard, "PRUNE_AT", 4)
    conn = await asyncpg.connect(database_url)
    try:
        account = await ensure_account(conn, "long")
        await _orders(conn, account, ORDERS)
    finally:
        await conn.close()
    pool = await db.create_pool(database_url, server_settings=db.OLTP_SETTINGS)
    try:
        store = Store(pool, ChangeListener(database_url), cache_ttl=60)
        guard = SessionGuard(SimpleNamespace(store=store),  # type: ignore[arg-type]
                             SimpleNamespace(account_id=account),  # type: ignore[arg-type]
                             5.0, lambda response: None)
        guard.apply(opb.SessionOptions(cancel_on_disconnect=True))
        loop = asyncio.get_running_loop()
        answers = [loop.create_future() for _ in ORDERS]
        guard.placing(answers)
        for (order_id, *_), answer in zip(ORDERS, answers, strict=True):
            # as answered when placed: all open then
            answer.set_result((opb.Order(order_id=str(order_id),
                                         state=cpb.ORDER_STATE_NEW), []))
        await asyncio.sleep(0)
        assert len(guard.placed) == 6
        pending = list(session_guard._background)
        assert pending  # the look at which are still open
        await asyncio.gather(*pending)
        assert guard.placed == {1, 3, 5}
        assert guard.prune_at == 6
    finally:
        await pool.close()
