"""Instrument ownership, failover and fencing, with real processes and real signals.

Two matching processes, A (the stack's ``matching``) and B (``matching-b``,
added with ``Stack.add_matching``), run on the same PostgreSQL. Each may own
the instruments in its ``EXCHANGE_MATCHING_INSTRUMENTS``; ownership is a
PostgreSQL advisory lock plus an owner epoch that fences every journal write.

- ``test_sigkill_owner_standby_takes_over``: A owns BTC-USD and ETH-USD, B is
  a standby. A is SIGKILLed under light load (seeded order streams, the kill
  point chosen from the seed, with orders in flight). B must own both within
  5 s, measured from the kill to the first successful CreateOrder through the
  order service (printed); the order service re-routes by itself. Clients
  retry with the same client_order_id: each gets the original order if it
  was committed, or a single new one; one row per client_order_id.
- ``test_paused_owner_is_fenced``: A is SIGSTOPped; B takes over within
  owner_session_timeout + a margin (epoch bumps, owner_address changes);
  orders go through B; A is resumed with commands queued: it writes nothing
  (no journal row with its epoch after the takeover), answers NOT_OWNER, and
  GetBook on A is NOT_FOUND; the journal stays gapless and B's book equals
  PostgreSQL.
- ``test_instrument_split``: A may own only BTC-USD, B only ETH-USD: each owns
  its own and the order service routes each instrument to its owner.
- ``test_standby_takes_over_stops_expiries_and_a_mass_cancel``: issue 14's orders
  (trader_orders.py) placed on A, A SIGKILLed: B's first batch expires the
  good-till-time order that came due meanwhile, exactly once; B keeps the stops,
  one fires on a trade through B; the book equals the journal; money is clean.
- ``test_order_entry_session_through_failover``: creates stream through one
  OrderEntry session while A is SIGKILLed; each is answered once (the order, in
  PostgreSQL, or a retryable error) and the session goes on through B.

Seed: ``EXCHANGE_TEST_SEED`` (default below). Every gRPC call has a deadline
and every test body a time limit, so nothing hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import e2e_helpers
import grpc
import pytest
import trader_orders
from e2e_helpers import Checks, matching_new_order, matching_stacks, meta, money_problems

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("EXCHANGE_TEST_SEED", "20250603"))
KEYS = {"alice": "failover-key-alice-0123456789", "bob": "failover-key-bob-0123456789"}
BTC, ETH = 1, 2
SYMBOL = {BTC: "BTC-USD", ETH: "ETH-USD"}
# Set explicitly on both matching processes (these are also the defaults).
OWNER_SESSION_TIMEOUT = 3.0
OWNERSHIP_POLL = 0.5
FAILOVER_LIMIT = 5.0          # issue 3: a standby takes over within 5 s
TAKEOVER_MARGIN = 2.0         # on top of OWNER_SESSION_TIMEOUT for a paused owner
# RESOURCE_EXHAUSTED: OVERLOADED (with a RetryInfo), while the failover holds answers back
# longer than the order service admits orders for (order_service/admission.py).
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED}
Code = grpc.StatusCode


# ---------------------------------------------------------------------------
# The stack with two matching processes
# ---------------------------------------------------------------------------


@pytest.fixture
async def two_matching(database_url: str, redis_url: str, tmp_path: Path
                       ) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """``await two_matching(a="*", b="*")``: the stack with matching A (``matching``)
    and B (``matching-b``), each allowed the instruments given; A starts (and takes
    what it may) before B. Log tails are printed after the test."""
    common = {"EXCHANGE_OWNER_SESSION_TIMEOUT": str(OWNER_SESSION_TIMEOUT),
              "EXCHANGE_OWNERSHIP_POLL": str(OWNERSHIP_POLL)}
    async with matching_stacks(database_url, redis_url, KEYS, tmp_path / "logs",
                               tail_lines=60) as start:

        async def build(a: str = "BTC-USD,ETH-USD", b: str = "BTC-USD,ETH-USD") -> Stack:
            return await start({"matching": {**common, "EXCHANGE_MATCHING_INSTRUMENTS": a},
                                "matching-b": {**common, "EXCHANGE_MATCHING_INSTRUMENTS": b}})

        yield build


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def reason_of(err: grpc.aio.AioRpcError) -> str:
    info = error_info(err)
    return info.reason if info is not None else ""


def random_order(rng: random.Random, instrument: int, coid: str) -> opb.CreateOrderRequest:
    """A seeded order near the middle of the book: mostly resting limits, some
    IOC limits and market orders so that trades happen."""
    side = rng.choice([cpb.SIDE_BUY, cpb.SIDE_SELL])
    if instrument == BTC:
        mid, qty = 70_000, f"{rng.randint(10, 500) / 10_000:.4f}"
    else:
        mid, qty = 3_500, f"{rng.randint(10, 500) / 1_000:.3f}"
    kind = rng.random()
    req = opb.CreateOrderRequest(instrument=SYMBOL[instrument], side=side, quantity=qty,
                                 client_order_id=coid)
    if kind < 0.1:
        req.type = cpb.ORDER_TYPE_MARKET
        return req
    # Buyers bid a little low, sellers ask a little high: a book forms, and
    # the crossing ones trade.
    offset = rng.randint(-8, 20)
    price = mid - offset if side == cpb.SIDE_BUY else mid + offset
    req.type = cpb.ORDER_TYPE_LIMIT
    req.price = f"{price}.00"
    req.time_in_force = cpb.TIME_IN_FORCE_IOC if kind < 0.25 else cpb.TIME_IN_FORCE_GTC
    return req


@dataclass
class Outcome:
    code: str                 # "OK" or a grpc.StatusCode name
    reason: str
    order_id: str
    sent: float
    done: float


@dataclass
class Ledger:
    """Every attempt of every client order, by client_order_id."""

    attempts: dict[str, list[Outcome]] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)          # coid -> account name
    first_ok: dict[str, opb.CreateOrderResponse] = field(default_factory=dict)
    acked: int = 0

    def record(self, coid: str, outcome: Outcome) -> None:
        self.attempts.setdefault(coid, []).append(outcome)


async def place_until_ok(stub: opb_grpc.OrderServiceStub, stack: Stack, who: str,
                         req: opb.CreateOrderRequest, ledger: Ledger, *, call_timeout: float,
                         give_up_at: float) -> opb.CreateOrderResponse | None:
    """CreateOrder, retried with the same client_order_id (and contents) on
    UNAVAILABLE / DEADLINE_EXCEEDED until OK or ``give_up_at`` (monotonic)."""
    coid = req.client_order_id
    ledger.owner[coid] = who
    while time.monotonic() < give_up_at:
        sent = time.monotonic()
        timeout = max(0.05, min(call_timeout, give_up_at - sent))
        try:
            resp = await stub.CreateOrder(req, metadata=meta(stack, who), timeout=timeout)
        except grpc.aio.AioRpcError as err:
            ledger.record(coid, Outcome(err.code().name, reason_of(err), "", sent,
                                        time.monotonic()))
            if err.code() not in RETRYABLE:
                return None
            await asyncio.sleep(0.05)
            continue
        ledger.record(coid, Outcome("OK", "", resp.order.order_id, sent, time.monotonic()))
        if coid not in ledger.first_ok:
            ledger.first_ok[coid] = resp
            ledger.acked += 1
        return resp
    return None


async def load_client(stub: opb_grpc.OrderServiceStub, stack: Stack, who: str, seed: int,
                      prefix: str, ledger: Ledger, stop: asyncio.Event, give_up_at: float,
                      instruments: tuple[int, ...] = (BTC, ETH)) -> None:
    """Light load: one order at a time, 10-40 ms apart, seeded contents."""
    rng = random.Random(seed)
    n = 0
    while not stop.is_set() and time.monotonic() < give_up_at:
        req = random_order(rng, rng.choice(instruments), f"{prefix}-{n}")
        await place_until_ok(stub, stack, who, req, ledger, call_timeout=3.0,
                             give_up_at=give_up_at)
        n += 1
        await asyncio.sleep(rng.uniform(0.01, 0.04))


async def pg(stack: Stack) -> asyncpg.Connection:
    assert stack.database_url is not None
    return await asyncio.wait_for(asyncpg.connect(stack.database_url), 10)


async def owners(conn: asyncpg.Connection) -> dict[int, tuple[str | None, int, int]]:
    """instrument -> (owner_address, owner_epoch, last_sequence)."""
    rows = await conn.fetch("SELECT instrument_id, owner_address, owner_epoch, last_sequence "
                            "FROM instrument_state", timeout=5)
    return {r["instrument_id"]: (r["owner_address"], r["owner_epoch"], r["last_sequence"])
            for r in rows}


async def wait_owners(conn: asyncpg.Connection, want: dict[int, str], timeout: float
                      ) -> dict[int, tuple[str | None, int, int]]:
    deadline = time.monotonic() + timeout
    while True:
        now = await owners(conn)
        if all(now.get(i, (None,))[0] == addr for i, addr in want.items()):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"owners {now} are not {want} after {timeout}s")
        await asyncio.sleep(0.1)


async def journal_problems(conn: asyncpg.Connection, instrument: int) -> list[str]:
    """The journal of ``instrument`` must be 1..last_sequence with no gap."""
    last = await conn.fetchval(
        "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1", instrument,
        timeout=5) or 0
    seqs = [r["sequence"] for r in await conn.fetch(
        "SELECT sequence FROM journal WHERE instrument_id = $1 ORDER BY sequence", instrument,
        timeout=5)]
    if seqs == list(range(1, last + 1)):
        return []
    missing = sorted(set(range(1, last + 1)) - set(seqs))[:10]
    extra = sorted(set(seqs) - set(range(1, last + 1)))[:10]
    return [f"{SYMBOL[instrument]}: journal is not 1..{last} (has {len(seqs)} rows; "
            f"missing {missing}, beyond last_sequence {extra})"]


async def units(conn: asyncpg.Connection) -> dict[int, tuple[Decimal, Decimal]]:
    rows = await conn.fetch("SELECT instrument_id, tick_size, lot_size FROM instruments",
                            timeout=5)
    return {r["instrument_id"]: (Decimal(r["tick_size"]), Decimal(r["lot_size"]))
            for r in rows}


async def pg_resting(conn: asyncpg.Connection, instrument: int
                     ) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """Resting orders as committed: (order_id, price, remaining lots, priority), bids
    best first then asks best first, time priority within a price."""
    rows = await conn.fetch(
        """SELECT order_id, side, price, quantity - filled AS remaining, priority
           FROM orders WHERE instrument_id = $1 AND state IN (1, 2)""", instrument, timeout=5)
    bids = sorted(((r["order_id"], r["price"], r["remaining"], r["priority"])
                   for r in rows if r["side"] == cpb.SIDE_BUY), key=lambda o: (-o[1], o[3]))
    asks = sorted(((r["order_id"], r["price"], r["remaining"], r["priority"])
                   for r in rows if r["side"] == cpb.SIDE_SELL), key=lambda o: (o[1], o[3]))
    return bids, asks


async def get_book(stack: Stack, addr: str, instrument: int, timeout: float = 3.0
                   ) -> mpb.GetBookResponse:
    async with stack.matching_channel(addr) as ch:
        return await mpb_grpc.MatchingServiceStub(ch).GetBook(
            mpb.GetBookRequest(instrument_id=instrument), timeout=timeout)


async def book_matches_pg(checks: Checks, conn: asyncpg.Connection, stack: Stack, addr: str,
                          instrument: int, who: str) -> None:
    """GetBook on the owner equals the resting orders in PostgreSQL, order by order."""
    try:
        book = await get_book(stack, addr, instrument)
    except grpc.aio.AioRpcError as err:
        checks.expect(False, f"GetBook({SYMBOL[instrument]}) on {who} {addr} failed: "
                             f"{err.code().name} {err.details()}")
        return
    bids, asks = await pg_resting(conn, instrument)
    last = await conn.fetchval(
        "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1", instrument)
    got_bids = [(o.order_id, o.price, o.quantity - o.filled, o.priority) for o in book.bids]
    got_asks = [(o.order_id, o.price, o.quantity - o.filled, o.priority) for o in book.asks]
    checks.expect(book.sequence == last,
                  f"{who}'s book of {SYMBOL[instrument]} is at sequence {book.sequence}, "
                  f"PostgreSQL at {last}")
    checks.expect((got_bids, got_asks) == (bids, asks),
                  f"{who}'s book of {SYMBOL[instrument]} differs from PostgreSQL:\n"
                  f"  matching bids {got_bids[:5]}... asks {got_asks[:5]}...\n"
                  f"  postgres bids {bids[:5]}... asks {asks[:5]}...")


async def execute_once(stack: Stack, addr: str, command: mpb.Command, timeout: float
                       ) -> mpb.Result:
    async with stack.matching_channel(addr) as ch:
        resp = await e2e_helpers.execute_once(ch, mpb.ExecuteRequest(commands=[command]),
                                              timeout=timeout)
    return resp.results[0]


async def idempotency_problems(conn: asyncpg.Connection, stack: Stack, ledger: Ledger,
                               tick_lot: dict[int, tuple[Decimal, Decimal]]) -> list[str]:
    """One order row per client_order_id; every OK for a client_order_id named
    that row's order; the fills each first acknowledgement reported are in
    PostgreSQL as reported."""
    out: list[str] = []
    rows = await conn.fetch(
        "SELECT account_id, client_order_id, count(*) AS n, min(order_id) AS order_id "
        "FROM orders WHERE client_order_id <> '' GROUP BY 1, 2", timeout=10)
    by_coid = {(r["account_id"], r["client_order_id"]): r for r in rows}
    for coid, attempts in ledger.attempts.items():
        account = stack.account_ids[ledger.owner[coid]]
        row = by_coid.get((account, coid))
        oks = {a.order_id for a in attempts if a.code == "OK"}
        if row is not None and row["n"] != 1:
            out.append(f"{coid}: {row['n']} order rows")
        if oks and row is None:
            out.append(f"{coid}: acknowledged as {oks} but not in PostgreSQL")
        elif oks and oks != {str(row["order_id"])}:
            out.append(f"{coid}: acknowledged as {sorted(oks)}, PostgreSQL has "
                       f"{row['order_id']}")
    trades = {r["trade_id"]: r for r in await conn.fetch(
        "SELECT trade_id, instrument_id, price, quantity, taker_order_id FROM trades",
        timeout=10)}
    for coid, resp in ledger.first_ok.items():
        for f in resp.fills:
            t = trades.get(int(f.trade_id))
            if t is None:
                out.append(f"{coid}: acknowledged fill {f.trade_id} is not in PostgreSQL")
                continue
            tick, lot = tick_lot[t["instrument_id"]]
            if (Decimal(f.price), Decimal(f.quantity)) != (t["price"] * tick,
                                                           t["quantity"] * lot):
                out.append(f"{coid}: fill {f.trade_id} acknowledged as {f.quantity}@{f.price}, "
                           f"PostgreSQL has {t['quantity'] * lot}@{t['price'] * tick}")
    return out


def summarize(ledger: Ledger) -> str:
    codes: dict[str, int] = {}
    for attempts in ledger.attempts.values():
        for a in attempts:
            key = a.code + (f"/{a.reason}" if a.reason else "")
            codes[key] = codes.get(key, 0) + 1
    return f"{len(ledger.attempts)} client orders, {ledger.acked} acknowledged; attempts {codes}"


async def stop_tasks(tasks: list[asyncio.Task], timeout: float) -> None:
    """Wait for ``tasks`` up to ``timeout``, then cancel what is left."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    for t in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


# ---------------------------------------------------------------------------
# 1. SIGKILL the owner: the standby takes over within 5 s
# ---------------------------------------------------------------------------


async def test_sigkill_owner_standby_takes_over(two_matching) -> None:
    async with asyncio.timeout(60):
        checks = Checks()
        rng = random.Random(SEED)
        stack = await two_matching()
        a_addr, b_addr = stack.addr("matching"), stack.addr("matching-b")
        order_pid = stack.processes["order"].pid
        conn = await pg(stack)
        try:
            before = await wait_owners(conn, {BTC: a_addr, ETH: a_addr}, 5)
            print(f"A={a_addr} owns both: {before}; B={b_addr} is standby")

            ledger = Ledger()
            stop = asyncio.Event()
            give_up = time.monotonic() + 40
            async with grpc.aio.insecure_channel(stack.order_addr) as och:
                stub = opb_grpc.OrderServiceStub(och)
                clients = [asyncio.create_task(load_client(
                    stub, stack, ("alice", "bob")[i % 2], SEED * 100 + i, f"load{i}", ledger,
                    stop, give_up)) for i in range(4)]

                # The kill point comes from the seed: after this many acknowledgements.
                kill_after = rng.randint(25, 70)
                deadline = time.monotonic() + 15
                while ledger.acked < kill_after and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert ledger.acked >= kill_after, f"load did not start: {summarize(ledger)}"

                # Orders whose outcome the client does not learn before the kill. Odd
                # ones are sent in the 200 ms before it, once, with a client deadline
                # just above the order service's 50 ms reserve, so that it gives up on
                # the matching pod after a few ms: some are committed without the
                # client hearing of it, some not. Even ones are sent right at the kill
                # with a normal deadline (in flight when the stream breaks; the order
                # service retries those itself).
                limbo = [random_order(rng, rng.choice((BTC, ETH)), f"limbo-{i}")
                         for i in range(16)]
                plan = [(rng.uniform(0.0, 0.2), rng.uniform(0.051, 0.06)) if i % 2
                        else (0.2, 3.0) for i in range(len(limbo))]

                async def send_limbo(i: int) -> None:
                    delay, deadline_s = plan[i]
                    await asyncio.sleep(delay)
                    await place_until_ok(stub, stack, ("alice", "bob")[i % 2], limbo[i],
                                         ledger, call_timeout=deadline_s,
                                         give_up_at=time.monotonic() + deadline_s)

                limbo_tasks = [asyncio.create_task(send_limbo(i)) for i in range(len(limbo))]
                await asyncio.sleep(0.2 + rng.uniform(0.0, 0.01))

                t_kill = time.monotonic()
                stack.kill_service("matching")
                print(f"SIGKILLed A after {ledger.acked} acknowledgements (kill point from "
                      f"seed {SEED}: {kill_after} acknowledgements + 200 ms of limbo orders)")

                # Probes: a new order per instrument, placed (and retried with the same
                # client_order_id) from the kill on; the first OK means B owns it.
                async def probe(instrument: int) -> float | None:
                    price = "60000.00" if instrument == BTC else "3000.00"
                    qty = "0.0010" if instrument == BTC else "0.010"
                    req = opb.CreateOrderRequest(
                        instrument=SYMBOL[instrument], side=cpb.SIDE_BUY,
                        type=cpb.ORDER_TYPE_LIMIT, price=price, quantity=qty,
                        client_order_id=f"probe-{SYMBOL[instrument]}")
                    resp = await place_until_ok(stub, stack, "alice", req, ledger,
                                                call_timeout=2.0, give_up_at=t_kill + 15)
                    return None if resp is None else time.monotonic() - t_kill

                took = dict(zip((BTC, ETH), await asyncio.gather(probe(BTC), probe(ETH)),
                                strict=True))
                for inst, t in took.items():
                    print(f"FAILOVER {SYMBOL[inst]}: first successful CreateOrder "
                          + (f"{t:.2f}s after the SIGKILL" if t is not None else "NEVER (15s)"))
                    checks.expect(t is not None and t < FAILOVER_LIMIT,
                                  f"failover of {SYMBOL[inst]} took "
                                  f"{'more than 15' if t is None else f'{t:.2f}'}s "
                                  f"(limit {FAILOVER_LIMIT}s)")

                # Keep trading on B a little, then retry every limbo order that did not
                # get an answer, with the same client_order_id.
                await asyncio.sleep(1.0)
                stop.set()
                await stop_tasks(clients + limbo_tasks, 20)
                committed_before_retry = {
                    r["client_order_id"]: r["order_id"] for r in await conn.fetch(
                        "SELECT client_order_id, order_id FROM orders "
                        "WHERE client_order_id LIKE 'limbo-%'", timeout=5)}
                for i, req in enumerate(limbo):
                    if req.client_order_id in ledger.first_ok:
                        continue
                    resp = await place_until_ok(stub, stack, ("alice", "bob")[i % 2], req,
                                                ledger, call_timeout=3.0,
                                                give_up_at=time.monotonic() + 8)
                    checks.expect(resp is not None,
                                  f"retry of {req.client_order_id} never succeeded: "
                                  f"{ledger.attempts[req.client_order_id]}")

            print(summarize(ledger))
            after = await owners(conn)
            for inst in (BTC, ETH):
                addr, epoch, _ = after[inst]
                checks.expect(addr == b_addr, f"{SYMBOL[inst]} owner is {addr}, not B {b_addr}")
                checks.expect(epoch > before[inst][1],
                              f"{SYMBOL[inst]} epoch {epoch} did not move past {before[inst][1]}")
            checks.expect(stack.processes["order"].poll() is None
                          and stack.processes["order"].pid == order_pid,
                          "the order service was restarted or died")

            # Every client order: acknowledged (after retries), once, as the same order.
            bad = [(c, [(a.code, a.reason) for a in att]) for c, att in ledger.attempts.items()
                   if any(a.code not in {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"} for a in att)]
            checks.expect(not bad, f"unexpected error codes: {bad[:5]}")
            unacked = [c for c in ledger.attempts if c not in ledger.first_ok]
            checks.expect(not unacked, f"never acknowledged despite retries: {unacked[:10]}")
            for coid, order_id in committed_before_retry.items():
                oks = {a.order_id for a in ledger.attempts.get(coid, []) if a.code == "OK"}
                checks.expect(oks <= {str(order_id)},
                              f"{coid} was committed as {order_id} before the retry, but the "
                              f"retry answered {oks}")
            seen_ok = {c for c in committed_before_retry
                       if ledger.attempts[c][0].code == "OK"}
            print(f"limbo orders ({len(limbo)}): {len(seen_ok)} committed and acknowledged, "
                  f"{len(committed_before_retry) - len(seen_ok)} committed without the client "
                  f"hearing of it (the retry must return the original: "
                  f"{sorted(set(committed_before_retry) - seen_ok)}), "
                  f"{len(limbo) - len(committed_before_retry)} not committed before the retry "
                  "(the retry places a single new one)")
            tick_lot = await units(conn)
            for p in await idempotency_problems(conn, stack, ledger, tick_lot):
                checks.expect(False, p)
            for inst in (BTC, ETH):
                for p in await journal_problems(conn, inst):
                    checks.expect(False, p)
                # A's rows all come before B's: the takeover is one clean cut.
                a_last, b_first = await conn.fetchrow(
                    "SELECT max(sequence) FILTER (WHERE owner_epoch = $2), "
                    "min(sequence) FILTER (WHERE owner_epoch = $3) "
                    "FROM journal WHERE instrument_id = $1",
                    inst, before[inst][1], after[inst][1], timeout=5)
                checks.expect(a_last is None or b_first is None or a_last < b_first,
                              f"{SYMBOL[inst]}: A's journal rows reach {a_last}, past B's first "
                              f"row {b_first}")
                await book_matches_pg(checks, conn, stack, b_addr, inst, "B")
            # The money too: every commit of A moved it once, B's after the takeover.
            for p in await money_problems(conn):
                checks.expect(False, f"money after the takeover: {p}")
        finally:
            await conn.close()
        checks.done()


# ---------------------------------------------------------------------------
# 2. SIGSTOP the owner: B takes over, the resumed A cannot write
# ---------------------------------------------------------------------------


async def test_paused_owner_is_fenced(two_matching) -> None:
    async with asyncio.timeout(75):
        checks = Checks()
        rng = random.Random(SEED + 1)
        stack = await two_matching()
        a_addr, b_addr = stack.addr("matching"), stack.addr("matching-b")
        conn = await pg(stack)
        ledger = Ledger()
        direct: list[asyncio.Task] = []
        try:
            before = await wait_owners(conn, {BTC: a_addr, ETH: a_addr}, 5)
            async with grpc.aio.insecure_channel(stack.order_addr) as och:
                stub = opb_grpc.OrderServiceStub(och)
                # A book on both instruments, committed by A.
                for i in range(12):
                    req = random_order(rng, (BTC, ETH)[i % 2], f"warm-{i}")
                    resp = await place_until_ok(stub, stack, ("alice", "bob")[i % 2], req,
                                                ledger, call_timeout=3,
                                                give_up_at=time.monotonic() + 5)
                    assert resp is not None, ledger.attempts[req.client_order_id]
                stop = asyncio.Event()
                clients = [asyncio.create_task(load_client(
                    stub, stack, ("alice", "bob")[i], SEED * 100 + 10 + i, f"fload{i}", ledger,
                    stop, time.monotonic() + 45)) for i in range(2)]
                await asyncio.sleep(rng.uniform(0.2, 0.6))

                t_pause = time.monotonic()
                stack.pause_service("matching")
                try:
                    # Commands that reach A while it is paused: queued in its socket, they
                    # are what A would try to commit when it resumes.
                    for i in range(4):
                        inst = (BTC, ETH)[i % 2]
                        price = 6_900_000 if inst == BTC else 345_000
                        direct.append(asyncio.create_task(execute_once(
                            stack, a_addr,
                            await matching_new_order(stack, stack.account_ids["alice"],
                                                     f"direct-{i}", price, inst,
                                                     request_id=i + 1),
                            timeout=30)))

                    # B takes over: epoch bumps, owner_address changes.
                    limit = OWNER_SESSION_TIMEOUT + TAKEOVER_MARGIN
                    took = None
                    while time.monotonic() - t_pause < limit + 5:
                        now = await owners(conn)
                        if all(now[i][0] == b_addr and now[i][1] > before[i][1]
                               for i in (BTC, ETH)):
                            took = time.monotonic() - t_pause
                            break
                        await asyncio.sleep(0.05)
                    print("TAKEOVER after SIGSTOP: "
                          + (f"{took:.2f}s" if took is not None else f"NONE in {limit + 5:.0f}s")
                          + f" (limit {limit:.1f}s = owner_session_timeout "
                          f"{OWNER_SESSION_TIMEOUT} + {TAKEOVER_MARGIN})")
                    assert took is not None, (
                        f"B did not take over from the paused A within {limit + 5:.0f}s: "
                        f"{await owners(conn)}")
                    checks.expect(took < limit, f"takeover took {took:.2f}s (limit {limit}s)")
                    at_takeover = await owners(conn)
                    epochs_a = {i: before[i][1] for i in (BTC, ETH)}

                    # Orders through the order service must now reach B (A is still paused).
                    t0 = time.monotonic()
                    routed = []
                    via_b = [random_order(rng, (BTC, ETH)[i % 2], f"via-b-{i}")
                             for i in range(6)]
                    for req in via_b:
                        resp = await place_until_ok(stub, stack, "bob", req, ledger,
                                                    call_timeout=2.0,
                                                    give_up_at=max(t0 + 8, time.monotonic()))
                        routed.append(resp is not None)
                    first_ok = min((a.done for c in ledger.attempts if c.startswith("via-b-")
                                    for a in ledger.attempts[c] if a.code == "OK"),
                                   default=None)
                    print("ROUTING to B while A is paused: "
                          + (f"first OK {first_ok - t0:.2f}s after the takeover"
                             if first_ok else "no order succeeded in 8s")
                          + f"; {sum(routed)}/{len(routed)} placed")
                    checks.expect(all(routed),
                                  "while A is paused the order service did not route orders "
                                  "to the new owner B within 8s: "
                                  + str({c: [(a.code, a.reason) for a in ledger.attempts[c]][-3:]
                                         for c in ledger.attempts if c.startswith("via-b-")}))
                    if not any(routed):
                        # Still exercise the fencing: place orders on B directly.
                        for i in range(4):
                            inst = (BTC, ETH)[i % 2]
                            res = await execute_once(stack, b_addr, await matching_new_order(
                                stack, stack.account_ids["bob"], f"on-b-{i}",
                                7_100_000 if inst == BTC else 360_000, inst, cpb.SIDE_SELL), 5)
                            checks.expect(res.WhichOneof("result") == "order",
                                          f"order placed directly on B failed: {res}")
                finally:
                    stack.resume_service("matching")
                t_resume = time.monotonic()
                print(f"SIGCONT A after {t_resume - t_pause:.2f}s paused")
                # Clients retry (same client_order_id) what was not acknowledged.
                for req in via_b:
                    if req.client_order_id not in ledger.first_ok:
                        await place_until_ok(stub, stack, "bob", req, ledger, call_timeout=2.0,
                                             give_up_at=time.monotonic() + 8)

                # What A answers for the commands it had queued: never an acknowledgement.
                await asyncio.wait(direct, timeout=10)
                for i, task in enumerate(direct):
                    if not task.done():
                        checks.expect(False, f"direct-{i}: A did not answer 10s after SIGCONT")
                        continue
                    if task.exception() is not None:
                        err = task.exception()
                        code = err.code().name if isinstance(err, grpc.aio.AioRpcError) else err
                        checks.expect(isinstance(err, grpc.aio.AioRpcError)
                                      and err.code() == Code.UNAVAILABLE,
                                      f"direct-{i}: A's call failed with {code}")
                        continue
                    res = task.result()
                    checks.expect(res.WhichOneof("result") == "error"
                                  and res.error.code in (mpb.ERROR_CODE_NOT_OWNER,
                                                         mpb.ERROR_CODE_UNAVAILABLE),
                                  f"direct-{i}: the resumed A answered {res} (must be NOT_OWNER)")

                # A gives the instruments up: NOT_OWNER on commands, NOT_FOUND on GetBook.
                for inst in (BTC, ETH):
                    deadline = time.monotonic() + 3
                    res = None
                    while time.monotonic() < deadline:
                        res = await execute_once(stack, a_addr, await matching_new_order(
                            stack, stack.account_ids["alice"], f"after-resume-{inst}",
                            6_800_000 if inst == BTC else 340_000, inst), 3)
                        if (res.WhichOneof("result") == "error"
                                and res.error.code == mpb.ERROR_CODE_NOT_OWNER):
                            break
                        await asyncio.sleep(0.2)
                    checks.expect(res is not None and res.WhichOneof("result") == "error"
                                  and res.error.code == mpb.ERROR_CODE_NOT_OWNER,
                                  f"A, resumed, answers {res} for {SYMBOL[inst]} "
                                  "(must be NOT_OWNER)")
                    try:
                        book = await get_book(stack, a_addr, inst)
                        checks.expect(False, f"GetBook({SYMBOL[inst]}) on the resumed A "
                                             f"answered a book (epoch {book.owner_epoch}); "
                                             "must be NOT_FOUND")
                    except grpc.aio.AioRpcError as err:
                        checks.expect(err.code() == Code.NOT_FOUND,
                                      f"GetBook({SYMBOL[inst]}) on the resumed A: "
                                      f"{err.code().name} {err.details()} (must be NOT_FOUND)")

                # Trading goes on through B.
                for i in range(4):
                    req = random_order(rng, (BTC, ETH)[i % 2], f"after-{i}")
                    resp = await place_until_ok(stub, stack, "alice", req, ledger,
                                                call_timeout=2.0,
                                                give_up_at=time.monotonic() + 8)
                    checks.expect(resp is not None, f"{req.client_order_id} after SIGCONT: "
                                                    f"{ledger.attempts[req.client_order_id]}")
                stop.set()
                await stop_tasks(clients, 15)

            print(summarize(ledger))
            # A wrote nothing after the takeover: no journal row with A's epoch beyond
            # the sequence the instrument had when B took it.
            for inst in (BTC, ETH):
                late = await conn.fetch(
                    "SELECT sequence, kind, order_id FROM journal WHERE instrument_id = $1 "
                    "AND owner_epoch = $2 AND sequence > $3 ORDER BY sequence",
                    inst, epochs_a[inst], at_takeover[inst][2], timeout=5)
                checks.expect(not late, f"{SYMBOL[inst]}: A (epoch {epochs_a[inst]}) wrote "
                                        f"after the takeover at sequence "
                                        f"{at_takeover[inst][2]}: {[tuple(r) for r in late]}")
                foreign = await conn.fetchval(
                    "SELECT count(*) FROM journal WHERE instrument_id = $1 AND sequence > $2 "
                    "AND owner_epoch <> $3", inst, at_takeover[inst][2],
                    at_takeover[inst][1], timeout=5)
                checks.expect(foreign == 0, f"{SYMBOL[inst]}: {foreign} journal rows after the "
                                            "takeover were not written by B's epoch")
                now = (await owners(conn))[inst]
                checks.expect(now[0] == b_addr and now[1] == at_takeover[inst][1],
                              f"{SYMBOL[inst]}: ownership moved again after the takeover: "
                              f"{at_takeover[inst]} -> {now}")
                for p in await journal_problems(conn, inst):
                    checks.expect(False, p)
                await book_matches_pg(checks, conn, stack, b_addr, inst, "B")
            leaked = await conn.fetch(
                "SELECT client_order_id, order_id FROM orders "
                "WHERE client_order_id LIKE 'direct-%' OR client_order_id LIKE 'after-resume-%'",
                timeout=5)
            checks.expect(not leaked, f"orders sent only to the paused A were placed: "
                                      f"{[tuple(r) for r in leaked]}")
            bad = [(c, [(a.code, a.reason) for a in att]) for c, att in ledger.attempts.items()
                   if any(a.code not in {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"} for a in att)]
            checks.expect(not bad, f"unexpected error codes: {bad[:5]}")
            unacked = [c for c in ledger.attempts if c not in ledger.first_ok]
            checks.expect(not unacked, f"never acknowledged despite retries: {unacked[:10]}")
            for p in await idempotency_problems(conn, stack, ledger, await units(conn)):
                checks.expect(False, p)
        finally:
            for task in direct:
                task.cancel()
            stack.resume_service("matching")
            await conn.close()
        checks.done()


# ---------------------------------------------------------------------------
# 3. Each pod owns only what it may: the order service routes to each owner
# ---------------------------------------------------------------------------


async def test_instrument_split(two_matching) -> None:
    async with asyncio.timeout(45):
        checks = Checks()
        stack = await two_matching(a="BTC-USD", b="ETH-USD")
        a_addr, b_addr = stack.addr("matching"), stack.addr("matching-b")
        conn = await pg(stack)
        try:
            await wait_owners(conn, {BTC: a_addr, ETH: b_addr}, 5)
            placed: dict[int, str] = {}
            async with grpc.aio.insecure_channel(stack.order_addr) as och:
                stub = opb_grpc.OrderServiceStub(och)
                for inst, price, qty in ((BTC, "69000.00", "0.0100"), (ETH, "3400.00", "0.100")):
                    resp = await stub.CreateOrder(opb.CreateOrderRequest(
                        instrument=SYMBOL[inst], side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
                        price=price, quantity=qty, client_order_id=f"split-{inst}"),
                        metadata=meta(stack, "alice"), timeout=5)
                    assert resp.order.state == cpb.ORDER_STATE_NEW
                    placed[inst] = resp.order.order_id
            for inst, owner, other in ((BTC, ("A", a_addr), ("B", b_addr)),
                                       (ETH, ("B", b_addr), ("A", a_addr))):
                epoch = (await owners(conn))[inst][1]
                journal_epochs = {r["owner_epoch"] for r in await conn.fetch(
                    "SELECT owner_epoch FROM journal WHERE instrument_id = $1", inst)}
                checks.expect(journal_epochs == {epoch},
                              f"{SYMBOL[inst]} journal epochs {journal_epochs}, owner {epoch}")
                try:
                    book = await get_book(stack, owner[1], inst)
                    ids = [str(o.order_id) for o in book.bids]
                    checks.expect(ids == [placed[inst]],
                                  f"{owner[0]}'s book of {SYMBOL[inst]} has bids {ids}, "
                                  f"expected [{placed[inst]}]")
                except grpc.aio.AioRpcError as err:
                    checks.expect(False, f"GetBook({SYMBOL[inst]}) on its owner {owner[0]}: "
                                         f"{err.code().name} {err.details()}")
                try:
                    await get_book(stack, other[1], inst)
                    checks.expect(False, f"GetBook({SYMBOL[inst]}) on {other[0]} answered a "
                                         "book; must be NOT_FOUND")
                except grpc.aio.AioRpcError as err:
                    checks.expect(err.code() == Code.NOT_FOUND,
                                  f"GetBook({SYMBOL[inst]}) on {other[0]}: {err.code().name}")
                res = await execute_once(stack, other[1], await matching_new_order(
                    stack, stack.account_ids["bob"], f"wrong-pod-{inst}",
                    6_800_000 if inst == BTC else 330_000, inst), 5)
                checks.expect(res.WhichOneof("result") == "error"
                              and res.error.code == mpb.ERROR_CODE_NOT_OWNER,
                              f"{other[0]} accepted a {SYMBOL[inst]} command: {res}")
                for p in await journal_problems(conn, inst):
                    checks.expect(False, p)
        finally:
            await conn.close()
        checks.done()


# ---------------------------------------------------------------------------
# 4. An order-entry session through a SIGKILL of the owner
# ---------------------------------------------------------------------------


async def test_order_entry_session_through_failover(two_matching) -> None:
    """Creates stream through one OrderEntry session (the fast path) while the owner is
    SIGKILLed: every create is answered exactly once, with the order or a retryable
    error; every order answered is in PostgreSQL; once the standby owns the
    instruments, the session's creates are placed through it."""
    async with asyncio.timeout(60):
        checks = Checks()
        rng = random.Random(SEED + 4)
        stack = await two_matching()
        a_addr, b_addr = stack.addr("matching"), stack.addr("matching-b")
        conn = await pg(stack)
        try:
            await wait_owners(conn, {BTC: a_addr, ETH: a_addr}, 5)
            answers: dict[str, list[opb.OrderEntryEvent]] = {}
            sent: list[str] = []
            async with grpc.aio.insecure_channel(stack.order_addr) as och:
                call = opb_grpc.OrderServiceStub(och).OrderEntry(metadata=meta(stack, "alice"))

                async def read() -> None:
                    async for response in call:
                        for event in response.events:
                            answers.setdefault(event.client_order_id, []).append(event)

                reader = asyncio.create_task(read())

                async def send(phase: str, messages: int) -> list[str]:
                    coids = []
                    for m in range(messages):
                        batch = [random_order(rng, rng.choice((BTC, ETH)), f"{phase}-{m}-{i}")
                                 for i in range(5)]
                        await call.write(opb.OrderEntryRequest(
                            commands=[opb.OrderEntryCommand(create=c) for c in batch]))
                        coids += [c.client_order_id for c in batch]
                        await asyncio.sleep(0.01)
                    sent.extend(coids)
                    return coids

                await send("before", 20)
                stack.kill_service("matching")
                await send("during", 30)
                await wait_owners(conn, {BTC: b_addr, ETH: b_addr}, 10)
                after = await send("after", 20)
                await call.done_writing()
                await asyncio.wait_for(reader, 30)

            for coid in sent:
                got = answers.get(coid, [])
                checks.expect(len(got) == 1, f"{coid}: {len(got)} answers")
            stored = {r["client_order_id"]: str(r["order_id"]) for r in await conn.fetch(
                "SELECT client_order_id, order_id FROM orders", timeout=5)}
            retryable = {code.value[0] for code in RETRYABLE}
            for coid, got in answers.items():
                for event in got:
                    if event.HasField("order"):
                        checks.expect(stored.get(coid) == event.order.order_id,
                                      f"{coid}: answered order {event.order.order_id}, "
                                      f"PostgreSQL has {stored.get(coid)}")
                    else:
                        checks.expect(event.error.code in retryable,
                                      f"{coid}: error {event.error.code} "
                                      f"{event.error.message!r} is not retryable")
            placed_after = sum(1 for c in after
                               if answers.get(c) and answers[c][0].HasField("order"))
            checks.expect(placed_after == len(after),
                          f"after the failover {placed_after} of {len(after)} placed")
            print(f"session through failover: {len(sent)} creates, "
                  f"{sum(1 for g in answers.values() if g[0].HasField('order'))} placed, "
                  f"{sum(1 for g in answers.values() if g[0].HasField('error'))} errors")
        finally:
            await conn.close()
        checks.done()


# ---------------------------------------------------------------------------
# 5. Stops, good-till-time orders and a mass cancel through a SIGKILL of the owner
# ---------------------------------------------------------------------------


async def test_standby_takes_over_stops_expiries_and_a_mass_cancel(two_matching) -> None:
    async with asyncio.timeout(60):
        checks = Checks()
        stack = await two_matching()
        a_addr, b_addr = stack.addr("matching"), stack.addr("matching-b")
        conn = await pg(stack)
        try:
            await wait_owners(conn, {BTC: a_addr, ETH: a_addr}, 5)
            placed = await trader_orders.place(stack, a_addr)
            await trader_orders.before_kill(conn, placed)
            stack.kill_service("matching")
            await trader_orders.wait_until_expired(placed)
            await wait_owners(conn, {BTC: b_addr}, FAILOVER_LIMIT + OWNER_SESSION_TIMEOUT)
            await trader_orders.check_after(checks, stack, conn, placed, b_addr)
            for p in await journal_problems(conn, BTC):
                checks.expect(False, p)
        finally:
            await conn.close()
        checks.done()
