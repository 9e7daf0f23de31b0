"""Issue 14's orders across a kill -9 or a failover of the matching pod that owns
BTC-USD (test_crash_recovery.py, test_failover.py): untriggered stops, good-till-time
orders, one of them expiring while the pod is dead, and a mass cancel, sent straight to
matching as an order service sends them (each with its hold, e2e_helpers).

``place`` builds the situation on the owner; after the restart (or the takeover)
``check_after`` waits for the new owner's first batch to expire the GTT order that came
due, then checks: each due GTT order expired exactly once (one TIMED_OUT in the journal),
the other one still open, the stops still waiting in GetBook, a trade fires one of them,
GetBook equals the independent journal replay (journal_replay.py) and the orders table,
and the money invariants hold.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
from e2e_helpers import Checks, execute_once, matching_new_order, money_problems
from journal_replay import replay_journal

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange_dev.stack import Stack

BTC = 1
BUY, SELL = cpb.SIDE_BUY, cpb.SIDE_SELL
GTT = cpb.TIME_IN_FORCE_GTT
TIMED_OUT, TRIGGERED = 10, 8
UNTRIGGERED, EXPIRED, CANCELLED, NEW = 7, 5, 4, 1
# The GTT order that expires while the pod is dead: this long after it is placed.
SHORT_LIFE_NS = 2_000_000_000


@dataclass
class Placed:
    buy_stop: int
    sell_stop: int
    short_gtt: int
    short_expiry_ns: int
    long_gtt: int
    mass_cancelled: list[int]


async def _one(stack: Stack, addr: str | None, command: mpb.Command) -> mpb.Result:
    async with stack.matching_channel(addr) as channel:
        response = await execute_once(channel, mpb.ExecuteRequest(commands=[command]))
    return response.results[0]


async def _order(stack: Stack, addr: str | None, who: str, coid: str, side: int,
                 price: int, **kw) -> mpb.OrderReport:
    command = await matching_new_order(stack, stack.account_ids[who], f"{coid}-{who}", price,
                                       BTC, side, 100, **kw)
    result = await _one(stack, addr, command)
    assert result.WhichOneof("result") == "order", f"{coid}: {result}"
    return result.order


async def place(stack: Stack, addr: str | None = None) -> Placed:
    """On the owner at ``addr``: a trade at 70,000 (the last price), alice's buy stop at
    70,100 and sell stop at 69,900 (stop-limits), alice's GTT bid expiring in 2 s and
    bob's GTT ask expiring in an hour, then bob's two bids and buy stop cancelled by one
    mass cancel of his buys."""
    await _order(stack, addr, "alice", "first-ask", SELL, 7_000_000)
    first = await _order(stack, addr, "bob", "first-bid", BUY, 7_000_000)
    assert first.state == cpb.ORDER_STATE_FILLED, first
    buy_stop = await _order(stack, addr, "alice", "buy-stop", BUY, 7_020_000,
                            stop_price=7_010_000)
    sell_stop = await _order(stack, addr, "alice", "sell-stop", SELL, 6_980_000,
                             stop_price=6_990_000)
    assert buy_stop.state == sell_stop.state == UNTRIGGERED, (buy_stop, sell_stop)
    expiry = time.time_ns() + SHORT_LIFE_NS
    short = await _order(stack, addr, "alice", "short-gtt", BUY, 6_900_000,
                         time_in_force=GTT, expire_ns=expiry)
    long = await _order(stack, addr, "bob", "long-gtt", SELL, 7_100_000,
                        time_in_force=GTT, expire_ns=time.time_ns() + 3_600_000_000_000)
    assert short.state == long.state == NEW, (short, long)
    bobs = [(await _order(stack, addr, "bob", f"bid{i}", BUY, 6_800_000 + i)).order_id
            for i in range(2)]
    bobs.append((await _order(stack, addr, "bob", "bob-stop", BUY, 7_060_000,
                              stop_price=7_050_000)).order_id)
    result = await _one(stack, addr, mpb.Command(request_id=9, cancel_all=mpb.CancelAll(
        instrument_id=BTC, account_id=stack.account_ids["bob"], side=BUY)))
    assert result.WhichOneof("result") == "cancelled", result
    cancelled = [o.order_id for o in result.cancelled.orders]
    assert cancelled == sorted(bobs), (cancelled, bobs)
    assert all(o.state == CANCELLED for o in result.cancelled.orders)
    return Placed(buy_stop.order_id, sell_stop.order_id, short.order_id, expiry,
                  long.order_id, cancelled)


async def before_kill(conn: asyncpg.Connection, placed: Placed) -> None:
    """The premise: the short GTT order has not expired yet when the pod dies."""
    n = await conn.fetchval("SELECT count(*) FROM journal WHERE kind = $1", TIMED_OUT)
    assert n == 0 and time.time_ns() < placed.short_expiry_ns, \
        "the GTT order expired before the kill: the machine is too slow for this test"


async def wait_until_expired(placed: Placed) -> None:
    """Until the pod's clock (this machine's) is past the short GTT order's expiry."""
    while time.time_ns() <= placed.short_expiry_ns:
        await asyncio.sleep(0.05)


async def get_book(stack: Stack, addr: str | None, wait: float = 20.0) -> mpb.GetBookResponse:
    deadline = time.monotonic() + wait
    async with stack.matching_channel(addr) as channel:
        stub = mpb_grpc.MatchingServiceStub(channel)
        while True:
            try:
                return await stub.GetBook(mpb.GetBookRequest(instrument_id=BTC), timeout=5)
            except Exception:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)


async def check_after(checks: Checks, stack: Stack, conn: asyncpg.Connection,
                      placed: Placed, addr: str | None = None) -> None:
    """After the restart or takeover (see the module's docstring)."""
    await get_book(stack, addr)  # the new owner has the instrument
    deadline = time.monotonic() + 20
    while not await conn.fetchval("SELECT count(*) FROM journal WHERE kind = $1", TIMED_OUT):
        assert time.monotonic() < deadline, "the due GTT order was never expired"
        await asyncio.sleep(0.1)
    await expiries_exactly_once(checks, conn, placed)
    book = await get_book(stack, addr)
    checks.expect([o.order_id for o in book.stops] == [placed.buy_stop, placed.sell_stop],
                  f"GetBook's stops {[o.order_id for o in book.stops]} after recovery")
    checks.expect(placed.long_gtt in [o.order_id for o in book.asks],
                  "the GTT order not yet due is no longer on the book")
    await book_equals_replay(checks, stack, conn, addr)
    # a trade at 70,100 fires alice's buy stop (a stop-limit at 70,200: it rests)
    ask = await _order(stack, addr, "bob", "fire-ask", SELL, 7_010_000)
    bid = await _order(stack, addr, "alice", "fire-bid", BUY, 7_010_000)
    checks.expect(bid.state == cpb.ORDER_STATE_FILLED, f"the firing trade: {ask} {bid}")
    fired = await conn.fetchval(
        "SELECT count(*) FROM journal WHERE kind = $1 AND order_id = $2 AND price = $3",
        TRIGGERED, placed.buy_stop, 7_010_000)
    checks.expect(fired == 1, f"the buy stop's TRIGGERED events: {fired}")
    state = await conn.fetchval("SELECT state FROM orders WHERE order_id = $1",
                                placed.buy_stop)
    checks.expect(state == NEW, f"the fired buy stop-limit is in state {state}, not resting")
    book = await get_book(stack, addr)
    checks.expect([o.order_id for o in book.stops] == [placed.sell_stop],
                  f"stops after the trigger: {[o.order_id for o in book.stops]}")
    checks.expect(placed.buy_stop in [o.order_id for o in book.bids],
                  "the fired buy stop-limit does not rest")
    await book_equals_replay(checks, stack, conn, addr)
    for p in await money_problems(conn):
        checks.expect(False, p)


async def expiries_exactly_once(checks: Checks, conn: asyncpg.Connection,
                                placed: Placed) -> None:
    rows = await conn.fetch("SELECT order_id, count(*) AS n FROM journal WHERE kind = $1 "
                            "GROUP BY order_id", TIMED_OUT)
    checks.expect({r["order_id"]: r["n"] for r in rows} == {placed.short_gtt: 1},
                  f"TIMED_OUT events per order: {[tuple(r) for r in rows]}")
    row = await conn.fetchrow("SELECT state, reason, held FROM orders WHERE order_id = $1",
                              placed.short_gtt)
    checks.expect(tuple(row) == (EXPIRED, "GOOD_TILL_TIME", 0),
                  f"the expired GTT order's row: {tuple(row)}")
    states = {r["order_id"]: r["state"] for r in await conn.fetch(
        "SELECT order_id, state FROM orders WHERE order_id = ANY($1::bigint[])",
        placed.mass_cancelled)}
    checks.expect(set(states.values()) == {CANCELLED},
                  f"the mass-cancelled orders' states: {states}")


async def book_equals_replay(checks: Checks, stack: Stack, conn: asyncpg.Connection,
                             addr: str | None) -> None:
    """GetBook = the independent replay of the journal = the orders table, at one
    sequence (nothing else is sent meanwhile)."""
    book = await get_book(stack, addr)
    replay = await replay_journal(conn, BTC)
    for p in replay.problems:
        checks.expect(False, f"journal: {p}")
    checks.expect(book.sequence == replay.last_sequence,
                  f"GetBook at {book.sequence}, journal at {replay.last_sequence}")

    def rows(orders):
        return [(o.order_id, o.price, o.quantity - o.filled, o.priority) for o in orders]

    checks.expect((rows(book.bids), rows(book.asks)) == replay.book(),
                  f"GetBook {rows(book.bids)} {rows(book.asks)} differs from the journal's "
                  f"replay {replay.book()}")
    untriggered = sorted((o.priority, oid) for oid, o in replay.orders.items()
                         if o.untriggered)
    checks.expect([o.order_id for o in book.stops] == [oid for _, oid in untriggered],
                  f"GetBook's stops differ from the journal's: {untriggered}")
    table = {r["order_id"]: r["state"] for r in await conn.fetch(
        "SELECT order_id, state FROM orders WHERE instrument_id = $1", BTC)}
    implied = {oid: o.state for oid, o in replay.orders.items()}
    checks.expect(table == implied, f"orders' states {table} but the journal implies "
                                    f"{implied}")
