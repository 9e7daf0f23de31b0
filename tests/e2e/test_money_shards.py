"""No double spending across shards, with real processes (issue 13).

Matching A owns BTC-USD, matching B owns ETH-USD; one account has just enough USD for
one buy at a time on either. Four clients hammer both instruments at once: place a buy
(which rests), cancel it, again. PostgreSQL's row lock on the account's USD balance is the
arbiter (order_service/holds.py): whatever the interleaving, the account never has two
orders open at the same time, it is refused with INSUFFICIENT_FUNDS whenever the other
instrument's order holds the money, and at the end every unit is back in available and
the exchange's money invariants hold (check-balances).
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import grpc
import pytest
from e2e_helpers import money_problems
from test_failover import two_matching  # noqa: F401 - the fixture

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info
from exchange_dev.accounts import ensure_account

pytestmark = pytest.mark.e2e

SPENDER_KEY = "spender-key-0123456789abcdef"
# One buy of each instrument needs exactly this much USD on hold (6 decimals): BTC-USD
# 0.0100 at 70,000.00 and ETH-USD 0.100 at 7,000.00 are both 700.00 USD plus the 10 bps
# fee reserve: 700.70 USD. The deposit is a little more, never enough for two.
ONE_ORDER = 700_700_000
DEPOSIT = ONE_ORDER + 250_000_000
ORDERS = {"BTC-USD": ("70000.00", "0.0100"), "ETH-USD": ("7000.00", "0.100")}
ROUNDS = 25


async def _hammer(stub: opb_grpc.OrderServiceStub, symbol: str, tag: str, seed: int,
                  counts: dict[str, int]) -> None:
    rng = random.Random(seed)
    price, quantity = ORDERS[symbol]
    md = (("x-api-key", SPENDER_KEY),)
    for i in range(ROUNDS):
        try:
            resp = await stub.CreateOrder(opb.CreateOrderRequest(
                instrument=symbol, side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT, price=price,
                quantity=quantity, client_order_id=f"{tag}-{i}"), metadata=md, timeout=10)
        except grpc.aio.AioRpcError as err:
            info = error_info(err)
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
            assert info is not None and info.reason == "INSUFFICIENT_FUNDS", err
            counts["refused"] += 1
            await asyncio.sleep(rng.random() * 0.01)
            continue
        assert resp.order.state == cpb.ORDER_STATE_NEW, resp.order
        counts[symbol] += 1
        await asyncio.sleep(rng.random() * 0.02)  # hold the money a moment
        cancelled = await stub.CancelOrder(opb.CancelOrderRequest(
            order_id=resp.order.order_id), metadata=md, timeout=10)
        assert cancelled.order.state == cpb.ORDER_STATE_CANCELLED


async def test_one_account_cannot_spend_twice_on_two_pods(two_matching) -> None:  # noqa: F811
    async with asyncio.timeout(90):
        stack = await two_matching(a="BTC-USD", b="ETH-USD")
        conn = await asyncpg.connect(stack.database_url)
        try:
            account = await ensure_account(conn, "spender", SPENDER_KEY)
            usd = await conn.fetchval("SELECT asset_id FROM assets WHERE symbol = 'USD'")
            await conn.execute(
                """INSERT INTO ledger (account_id, asset_id, kind, available, idempotency_key)
                   VALUES ($1, $2, 'deposit', $3, 'spender-deposit')""", account, usd, DEPOSIT)
            await conn.execute(
                """INSERT INTO balances (account_id, asset_id, available) VALUES ($1, $2, $3)""",
                account, usd, DEPOSIT)
            # Both pods own their instrument before the clients start.
            for _ in range(100):
                owners = await conn.fetchval(
                    "SELECT count(DISTINCT owner_address) FROM instrument_state "
                    "WHERE owner_epoch > 0")
                if owners == 2:
                    break
                await asyncio.sleep(0.1)
            counts = {"BTC-USD": 0, "ETH-USD": 0, "refused": 0}
            async with grpc.aio.insecure_channel(stack.order_addr) as ch:
                stub = opb_grpc.OrderServiceStub(ch)
                await asyncio.gather(*(
                    _hammer(stub, symbol, f"{symbol}-{k}", seed=k * 7 + n, counts=counts)
                    for n, symbol in enumerate(ORDERS) for k in range(2)))
            print("placed and cancelled:", counts)
            # Both instruments were used, and the money was contended for.
            assert counts["BTC-USD"] > 0 and counts["ETH-USD"] > 0, counts
            assert counts["refused"] > 0, counts
            # Never two orders open at once: their lives (placed .. cancelled, as matching
            # stamped them) do not overlap.
            lives = await conn.fetch(
                """SELECT order_id, instrument_id, created_at, updated_at, state, held
                     FROM orders WHERE account_id = $1 ORDER BY created_at""", account)
            assert len(lives) == counts["BTC-USD"] + counts["ETH-USD"]
            for before, after in zip(lives, lives[1:], strict=False):
                assert before["updated_at"] <= after["created_at"], (before, after)
            assert all(r["state"] == cpb.ORDER_STATE_CANCELLED and r["held"] == 0
                       for r in lives)
            balance = await conn.fetchrow(
                "SELECT available, held FROM balances WHERE account_id = $1 AND asset_id = $2",
                account, usd)
            assert (balance["available"], balance["held"]) == (DEPOSIT, 0)
            assert await money_problems(conn) == []
        finally:
            await conn.close()
