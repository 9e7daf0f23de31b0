"""PostgreSQL and Redis outages, with the services running as real processes.

The tests stop, kill and restart the session's embedded servers (the
``pg_server`` / ``redis_server`` fixtures) and always start them again, even
when a check fails. They are skipped when the suite runs on external servers
(``EXCHANGE_TEST_DATABASE_URL`` / ``EXCHANGE_TEST_REDIS_URL``).

- ``test_postgres_outage``: while PostgreSQL is down, CreateOrder and
  CancelOrder fail with UNAVAILABLE within their 3 s deadline (never hang,
  never INTERNAL) and nothing is acknowledged; once it is back, trading
  resumes within a few seconds with no service restarted, and the books agree
  with PostgreSQL.
- ``test_redis_outage``: while Redis is down trading continues (orders
  acknowledged, fills made); once it is back, market data catches up without
  any new order: GetOrderBook and a StreamOrderBook subscriber (which never
  sees a silent gap: deltas are consecutive, or a fresh snapshot comes) equal
  the committed book in PostgreSQL.
- ``test_redis_comes_back_empty``: Redis is killed and its data deleted, so
  entries that market data had not read yet are lost, and the batches
  committed while it was down never reach it; market data must recover all
  of it from PostgreSQL.

Seed: ``EXCHANGE_TEST_SEED``. Every call has a deadline and every test body a
time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import grpc
import pytest
import redis as redis_lib
from e2e_helpers import Checks, meta

from bench.orders import BTC_USD, ETH_USD, near_touch_order
from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_client.book import LocalOrderBook, SequenceGap
from exchange_common.errors import error_info
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("EXCHANGE_TEST_SEED", "20250603"))
BTC, ETH = 1, 2
SYMBOL = {BTC: "BTC-USD", ETH: "ETH-USD"}
Code = grpc.StatusCode
CALL_DEADLINE = 3.0        # the deadline order calls get during an outage
RESUME_LIMIT = 10.0        # trading resumes within this long after PostgreSQL is back
CATCH_UP_LIMIT = 8.0       # market data equals PostgreSQL within this long after Redis is back

Levels = list[tuple[Decimal, Decimal, int]]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def limit_order(instrument: int, side: int, price: str, qty: str, coid: str,
                tif: int = cpb.TIME_IN_FORCE_GTC) -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(instrument=SYMBOL[instrument], side=side,
                                  type=cpb.ORDER_TYPE_LIMIT, time_in_force=tif, price=price,
                                  quantity=qty, client_order_id=coid)


def seeded_orders(rng: random.Random, prefix: str, n: int, instrument: int = BTC
                  ) -> list[tuple[str, opb.CreateOrderRequest]]:
    """(account, order): resting bids below 70,000 (3,500 for ETH) and asks above, and
    every third one a limit that crosses the spread (a trade)."""
    market, mid = (BTC_USD, 7_000_000) if instrument == BTC else (ETH_USD, 350_000)
    return [(("alice", "bob")[i % 2],
             near_touch_order(rng, f"{prefix}-{i}", market, mid, crossing=i % 3 == 2))
            for i in range(n)]


@dataclass
class Call:
    what: str
    code: str
    reason: str
    elapsed: float


async def timed(what: str, coro) -> tuple[Call, object]:
    t0 = time.monotonic()
    try:
        result = await coro
    except grpc.aio.AioRpcError as err:
        info = error_info(err)
        return Call(what, err.code().name, info.reason if info else "",
                    time.monotonic() - t0), err
    return Call(what, "OK", "", time.monotonic() - t0), result


async def pg(stack: Stack) -> asyncpg.Connection:
    assert stack.database_url is not None
    return await asyncio.wait_for(asyncpg.connect(stack.database_url), 10)


async def units(conn: asyncpg.Connection) -> dict[int, tuple[Decimal, Decimal]]:
    rows = await conn.fetch("SELECT instrument_id, tick_size, lot_size FROM instruments",
                            timeout=5)
    return {r["instrument_id"]: (Decimal(r["tick_size"]), Decimal(r["lot_size"]))
            for r in rows}


async def pg_book(conn: asyncpg.Connection, instrument: int,
                  tick_lot: dict[int, tuple[Decimal, Decimal]]) -> tuple[int, Levels, Levels]:
    """The committed L2 book: (last_sequence, bids best first, asks best first), read
    in one snapshot."""
    tick, lot = tick_lot[instrument]
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        last = await conn.fetchval(
            "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1", instrument,
            timeout=5) or 0
        rows = await conn.fetch(
            """SELECT side, price, sum(quantity - filled)::bigint AS lots, count(*) AS n
               FROM orders WHERE instrument_id = $1 AND state IN (1, 2)
               GROUP BY side, price""", instrument, timeout=5)
    bids = sorted(((r["price"] * tick, r["lots"] * lot, r["n"]) for r in rows
                   if r["side"] == cpb.SIDE_BUY), reverse=True)
    asks = sorted((r["price"] * tick, r["lots"] * lot, r["n"]) for r in rows
                  if r["side"] == cpb.SIDE_SELL)
    return last, bids, asks


def md_levels(levels) -> Levels:
    return [(Decimal(lv.price), Decimal(lv.quantity), lv.order_count) for lv in levels]


async def md_book(md: mdpb_grpc.MarketDataServiceStub, instrument: int
                  ) -> tuple[int, Levels, Levels]:
    resp = await md.GetOrderBook(mdpb.GetOrderBookRequest(instrument=SYMBOL[instrument]),
                                 timeout=2)
    return resp.sequence, md_levels(resp.bids), md_levels(resp.asks)


async def journal_problems(conn: asyncpg.Connection, instrument: int) -> list[str]:
    last = await conn.fetchval(
        "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1", instrument,
        timeout=5) or 0
    seqs = [r["sequence"] for r in await conn.fetch(
        "SELECT sequence FROM journal WHERE instrument_id = $1 ORDER BY sequence", instrument,
        timeout=5)]
    if seqs == list(range(1, last + 1)):
        return []
    missing = sorted(set(range(1, last + 1)) - set(seqs))[:10]
    return [f"{SYMBOL[instrument]}: journal is not 1..{last} ({len(seqs)} rows, "
            f"missing {missing})"]


async def matching_book_problems(conn: asyncpg.Connection, stack: Stack, instrument: int
                                 ) -> list[str]:
    """The matching pod's book (GetBook) equals the resting orders in PostgreSQL."""
    try:
        async with stack.matching_channel() as ch:
            book = await mpb_grpc.MatchingServiceStub(ch).GetBook(
                mpb.GetBookRequest(instrument_id=instrument), timeout=3)
    except grpc.aio.AioRpcError as err:
        return [f"GetBook({SYMBOL[instrument]}) on matching: {err.code().name} {err.details()}"]
    rows = await conn.fetch(
        """SELECT order_id, side, price, quantity - filled AS remaining, priority
           FROM orders WHERE instrument_id = $1 AND state IN (1, 2)""", instrument, timeout=5)
    def ordered(side: int, best) -> list[tuple[int, int, int]]:
        chosen = sorted((r for r in rows if r["side"] == side),
                        key=lambda r: (best(r["price"]), r["priority"]))
        return [(r["order_id"], r["price"], r["remaining"]) for r in chosen]

    want_bids = ordered(cpb.SIDE_BUY, lambda p: -p)
    want_asks = ordered(cpb.SIDE_SELL, lambda p: p)
    got_bids = [(o.order_id, o.price, o.quantity - o.filled) for o in book.bids]
    got_asks = [(o.order_id, o.price, o.quantity - o.filled) for o in book.asks]
    last = await conn.fetchval(
        "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1", instrument)
    out = []
    if book.sequence != last:
        out.append(f"matching's {SYMBOL[instrument]} book at sequence {book.sequence}, "
                   f"PostgreSQL at {last}")
    if (got_bids, got_asks) != (want_bids, want_asks):
        out.append(f"matching's {SYMBOL[instrument]} book differs from PostgreSQL: "
                   f"{got_bids} {got_asks} vs {want_bids} {want_asks}")
    return out


class BookWatcher:
    """A StreamOrderBook subscriber keeping a LocalOrderBook, as a client does. A delta
    that does not follow the previous message is a silent gap (a violation; the watcher
    then resubscribes, as a client would); a stream that ends is resubscribed (counted)."""

    def __init__(self, md: mdpb_grpc.MarketDataServiceStub, instrument: int) -> None:
        self.md = md
        self.instrument = instrument
        self.local = LocalOrderBook(SYMBOL[instrument])
        self.snapshots: list[tuple[float, int]] = []
        self.violations: list[str] = []
        self.resubscribed: list[str] = []
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _run(self) -> None:
        while True:
            call = self.md.StreamOrderBook(
                mdpb.StreamOrderBookRequest(instrument=SYMBOL[self.instrument]), timeout=120)
            try:
                async for msg in call:
                    if not self.apply(msg):
                        break
            except grpc.aio.AioRpcError as err:
                self.resubscribed.append(f"{err.code().name}: {err.details()}")
            finally:
                call.cancel()
            self.local.reset()
            await asyncio.sleep(0.1)

    def apply(self, msg: mdpb.StreamOrderBookResponse) -> bool:
        """Apply one message; False (a violation recorded) if it is a gap."""
        try:
            self.local.apply(msg)
        except SequenceGap as gap:
            self.violations.append(f"silent gap: {gap} (delta {msg.delta.first_sequence}-"
                                   f"{msg.delta.sequence})")
            return False
        if msg.WhichOneof("update") == "snapshot":
            self.snapshots.append((time.monotonic(), msg.snapshot.sequence))
        return True

    @property
    def deltas(self) -> int:
        return self.local.deltas

    def book(self) -> tuple[int | None, Levels, Levels]:
        return (self.local.sequence,
                [(lv.price, lv.quantity, lv.order_count) for lv in self.local.bids()],
                [(lv.price, lv.quantity, lv.order_count) for lv in self.local.asks()])


async def converged(conn: asyncpg.Connection, md: mdpb_grpc.MarketDataServiceStub,
                    watcher: BookWatcher, instrument: int,
                    tick_lot: dict[int, tuple[Decimal, Decimal]], timeout: float
                    ) -> tuple[float | None, str]:
    """Seconds until GetOrderBook and the subscriber's book both equal the committed
    book (None if not within ``timeout``), and the last difference seen."""
    t0 = time.monotonic()
    last_diff = ""
    while True:
        want = await pg_book(conn, instrument, tick_lot)
        try:
            got = await md_book(md, instrument)
        except grpc.aio.AioRpcError as err:
            got = (f"GetOrderBook failed: {err.code().name}", [], [])
        seen = watcher.book()
        if got == want and seen == want:
            return time.monotonic() - t0, ""
        last_diff = (f"PostgreSQL {want}\n    GetOrderBook {got}\n    subscriber {seen}")
        if time.monotonic() - t0 > timeout:
            return None, last_diff
        await asyncio.sleep(0.1)


async def trades_problems(conn: asyncpg.Connection, md: mdpb_grpc.MarketDataServiceStub,
                          instrument: int) -> list[str]:
    want = {str(r["trade_id"]) for r in await conn.fetch(
        "SELECT trade_id FROM trades WHERE instrument_id = $1", instrument, timeout=5)}
    resp = await md.ListTrades(mdpb.ListTradesRequest(instrument=SYMBOL[instrument],
                                                      page_size=1000), timeout=3)
    got = {t.trade_id for t in resp.trades}
    if got != want:
        return [f"ListTrades({SYMBOL[instrument]}) has {len(got)} trades, PostgreSQL "
                f"{len(want)}; missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"]
    return []


async def place(stub: opb_grpc.OrderServiceStub, stack: Stack, orders, checks: Checks,
                label: str) -> list[opb.CreateOrderResponse]:
    """Place ``orders`` one by one (3 s deadline each); each must be OK within it."""
    out = []
    for who, req in orders:
        call, res = await timed(req.client_order_id, stub.CreateOrder(
            req, metadata=meta(stack, who), timeout=CALL_DEADLINE))
        if checks.expect(call.code == "OK", f"{label}: CreateOrder {req.client_order_id} "
                                            f"-> {call.code} {call.reason} "
                                            f"after {call.elapsed:.2f}s"):
            out.append(res)
    return out


# ---------------------------------------------------------------------------
# PostgreSQL outage
# ---------------------------------------------------------------------------


async def test_postgres_outage(stack, pg_server) -> None:
    if pg_server is None:
        pytest.skip("needs the embedded PostgreSQL (EXCHANGE_TEST_DATABASE_URL is set)")
    async with asyncio.timeout(75):
        checks = Checks()
        rng = random.Random(SEED + 10)
        async with grpc.aio.insecure_channel(stack.order_addr) as och, \
                grpc.aio.insecure_channel(stack.marketdata_addr) as mch:
            stub = opb_grpc.OrderServiceStub(och)
            md = mdpb_grpc.MarketDataServiceStub(mch)
            pids = {n: p.pid for n, p in stack.processes.items()}

            # A book on both instruments before the outage (on BTC-USD: pre-ask is
            # the best ask, pre-bid the best bid).
            before = await place(stub, stack, seeded_orders(rng, "pre-eth", 9, ETH) + [
                ("alice", limit_order(BTC, cpb.SIDE_SELL, "70100.00", "0.2000", "pre-ask")),
                ("bob", limit_order(BTC, cpb.SIDE_BUY, "69900.00", "0.3000", "pre-bid")),
                ("alice", limit_order(BTC, cpb.SIDE_SELL, "70500.00", "0.1000", "pre-ask2")),
                ("bob", limit_order(BTC, cpb.SIDE_BUY, "69500.00", "0.1000", "pre-bid2")),
            ], checks, "before")
            assert len(before) == 13, checks.failures
            ask = before[9]
            conn = await pg(stack)
            try:
                pre_orders = {r["order_id"]: (r["state"], r["filled"]) for r in await conn.fetch(
                    "SELECT order_id, state, filled FROM orders", timeout=5)}
                pre_state = {r["instrument_id"]: r["last_sequence"] for r in await conn.fetch(
                    "SELECT instrument_id, last_sequence FROM instrument_state", timeout=5)}
            finally:
                await conn.close()

            calls: list[Call] = []
            outage_orders = seeded_orders(rng, "outage", 12) + seeded_orders(rng, "outage-eth",
                                                                             4, ETH)
            try:
                t_stop = time.monotonic()
                pg_server.stop()
                print(f"PostgreSQL stopped ({time.monotonic() - t_stop:.2f}s)")

                async def create(who, req):
                    call, _ = await timed(f"CreateOrder {req.client_order_id or '(no id)'}",
                                          stub.CreateOrder(
                        req, metadata=meta(stack, who), timeout=CALL_DEADLINE))
                    calls.append(call)

                async def cancel(who, req, what):
                    call, _ = await timed(what, stub.CancelOrder(
                        req, metadata=meta(stack, who), timeout=CALL_DEADLINE))
                    calls.append(call)

                # One by one, right after the stop ...
                for who, req in outage_orders[:4]:
                    await create(who, req)
                await cancel("alice", opb.CancelOrderRequest(order_id=ask.order.order_id),
                             "CancelOrder by order_id")
                await cancel("bob", opb.CancelOrderRequest(client_order_id="pre-bid"),
                             "CancelOrder by client_order_id")
                # ... a concurrent burst, half of it without a client_order_id (the order
                # service then has nothing to look up and goes straight to matching) ...
                burst = outage_orders[4:10]
                for _, req in burst[::2]:
                    req.client_order_id = ""
                await asyncio.gather(*(create(w, r) for w, r in burst))
                # ... and again after a while, when every service has noticed.
                await asyncio.sleep(3.0)
                for who, req in outage_orders[10:]:
                    await create(who, req)
                await cancel("alice", opb.CancelOrderRequest(order_id=ask.order.order_id),
                             "CancelOrder by order_id (later)")
                down_for = time.monotonic() - t_stop
            finally:
                if not pg_server.is_running():
                    t_start = time.monotonic()
                    pg_server.start()
                    print(f"PostgreSQL started again ({time.monotonic() - t_start:.2f}s)")
            t_back = time.monotonic()

            print(f"during the {down_for:.1f}s outage:")
            for c in calls:
                print(f"  {c.what}: {c.code} {c.reason} in {c.elapsed:.3f}s")
            for c in calls:
                checks.expect(c.code == "UNAVAILABLE" and c.elapsed < CALL_DEADLINE,
                              f"{c.what} during the outage: {c.code} {c.reason} after "
                              f"{c.elapsed:.2f}s (must be UNAVAILABLE within {CALL_DEADLINE}s)")

            # Nothing was acknowledged, nothing changed.
            conn = await pg(stack)
            try:
                coids = [r.client_order_id for _, r in outage_orders if r.client_order_id]
                leaked = await conn.fetch(
                    "SELECT client_order_id, order_id, state FROM orders "
                    "WHERE client_order_id = ANY($1::text[])", coids, timeout=5)
                checks.expect(not leaked, f"orders refused during the outage exist: "
                                          f"{[tuple(r) for r in leaked]}")
                now_orders = {r["order_id"]: (r["state"], r["filled"]) for r in await conn.fetch(
                    "SELECT order_id, state, filled FROM orders", timeout=5)}
                checks.expect(now_orders == pre_orders,
                              "orders changed during the outage: "
                              f"{set(now_orders.items()) ^ set(pre_orders.items())}")
                now_state = {r["instrument_id"]: r["last_sequence"] for r in await conn.fetch(
                    "SELECT instrument_id, last_sequence FROM instrument_state", timeout=5)}
                checks.expect(now_state == pre_state,
                              f"journal moved during the outage: {pre_state} -> {now_state}")

                # Trading resumes by itself: poll one order (same client_order_id) until OK.
                resumed = None
                attempts: list[str] = []
                take = limit_order(BTC, cpb.SIDE_BUY, "70100.00", "0.0500", "after-outage")
                while time.monotonic() - t_back < RESUME_LIMIT + 10:
                    call, res = await timed("after", stub.CreateOrder(
                        take, metadata=meta(stack, "bob"), timeout=2))
                    attempts.append(f"{call.code}/{call.reason}")
                    if call.code == "OK":
                        resumed = time.monotonic() - t_back
                        break
                    await asyncio.sleep(0.2)
                print("RESUME after PostgreSQL is back: "
                      + (f"{resumed:.2f}s" if resumed is not None else "NEVER")
                      + f" ({len(attempts)} attempts: {sorted(set(attempts))})")
                assert resumed is not None, (
                    f"trading did not resume within {RESUME_LIMIT + 10:.0f}s after PostgreSQL "
                    f"came back: {attempts[-5:]}\nearlier failures:\n"
                    + "\n".join(checks.failures))
                checks.expect(resumed < RESUME_LIMIT,
                              f"trading resumed {resumed:.2f}s after PostgreSQL came back "
                              f"(limit {RESUME_LIMIT}s)")
                # The book survived: the buy takes from the ask that was never cancelled.
                checks.expect([(f.price, f.quantity) for f in res.fills]
                              == [("70100.00", "0.0500")]
                              and res.fills and res.order.state == cpb.ORDER_STATE_FILLED,
                              f"the order after the outage did not fill against pre-ask: {res}")
                cancel_call, cres = await timed("cancel", stub.CancelOrder(
                    opb.CancelOrderRequest(client_order_id="pre-bid"),
                    metadata=meta(stack, "bob"), timeout=5))
                checks.expect(cancel_call.code == "OK"
                              and cres.order.state == cpb.ORDER_STATE_CANCELLED,
                              f"CancelOrder after the outage: {cancel_call}")
                # A refused order retried with its client_order_id: one new order.
                who, retry = outage_orders[0]
                rcall, rres = await timed("retry", stub.CreateOrder(
                    retry, metadata=meta(stack, who), timeout=5))
                checks.expect(rcall.code == "OK", f"retry of {retry.client_order_id}: {rcall}")
                n = await conn.fetchval("SELECT count(*) FROM orders WHERE client_order_id = $1",
                                        retry.client_order_id)
                checks.expect(n == 1, f"{n} orders for {retry.client_order_id}")

                # Consistent books: journal, matching, market data.
                tick_lot = await units(conn)
                for inst in (BTC, ETH):
                    for p in await journal_problems(conn, inst):
                        checks.expect(False, p)
                    for p in await matching_book_problems(conn, stack, inst):
                        checks.expect(False, p)
                    want = await pg_book(conn, inst, tick_lot)
                    deadline = time.monotonic() + 5
                    got = None
                    while time.monotonic() < deadline:
                        with contextlib.suppress(grpc.aio.AioRpcError):
                            got = await md_book(md, inst)
                        if got == want:
                            break
                        await asyncio.sleep(0.1)
                    checks.expect(got == want, f"market data {SYMBOL[inst]} {got} != "
                                               f"PostgreSQL {want}")
            finally:
                await conn.close()
            checks.expect({n: p.pid for n, p in stack.processes.items()} == pids
                          and all(p.poll() is None for p in stack.processes.values()),
                          f"a service died or was restarted: {stack.exited()}")
        checks.done()


# ---------------------------------------------------------------------------
# Redis outages
# ---------------------------------------------------------------------------


@dataclass
class RedisRun:
    stack: Stack
    stub: opb_grpc.OrderServiceStub
    md: mdpb_grpc.MarketDataServiceStub
    conn: asyncpg.Connection
    watcher: BookWatcher
    tick_lot: dict[int, tuple[Decimal, Decimal]]
    checks: Checks = field(default_factory=Checks)

    async def converge(self, label: str, timeout: float) -> float | None:
        took, diff = await converged(self.conn, self.md, self.watcher, BTC, self.tick_lot,
                                     timeout)
        print(f"{label}: " + (f"market data equals PostgreSQL after {took:.2f}s" if took
                              is not None else f"market data NOT caught up in {timeout}s"))
        self.checks.expect(took is not None,
                           f"{label}: market data did not equal the committed book within "
                           f"{timeout}s:\n    {diff}")
        return took

    async def final_checks(self) -> None:
        w = self.watcher
        print(f"subscriber: {len(w.snapshots)} snapshots (sequences "
              f"{[s for _, s in w.snapshots]}), {w.deltas} deltas, "
              f"resubscribed {len(w.resubscribed)}x {w.resubscribed}")
        self.checks.expect(not w.violations, f"subscriber saw silent gaps: {w.violations}")
        for p in await trades_problems(self.conn, self.md, BTC):
            self.checks.expect(False, p)
        for p in await journal_problems(self.conn, BTC):
            self.checks.expect(False, p)


async def redis_run(stack: Stack, och, mch) -> RedisRun:
    stub = opb_grpc.OrderServiceStub(och)
    md = mdpb_grpc.MarketDataServiceStub(mch)
    conn = await pg(stack)
    watcher = BookWatcher(md, BTC)
    watcher.start()
    run = RedisRun(stack, stub, md, conn, watcher, await units(conn))
    deadline = time.monotonic() + 5
    while not watcher.snapshots and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert watcher.snapshots, "StreamOrderBook sent no snapshot"
    return run


async def test_redis_outage(stack, redis_server) -> None:
    if redis_server is None:
        pytest.skip("needs the embedded Redis (EXCHANGE_TEST_REDIS_URL is set)")
    async with asyncio.timeout(75):
        rng = random.Random(SEED + 20)
        async with grpc.aio.insecure_channel(stack.order_addr) as och, \
                grpc.aio.insecure_channel(stack.marketdata_addr) as mch:
            run = await redis_run(stack, och, mch)
            checks = run.checks
            try:
                await place(run.stub, stack, seeded_orders(rng, "pre", 8), checks, "before")
                took = await run.converge("before the outage", 5)
                assert took is not None, checks.failures

                try:
                    redis_server.stop()
                    t_down = time.monotonic()
                    # Trading continues: every order acknowledged in time, fills happen.
                    during = seeded_orders(rng, "during", 12)
                    t0 = time.monotonic()
                    acks = await place(run.stub, stack, during, checks, "Redis down")
                    fills = sum(len(a.fills) for a in acks)
                    print(f"Redis down: {len(acks)}/{len(during)} orders acknowledged in "
                          f"{time.monotonic() - t0:.2f}s, {fills} fills")
                    checks.expect(fills > 0, "no fills while Redis was down")
                    call, _ = await timed("GetOrderBook", run.md.GetOrderBook(
                        mdpb.GetOrderBookRequest(instrument="BTC-USD"), timeout=2))
                    checks.expect(call.code == "OK", f"GetOrderBook while Redis is down: {call}")
                    await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - t_down)))
                finally:
                    if not redis_server.is_running():
                        redis_server.start()
                print(f"Redis back after {time.monotonic() - t_down:.1f}s")

                # No new order: market data must catch up on its own.
                await run.converge("Redis back, no new order", CATCH_UP_LIMIT)
                # And with new trading after it.
                await place(run.stub, stack, seeded_orders(rng, "after", 4), checks, "after")
                await run.converge("Redis back, after new orders", 5)
                await run.final_checks()
            finally:
                await run.watcher.stop()
                await run.conn.close()
        checks.done()


@pytest.mark.parametrize("how", ["restart-empty", "flushall"])
async def test_redis_comes_back_empty(stack, redis_server, how) -> None:
    """``restart-empty``: Redis is killed and its data directory deleted; orders are
    committed while it is down; it starts again empty. ``flushall``: Redis stays up
    but loses everything (FLUSHALL), and no order follows, so no later entry reveals
    the loss."""
    if redis_server is None:
        pytest.skip("needs the embedded Redis (EXCHANGE_TEST_REDIS_URL is set)")
    async with asyncio.timeout(75):
        rng = random.Random(SEED + 30)
        async with grpc.aio.insecure_channel(stack.order_addr) as och, \
                grpc.aio.insecure_channel(stack.marketdata_addr) as mch:
            run = await redis_run(stack, och, mch)
            checks = run.checks
            try:
                await place(run.stub, stack, seeded_orders(rng, "pre", 8), checks, "before")
                took = await run.converge("before the outage", 5)
                assert took is not None, checks.failures

                try:
                    # Entries that reach Redis but that market data has not read yet ...
                    stack.pause_service("marketdata")
                    unread = await place(run.stub, stack, seeded_orders(rng, "unread", 6),
                                         checks, "market data paused")
                    await asyncio.sleep(0.5)   # published
                    during: list[opb.CreateOrderResponse] = []
                    if how == "flushall":
                        # ... are lost with everything else in Redis.
                        client = redis_lib.Redis.from_url(stack.redis_url, socket_timeout=5)
                        try:
                            client.flushall()
                        finally:
                            client.close()
                    else:
                        # ... are lost with Redis's data,
                        redis_server.kill()
                        shutil.rmtree(redis_server.data_dir, ignore_errors=True)
                        # and what is committed while Redis is down never reaches it.
                        during = await place(run.stub, stack, seeded_orders(rng, "during", 9),
                                             checks, "Redis down")
                        await asyncio.sleep(1.0)
                    fills = sum(len(a.fills) for a in unread + during)
                    print(f"{len(unread)} orders published but unread, {len(during)} while "
                          f"Redis was down; {fills} fills")
                    checks.expect(fills > 0, "no fills while market data was not reading")
                finally:
                    if not redis_server.is_running():
                        redis_server.start()
                    stack.resume_service("marketdata")
                print(f"Redis emptied ({how}); market data resumed")

                await run.converge(f"{how}, no new order", CATCH_UP_LIMIT)
                await place(run.stub, stack, seeded_orders(rng, "after", 4), checks, "after")
                await run.converge(f"{how}, after new orders", 5)
                await run.final_checks()
            finally:
                with contextlib.suppress(Exception):
                    stack.resume_service("marketdata")
                await run.watcher.stop()
                await run.conn.close()
        checks.done()
