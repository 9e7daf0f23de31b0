"""Crash recovery (issue 3): SIGKILL the matching service under load, restart it, and
check that nothing acknowledged was lost, nothing was doubled, and the rebuilt book is
exactly the book the journal implies.

The three services run as real processes on real PostgreSQL and Redis. Several async
clients (alice and bob) send a seeded stream of limit GTC/IOC/FOK, post-only and market
orders around 70,000 and cancels of their own resting orders, each order with a
``client_order_id``. In each round the matching process is SIGKILLed right after the
K-th acknowledgement of the round (K drawn from the seed), while the other clients'
orders are in flight; those get UNAVAILABLE / DEADLINE_EXCEEDED. After the restart:

- the rebuilt book (``MatchingService.GetBook``) equals the book that the independent
  journal replay (``journal_replay.py``, no engine code) gives -- same resting orders,
  open quantities, priorities, order within levels, sequence -- and the resting orders
  of the ``orders`` table; every order of the journal has its state and fill in
  ``orders``;
- every acknowledgement received (CreateOrder / CancelOrder answers: order id, state,
  filled quantity, fills with trade id, price, quantity) is in PostgreSQL with the same
  fills; journal sequences are 1..N without gaps and the ``trades`` table holds exactly
  the journal's trades (trade id = instrument << 44 | sequence);
- every order that failed at the kill is retried with the same ``client_order_id``: if
  it was committed before the kill the retry returns that order, otherwise it is created
  once; no client_order_id ever has two orders (orders table or journal).

The matching service writes a book snapshot every ``SNAPSHOT_INTERVAL`` events, so the
first restart recovers from the journal alone and the later ones from "latest snapshot +
the journal after it".

A last, quiescent round stops the load, waits until market data shows the committed
sequence, records ``GetOrderBook``, kills and restarts matching, and checks that both
market data's ``GetOrderBook`` and the L2 aggregation of ``GetBook`` still show exactly
that book.

``test_sigkill_keeps_stops_expiries_and_a_mass_cancel``: issue 14's orders across a kill
-9 (trader_orders.py): untriggered stops, a good-till-time order that comes due while
matching is dead (expired exactly once by the restarted pod's first batch), a mass
cancel; after the restart the stops fire on a trade, and the book equals the journal.

``EXCHANGE_CRASH_SEED`` changes the seed (default below); the kill points and order
streams follow from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import grpc
import pytest
import trader_orders
from e2e_helpers import Checks, meta, money_problems
from journal_replay import JOURNAL_COLUMNS, Replay, replay_rows, sort_book

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("EXCHANGE_CRASH_SEED", "20260311"))
SYMBOL = "BTC-USD"
ROUNDS = 5  # loaded kill points
# The K-th acknowledgement of a round kills matching, K drawn from the seed: the first
# round dies before the first snapshot (recovery from the journal alone), the later ones
# after one (recovery = latest snapshot + the journal after it).
FIRST_KILL_AFTER = (60, 150)
KILL_AFTER = (150, 320)
WORKERS_PER_ACCOUNT = 5
LOAD_TIMEOUT = 2.5  # per call under load; in-flight calls at the kill fail after this
SNAPSHOT_INTERVAL = 400  # matching writes a book snapshot every this many events
OWNER_WAIT = 20.0  # seconds for the restarted matching to own the instrument again
RETRY_WINDOW = 15.0  # how long a retry may keep seeing UNAVAILABLE after the restart
KEYS = {"alice": "crash-key-alice-0123456789", "bob": "crash-key-bob-0123456789"}

OPEN_STATES = (cpb.ORDER_STATE_NEW, cpb.ORDER_STATE_PARTIALLY_FILLED)
CLOSED_STATES = (cpb.ORDER_STATE_FILLED, cpb.ORDER_STATE_CANCELLED, cpb.ORDER_STATE_EXPIRED,
                 cpb.ORDER_STATE_REJECTED)
KILL_ERRORS = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# ---------------------------------------------------------------------------
# The stack: the three services, matching with frequent snapshots
# ---------------------------------------------------------------------------


@pytest.fixture
async def crash_stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(database_url=database_url, redis_url=redis_url, keys=KEYS,
                     log_dir=tmp_path / "logs",
                     env={"EXCHANGE_SNAPSHOT_INTERVAL": str(SNAPSHOT_INTERVAL)}
                     ).running(40) as s:
        yield s


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass
class Instrument:
    instrument_id: int
    tick: Decimal
    lot: Decimal

    def ticks(self, text: str) -> int:
        v = Decimal(text) / self.tick
        assert v == v.to_integral_value(), text
        return int(v)

    def lots(self, text: str) -> int:
        v = Decimal(text) / self.lot
        assert v == v.to_integral_value(), text
        return int(v)

    def price_str(self, ticks: int) -> str:
        return str(ticks * self.tick)

    def qty_str(self, lots: int) -> str:
        return str(lots * self.lot)


@dataclass
class NewOrderSpec:
    """A CreateOrder request in integers (and the request itself)."""

    account: str
    client_order_id: str
    side: int
    type: int
    tif: int
    price: int  # ticks, 0 for market
    quantity: int  # lots
    post_only: bool
    request: opb.CreateOrderRequest


@dataclass
class Ack:
    """An answer a client received: what it says about one order."""

    kind: str  # "create", "retry", "cancel"
    round: int
    account: str
    order_id: int
    state: int
    filled: int
    # (trade_id, price ticks, quantity lots, liquidity)
    fills: list[tuple[int, int, int, int]]
    order: NewOrderSpec | None = None  # for creates and retries


@dataclass
class Failure:
    kind: str  # "create" or "cancel"
    account: str
    code: grpc.StatusCode
    reason: str
    after_kill: bool
    order: NewOrderSpec | None = None
    order_id: int = 0  # for cancels


@dataclass
class Run:
    """Everything the clients saw, over all rounds."""

    inst: Instrument
    acks: list[Ack] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stats: list[str] = field(default_factory=list)
    client_ids: set[tuple[str, str]] = field(default_factory=set)

    def problem(self, text: str) -> None:
        self.problems.append(text)


def code_reason(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    info = error_info(err)
    return err.code(), (info.reason if info is not None else "")


def ack_from_order(kind: str, rnd: int, account: str, inst: Instrument, order: opb.Order,
                   fills, spec: NewOrderSpec | None = None) -> Ack:
    return Ack(kind=kind, round=rnd, account=account, order_id=int(order.order_id),
               state=order.state, filled=inst.lots(order.filled_quantity),
               fills=[(int(f.trade_id), inst.ticks(f.price), inst.lots(f.quantity), f.liquidity)
                      for f in fills], order=spec)


# ---------------------------------------------------------------------------
# Seeded clients
# ---------------------------------------------------------------------------


class Client:
    """One sequential client: a seeded stream of orders and cancels of its own orders."""

    def __init__(self, index: int, account: str, api_key: str, inst: Instrument) -> None:
        self.index = index
        self.account = account
        self.metadata = (("x-api-key", api_key),)
        self.inst = inst
        self.rng = random.Random(f"{SEED}/client/{index}")
        self.n = 0
        self.open_orders: list[int] = []  # own orders last seen resting

    def next_action(self) -> tuple[str, object]:
        rng = self.rng
        if self.open_orders and rng.random() < 0.12:
            return "cancel", self.open_orders.pop(rng.randrange(len(self.open_orders)))
        self.n += 1
        side = rng.choice((cpb.SIDE_BUY, cpb.SIDE_SELL))
        lots = rng.randint(1, 500)  # 0.0001 .. 0.05 BTC
        u = rng.random()
        post_only = False
        if u < 0.80:
            type_ = cpb.ORDER_TYPE_LIMIT
            if u < 0.62:
                tif = cpb.TIME_IN_FORCE_GTC
                post_only = rng.random() < 0.06
                # buys centred below 70,000, sells above: they overlap, so some cross
                centre = 69_995 if side == cpb.SIDE_BUY else 70_005
                price = Decimal(centre) + Decimal(rng.randint(-20, 20)) / 2
            else:
                tif = cpb.TIME_IN_FORCE_IOC if u < 0.74 else cpb.TIME_IN_FORCE_FOK
                step = Decimal(rng.randint(0, 24)) / 2
                price = Decimal(70_000) + (step if side == cpb.SIDE_BUY else -step)
            ticks = self.inst.ticks(str(price))
        else:
            type_ = cpb.ORDER_TYPE_MARKET
            tif = cpb.TIME_IN_FORCE_IOC if u < 0.93 else cpb.TIME_IN_FORCE_FOK
            ticks = 0
        coid = f"crash-{SEED}-c{self.index}-{self.n}"
        request = opb.CreateOrderRequest(
            instrument=SYMBOL, side=side, type=type_, time_in_force=tif,
            price=self.inst.price_str(ticks) if ticks else "",
            quantity=self.inst.qty_str(lots), client_order_id=coid, post_only=post_only)
        return "create", NewOrderSpec(self.account, coid, side, type_, tif, ticks, lots,
                                      post_only, request)


class Round:
    """One loaded round: clients run until the K-th acknowledgement, which kills matching."""

    def __init__(self, number: int, kill_after: int, stack: Stack, run: Run) -> None:
        self.number = number
        self.kill_after = kill_after
        self.stack = stack
        self.run = run
        self.acks = 0
        self.killed = False
        self.kill_time = 0.0
        self.failures: list[Failure] = []

    def kill(self) -> None:
        self.stack.kill_service("matching")
        self.killed = True
        self.kill_time = time.monotonic()

    async def client_loop(self, client: Client, stub: opb_grpc.OrderServiceStub) -> None:
        run, inst = self.run, self.run.inst
        while not self.killed:
            kind, what = client.next_action()
            if kind == "create":
                spec: NewOrderSpec = what  # type: ignore[assignment]
                run.client_ids.add((spec.account, spec.client_order_id))
                try:
                    resp = await stub.CreateOrder(spec.request, metadata=client.metadata,
                                                  timeout=LOAD_TIMEOUT)
                except grpc.aio.AioRpcError as err:
                    code, reason = code_reason(err)
                    self.failures.append(Failure("create", client.account, code, reason,
                                                 self.killed, order=spec))
                    if code not in KILL_ERRORS:
                        run.problem(f"round {self.number}: CreateOrder {spec.client_order_id} "
                                    f"failed with {code.name} {reason}: {err.details()}")
                    elif not self.killed and code != grpc.StatusCode.DEADLINE_EXCEEDED:
                        run.problem(f"round {self.number}: CreateOrder {spec.client_order_id} "
                                    f"failed with {code.name} {reason} before the kill")
                    continue
                ack = ack_from_order("create", self.number, client.account, inst, resp.order,
                                     resp.fills, spec)
                run.acks.append(ack)
                if ack.state in OPEN_STATES:
                    client.open_orders.append(ack.order_id)
                self.acks += 1
                if self.acks == self.kill_after and not self.killed:
                    self.kill()
            else:
                order_id: int = what  # type: ignore[assignment]
                try:
                    resp = await stub.CancelOrder(opb.CancelOrderRequest(order_id=str(order_id)),
                                                  metadata=client.metadata,
                                                  timeout=LOAD_TIMEOUT)
                except grpc.aio.AioRpcError as err:
                    code, reason = code_reason(err)
                    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "ORDER_NOT_OPEN":
                        continue  # filled (or cancelled) meanwhile
                    self.failures.append(Failure("cancel", client.account, code, reason,
                                                 self.killed, order_id=order_id))
                    if code not in KILL_ERRORS or (not self.killed and
                                                   code != grpc.StatusCode.DEADLINE_EXCEEDED):
                        run.problem(f"round {self.number}: CancelOrder {order_id} failed with "
                                    f"{code.name} {reason}: {err.details()}")
                    continue
                run.acks.append(ack_from_order("cancel", self.number, client.account, inst,
                                               resp.order, ()))


# ---------------------------------------------------------------------------
# Reading the three views of the book
# ---------------------------------------------------------------------------


async def get_book(stack: Stack, instrument_id: int, wait: float = OWNER_WAIT
                   ) -> mpb.GetBookResponse:
    """GetBook from the matching service, waiting until it owns the instrument."""
    deadline = time.monotonic() + wait
    async with stack.matching_channel() as ch:
        stub = mpb_grpc.MatchingServiceStub(ch)
        while True:
            try:
                return await stub.GetBook(mpb.GetBookRequest(instrument_id=instrument_id),
                                          timeout=5)
            except grpc.aio.AioRpcError as err:
                if (err.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE)
                        or time.monotonic() > deadline):
                    raise
            await asyncio.sleep(0.05)


def book_entries(book: mpb.GetBookResponse):
    """GetBook as (bids, asks) of (order_id, price, open quantity, priority), in its order."""
    def rows(orders):
        return [(o.order_id, o.price, o.quantity - o.filled, o.priority) for o in orders]
    return rows(book.bids), rows(book.asks)


def l2_of_book(book: mpb.GetBookResponse):
    """GetBook aggregated to levels: (price, quantity, count), best first."""
    out = []
    for orders in (book.bids, book.asks):
        levels: list[list[int]] = []
        for o in orders:
            if levels and levels[-1][0] == o.price:
                levels[-1][1] += o.quantity - o.filled
                levels[-1][2] += 1
            else:
                levels.append([o.price, o.quantity - o.filled, 1])
        out.append([tuple(lv) for lv in levels])
    return out[0], out[1]


def l2_of_md(inst: Instrument, book: mdpb.GetOrderBookResponse):
    return ([(inst.ticks(lv.price), inst.lots(lv.quantity), lv.order_count) for lv in book.bids],
            [(inst.ticks(lv.price), inst.lots(lv.quantity), lv.order_count) for lv in book.asks])


@dataclass
class Committed:
    """One consistent read of PostgreSQL: the replayed journal and the orders table."""

    last_sequence: int
    replay: Replay
    orders: dict[int, asyncpg.Record]
    snapshot_sequence: int | None


async def read_committed(conn: asyncpg.Connection, instrument_id: int) -> Committed:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        last = await conn.fetchval(
            "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1", instrument_id)
        journal = await conn.fetch(
            f"""SELECT {JOURNAL_COLUMNS}
               FROM journal WHERE instrument_id = $1 ORDER BY sequence""", instrument_id)
        trades = await conn.fetch(
            """SELECT trade_id, sequence, price, quantity, maker_order_id, taker_order_id
               FROM trades WHERE instrument_id = $1 ORDER BY sequence""", instrument_id)
        orders = await conn.fetch("SELECT * FROM orders WHERE instrument_id = $1",
                                  instrument_id)
        snap = await conn.fetchval(
            "SELECT max(sequence) FROM book_snapshots WHERE instrument_id = $1", instrument_id)
    replay = replay_rows(instrument_id, journal, trades)
    if replay.last_sequence != last:
        replay.problems.append(f"journal ends at {replay.last_sequence} but "
                               f"instrument_state.last_sequence is {last}")
    return Committed(last, replay, {r["order_id"]: r for r in orders}, snap)


def check_orders_table(c: Committed) -> list[str]:
    """The orders table agrees with the journal, order by order, and its resting orders
    are the replayed book."""
    problems = []
    for oid, o in c.replay.orders.items():
        row = c.orders.get(oid)
        if row is None:
            problems.append(f"order {oid} (journal seq {o.priority}) missing from orders")
            continue
        want = (o.account_id, o.client_order_id, o.side, o.type, o.tif, o.post_only, o.price,
                o.quantity, o.filled, o.notional, o.state)
        got = (row["account_id"], row["client_order_id"], row["side"], row["order_type"],
               row["time_in_force"], row["post_only"], row["price"], row["quantity"],
               row["filled"], int(row["filled_notional"]), row["state"])
        if got != want:
            problems.append(f"order {oid}: orders table {got} but the journal implies {want}")
        if o.rests and row["priority"] != o.priority:
            problems.append(f"order {oid}: priority {row['priority']} in orders, journal says "
                            f"{o.priority}")
    for oid in c.orders.keys() - c.replay.orders.keys():
        problems.append(f"order {oid} is in the orders table but not in the journal")
    table_book = sort_book([(r["side"], r["order_id"], r["price"], r["quantity"] - r["filled"],
                             r["priority"]) for r in c.orders.values() if r["state"] in (1, 2)])
    if table_book != c.replay.book():
        problems.append(f"resting orders of the orders table differ from the journal replay: "
                        f"{diff_books(table_book, c.replay.book())}")
    return problems


def diff_books(a, b) -> str:
    lines = []
    for name, x, y in (("bids", a[0], b[0]), ("asks", a[1], b[1])):
        if x != y:
            sx, sy = set(x), set(y)
            lines.append(f"{name}: {len(x)} vs {len(y)} orders; only left {sorted(sx - sy)[:5]}, "
                         f"only right {sorted(sy - sx)[:5]}"
                         + ("; same orders, different order" if sx == sy else ""))
    return "; ".join(lines)


async def consistent_views(stack: Stack, conn: asyncpg.Connection, instrument_id: int
                           ) -> tuple[mpb.GetBookResponse, Committed]:
    """GetBook and PostgreSQL at the same sequence (the load is stopped; stray commands
    still in an order service's outbox could move it, so read until both agree)."""
    for _ in range(20):
        before = await get_book(stack, instrument_id)
        committed = await read_committed(conn, instrument_id)
        after = await get_book(stack, instrument_id)
        if before.sequence == committed.last_sequence == after.sequence:
            return after, committed
        await asyncio.sleep(0.2)
    raise AssertionError(f"GetBook sequence {before.sequence}/{after.sequence} never matched "
                         f"the committed sequence {committed.last_sequence}")


def check_book_against_journal(what: str, book: mpb.GetBookResponse, c: Committed) -> list[str]:
    problems = [f"{what}: journal: {p}" for p in c.replay.problems]
    problems += [f"{what}: {p}" for p in check_orders_table(c)]
    if book.sequence != c.replay.last_sequence:
        problems.append(f"{what}: GetBook sequence {book.sequence}, journal replay "
                        f"{c.replay.last_sequence}")
    got = book_entries(book)
    if got != c.replay.book():
        problems.append(f"{what}: GetBook differs from the journal replay: "
                        f"{diff_books(got, c.replay.book())}")
    return problems


# ---------------------------------------------------------------------------
# Acknowledgements against PostgreSQL
# ---------------------------------------------------------------------------


async def check_acks(conn: asyncpg.Connection, run: Run, acks: list[Ack],
                     account_ids: dict[str, int]) -> None:
    ids = list({a.order_id for a in acks})
    orders = {r["order_id"]: r for r in await conn.fetch(
        "SELECT * FROM orders WHERE order_id = ANY($1::bigint[])", ids)}
    trade_ids = list({f[0] for a in acks for f in a.fills})
    trades = {r["trade_id"]: r for r in await conn.fetch(
        "SELECT * FROM trades WHERE trade_id = ANY($1::bigint[])", trade_ids)}
    taker_trades: dict[int, set] = defaultdict(set)
    for r in await conn.fetch(
            "SELECT trade_id, price, quantity, taker_order_id FROM trades "
            "WHERE taker_order_id = ANY($1::bigint[])", ids):
        taker_trades[r["taker_order_id"]].add((r["trade_id"], r["price"], r["quantity"]))
    for a in acks:
        where = f"round {a.round} {a.kind} ack of order {a.order_id}"
        row = orders.get(a.order_id)
        if row is None:
            run.problem(f"{where}: acknowledged order missing from PostgreSQL")
            continue
        if row["account_id"] != account_ids[a.account]:
            run.problem(f"{where}: account {row['account_id']} in PostgreSQL")
        if a.order is not None:
            s = a.order
            got = (row["client_order_id"], row["side"], row["order_type"], row["time_in_force"],
                   row["price"], row["quantity"], row["post_only"])
            want = (s.client_order_id, s.side, s.type, s.tif, s.price, s.quantity, s.post_only)
            if got != want:
                run.problem(f"{where}: PostgreSQL has {got}, the client sent {want}")
        if row["filled"] < a.filled:
            run.problem(f"{where}: filled {row['filled']} in PostgreSQL < {a.filled} acked")
        if a.state in CLOSED_STATES:
            if (row["state"], row["filled"]) != (a.state, a.filled):
                run.problem(f"{where}: acked closed as (state, filled) {(a.state, a.filled)}, "
                            f"PostgreSQL has {(row['state'], row['filled'])}")
        elif a.state not in OPEN_STATES:
            run.problem(f"{where}: acked with state {a.state}")
        for tid, price, qty, liquidity in a.fills:
            t = trades.get(tid)
            if t is None:
                run.problem(f"{where}: acked trade {tid} missing from the trades table")
                continue
            side_col = "taker_order_id" if liquidity == cpb.LIQUIDITY_TAKER else "maker_order_id"
            if (t["price"], t["quantity"], t[side_col]) != (price, qty, a.order_id):
                run.problem(f"{where}: trade {tid} is (price, qty, {side_col}) "
                            f"{(t['price'], t['quantity'], t[side_col])} in PostgreSQL, acked "
                            f"{(price, qty, a.order_id)}")
        if a.kind in ("create", "retry"):
            acked = {(tid, p, q) for tid, p, q, liq in a.fills if liq == cpb.LIQUIDITY_TAKER}
            if acked != taker_trades[a.order_id]:
                run.problem(f"{where}: acked taker fills {sorted(acked)} but PostgreSQL has "
                            f"{sorted(taker_trades[a.order_id])}")
        if a.kind == "cancel" and a.state != cpb.ORDER_STATE_CANCELLED:
            run.problem(f"{where}: cancel answered with state {a.state}")


async def retry_failures(stack: Stack, conn: asyncpg.Connection, run: Run, rnd: Round,
                         account_ids: dict[str, int]) -> dict[str, int]:
    """Retry every failed call with the same client_order_id (cancels by order id)."""
    counts: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        stub = opb_grpc.OrderServiceStub(ch)
        for f in rnd.failures:
            md = meta(stack, f.account)
            if f.kind == "cancel":
                # A cancel is not idempotent: the order service answers UNAVAILABLE
                # (OUTCOME_UNKNOWN) when its stream to matching breaks with the cancel
                # in it, and a client retries that, as here, for a bounded time.
                deadline = time.monotonic() + RETRY_WINDOW
                while True:
                    try:
                        resp = await stub.CancelOrder(
                            opb.CancelOrderRequest(order_id=str(f.order_id)), metadata=md,
                            timeout=10)
                    except grpc.aio.AioRpcError as err:
                        code, reason = code_reason(err)
                        if (code == grpc.StatusCode.UNAVAILABLE
                                and time.monotonic() < deadline):
                            counts[f"cancel retry {reason}"] += 1
                            await asyncio.sleep(0.2)
                            continue
                        resp = None
                        if (code, reason) != (grpc.StatusCode.FAILED_PRECONDITION,
                                              "ORDER_NOT_OPEN"):
                            run.problem(f"round {rnd.number}: retried cancel of "
                                        f"{f.order_id}: {code.name} {reason}")
                    break
                if resp is None:
                    counts["cancel not open"] += 1
                    continue
                counts["cancel done"] += 1
                run.acks.append(ack_from_order("cancel", rnd.number, f.account, run.inst,
                                               resp.order, ()))
                continue
            assert f.order is not None
            spec = f.order
            account_id = account_ids[f.account]
            committed = await conn.fetchval(
                "SELECT order_id FROM orders WHERE account_id = $1 AND client_order_id = $2",
                account_id, spec.client_order_id)
            deadline = time.monotonic() + RETRY_WINDOW
            while True:
                try:
                    resp = await stub.CreateOrder(spec.request, metadata=md, timeout=10)
                except grpc.aio.AioRpcError as err:
                    code, reason = code_reason(err)
                    if code in KILL_ERRORS and time.monotonic() < deadline:
                        counts[f"create retry {code.name} {reason}"] += 1
                        await asyncio.sleep(0.2)
                        continue
                    run.problem(f"round {rnd.number}: retry of {spec.client_order_id} failed: "
                                f"{code.name} {reason}: {err.details()}")
                    resp = None
                break
            if resp is None:
                continue
            ack = ack_from_order("retry", rnd.number, f.account, run.inst, resp.order,
                                 resp.fills, spec)
            run.acks.append(ack)
            if committed is not None:
                counts["committed before the kill"] += 1
                if ack.order_id != committed:
                    run.problem(f"round {rnd.number}: retry of {spec.client_order_id} returned "
                                f"order {ack.order_id}, but {committed} was committed before "
                                f"the kill")
            else:
                counts["created by the retry"] += 1
            n = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE account_id = $1 AND client_order_id = $2",
                account_id, spec.client_order_id)
            if n != 1:
                run.problem(f"round {rnd.number}: {n} orders for client_order_id "
                            f"{spec.client_order_id} after the retry")
    return dict(counts)


def check_client_ids(run: Run, c: Committed, account_ids: dict[str, int]) -> None:
    """No client_order_id ever led to two orders (journal or orders table)."""
    for (account, coid), oids in c.replay.client_ids.items():
        if len(oids) > 1:
            run.problem(f"client_order_id {coid} of account {account} created {len(oids)} "
                        f"orders in the journal: {oids}")
    table = Counter((r["account_id"], r["client_order_id"]) for r in c.orders.values()
                    if r["client_order_id"])
    for key, n in table.items():
        if n > 1:
            run.problem(f"client_order_id {key} has {n} rows in orders")
    used = {(account_ids[a], coid) for a, coid in run.client_ids}
    for key in table.keys() - used:
        run.problem(f"client_order_id {key} in orders was never sent by a client")


def report(run: Run) -> str:
    head = "\n".join(run.stats)
    if not run.problems:
        return head
    more = f"\n... and {len(run.problems) - 30} more" if len(run.problems) > 30 else ""
    return head + "\nPROBLEMS:\n" + "\n".join(run.problems[:30]) + more


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------


async def test_sigkill_matching_under_load_loses_nothing_and_rebuilds_the_book(
        crash_stack: Stack) -> None:
    stack = crash_stack
    started = time.monotonic()
    seed_rng = random.Random(f"{SEED}/kill-points")
    kill_points = [seed_rng.randint(*FIRST_KILL_AFTER)] + [
        seed_rng.randint(*KILL_AFTER) for _ in range(ROUNDS - 1)]
    conn = await asyncpg.connect(stack.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT instrument_id, tick_size, lot_size FROM instruments WHERE symbol = $1",
            SYMBOL)
        inst = Instrument(row["instrument_id"], Decimal(row["tick_size"]),
                          Decimal(row["lot_size"]))
        run = Run(inst)
        run.stats.append(f"seed {SEED}, kill after acknowledgements {kill_points}")
        account_ids = dict(stack.account_ids)
        clients = [Client(i, account, stack.keys[account], inst)
                   for i, account in enumerate(
                       [a for a in ("alice", "bob") for _ in range(WORKERS_PER_ACCOUNT)])]

        epoch = (await get_book(stack, inst.instrument_id)).owner_epoch
        for number, kill_after in enumerate(kill_points, 1):
            t0 = time.monotonic()
            rnd = Round(number, kill_after, stack, run)
            acks_before = len(run.acks)
            async with grpc.aio.insecure_channel(stack.order_addr) as ch:
                stub = opb_grpc.OrderServiceStub(ch)
                await asyncio.wait_for(
                    asyncio.gather(*(rnd.client_loop(c, stub) for c in clients)), timeout=60)
            assert rnd.killed, f"round {number}: the load ended before the kill"
            round_acks = run.acks[acks_before:]
            # Matching is dead: what PostgreSQL holds now is what the restart must rebuild.
            at_kill = await conn.fetchval(
                "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1",
                inst.instrument_id)
            snap = await conn.fetchval(
                "SELECT max(sequence) FROM book_snapshots WHERE instrument_id = $1",
                inst.instrument_id)
            t_restart = time.monotonic()
            await stack.start_service("matching")
            rebuilt = await get_book(stack, inst.instrument_id)
            t_owned = time.monotonic()
            if rebuilt.owner_epoch <= epoch:
                run.problem(f"round {number}: owner epoch {rebuilt.owner_epoch} after the "
                            f"restart, {epoch} before")
            epoch = rebuilt.owner_epoch
            if rebuilt.sequence < at_kill:
                run.problem(f"round {number}: rebuilt book at sequence {rebuilt.sequence}, "
                            f"{at_kill} was committed before the kill")
            # The rebuilt book, exactly as the journal gives it (up to its own sequence).
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                journal = await conn.fetch(
                    f"""SELECT {JOURNAL_COLUMNS}
                       FROM journal WHERE instrument_id = $1 ORDER BY sequence""",
                    inst.instrument_id)
            replayed = replay_rows(inst.instrument_id, journal, upto=rebuilt.sequence)
            if book_entries(rebuilt) != replayed.book() or replayed.last_sequence != \
                    rebuilt.sequence:
                run.problem(f"round {number}: rebuilt book (sequence {rebuilt.sequence}) "
                            f"differs from the journal replay (sequence "
                            f"{replayed.last_sequence}): "
                            f"{diff_books(book_entries(rebuilt), replayed.book())}")
            # GetBook, the journal and the orders table at one sequence.
            book, committed = await consistent_views(stack, conn, inst.instrument_id)
            for p in check_book_against_journal(f"round {number} after restart", book,
                                                committed):
                run.problem(p)
            # Every acknowledgement of the round is in PostgreSQL.
            await check_acks(conn, run, round_acks, account_ids)
            # The calls that failed at the kill, retried with the same client_order_id.
            failed = Counter(f"{f.kind} {f.code.name}" for f in rnd.failures)
            early = sum(1 for f in rnd.failures if not f.after_kill)
            retried = await retry_failures(stack, conn, run, rnd, account_ids)
            await check_acks(conn, run, run.acks[acks_before + len(round_acks):], account_ids)
            book, committed = await consistent_views(stack, conn, inst.instrument_id)
            for p in check_book_against_journal(f"round {number} after retries", book,
                                                committed):
                run.problem(p)
            check_client_ids(run, committed, account_ids)
            run.stats.append(
                f"round {number}: killed after ack {kill_after} (sequence {at_kill}, latest "
                f"snapshot {snap}); {len(round_acks)} acks; failed in flight {dict(failed)}"
                f"{f' ({early} before the kill)' if early else ''}; retries {retried}; "
                f"owner again {t_owned - t_restart:.1f}s after restart; book "
                f"{len(book.bids)}+{len(book.asks)} orders at sequence {book.sequence}; "
                f"round {time.monotonic() - t0:.1f}s")

        # Everything acknowledged over all rounds, against the final state.
        await check_acks(conn, run, run.acks, account_ids)
        assert not run.problems, report(run)

        # -- quiescent kill: market data and GetBook show the book from before ----------
        async with grpc.aio.insecure_channel(stack.marketdata_addr) as mch:
            md = mdpb_grpc.MarketDataServiceStub(mch)
            # Market data catches up with everything committed, including batches the
            # killed process committed but never published to Redis.
            last = await conn.fetchval(
                "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1",
                inst.instrument_id)
            deadline = time.monotonic() + 15
            while True:
                md_before = await md.GetOrderBook(
                    mdpb.GetOrderBookRequest(instrument=SYMBOL, depth=0), timeout=5)
                if md_before.sequence == last:
                    break
                assert time.monotonic() < deadline, (
                    f"market data stuck at sequence {md_before.sequence}, committed {last}")
                await asyncio.sleep(0.1)
            book_before, committed = await consistent_views(stack, conn, inst.instrument_id)
            assert book_before.sequence == last
            assert l2_of_book(book_before) == l2_of_md(inst, md_before), \
                "market data's book differs from the matching book before the kill"

            stack.kill_service("matching")
            await stack.start_service("matching")
            book_after = await get_book(stack, inst.instrument_id)
            md_after = await md.GetOrderBook(
                mdpb.GetOrderBookRequest(instrument=SYMBOL, depth=0), timeout=5)

            assert book_after.sequence == md_before.sequence
            assert l2_of_book(book_after) == l2_of_md(inst, md_before), \
                "the rebuilt book's levels differ from GetOrderBook before the kill"
            for _ in range(2):  # at once, and once more after the restart settled
                assert md_after.sequence == md_before.sequence
                assert l2_of_md(inst, md_after) == l2_of_md(inst, md_before), \
                    "GetOrderBook after the restart differs from before the kill"
                await asyncio.sleep(1.0)
                md_after = await md.GetOrderBook(
                    mdpb.GetOrderBookRequest(instrument=SYMBOL, depth=0), timeout=5)
            # order by order, the same book as before the kill
            assert [(o.order_id, o.price, o.quantity, o.filled, o.priority)
                    for o in list(book_after.bids) + list(book_after.asks)] == \
                [(o.order_id, o.price, o.quantity, o.filled, o.priority)
                 for o in list(book_before.bids) + list(book_before.asks)]
            book, committed = await consistent_views(stack, conn, inst.instrument_id)
            problems = check_book_against_journal("quiescent restart", book, committed)
            assert not problems, "\n".join(problems)
            # The money after every kill -9 and recovery: each batch's settlement
            # was committed with its journal rows, once.
            problems = await money_problems(conn)
            assert not problems, "\n".join(problems)
            run.stats.append(
                f"quiescent kill at sequence {last}: {len(md_before.bids)} bid and "
                f"{len(md_before.asks)} ask levels unchanged")
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    total = time.monotonic() - started
    print("\n" + report(run) + f"\ntotal {total:.1f}s, {len(run.acks)} acknowledgements")


async def test_sigkill_keeps_stops_expiries_and_a_mass_cancel(crash_stack: Stack) -> None:
    stack = crash_stack
    checks = Checks()
    conn = await asyncpg.connect(stack.database_url)
    try:
        async with asyncio.timeout(90):
            placed = await trader_orders.place(stack)
            await trader_orders.before_kill(conn, placed)
            stack.kill_service("matching")
            await trader_orders.wait_until_expired(placed)
            await stack.start_service("matching")
            await trader_orders.check_after(checks, stack, conn, placed)
            # and once more: the expiry is not repeated, the book rebuilds the same
            before = await trader_orders.get_book(stack, None)
            stack.kill_service("matching")
            await stack.start_service("matching")
            after = await trader_orders.get_book(stack, None)
            checks.expect((list(after.bids), list(after.asks), list(after.stops))
                          == (list(before.bids), list(before.asks), list(before.stops)),
                          "the book after the second restart differs")
            await trader_orders.expiries_exactly_once(checks, conn, placed)
            await trader_orders.book_equals_replay(checks, stack, conn, None)
    finally:
        await conn.close()
    checks.done()
