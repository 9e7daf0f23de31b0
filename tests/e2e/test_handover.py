"""Live instrument hand-over, failback and rolling restarts, with real processes (issue 15).

Matching pods are real processes on one PostgreSQL, named as a StatefulSet names them
(``matching-0`` is the stack's ``matching``, the others are added with
``Stack.add_matching``); each has a home (EXCHANGE_MATCHING_HOME) and may own every
instrument. See matching_service/placement.py for the rules.

- ``test_rollout_with_restart_grace``: three group pods (two instruments each) and a
  standby, restarted in a StatefulSet's order (highest ordinal first: SIGTERM, wait for
  the exit, start again with the same name, wait until SERVING, then the next) under light
  load, EXCHANGE_MATCHING_RESTART_GRACE 30 s: afterwards every group pod owns its group
  and the standby nothing, and every instrument moved exactly once (epoch + 1, taken
  again by its home pod: ownership_history).
- ``test_rollout_without_restart_grace``: the same with no grace: an instrument goes to
  another pod while its home restarts and comes back (failback) when it is up: every
  group pod owns its group afterwards, and no instrument passed through a second pod
  that is not its home.
- ``test_crash_failover_then_failback``: kill -9 of a group pod under load: the standby
  takes its instruments; the pod restarted takes them back by a drained hand-over; every
  acknowledged order is in PostgreSQL once, books equal PostgreSQL, money is clean.
- ``test_move_under_load``: MoveInstrument moves BTC-USD between two pods six times, back
  and forth, while several clients place orders on it; every order is answered once
  (acknowledged, or refused with a retryable status and then placed by its retry with the
  same client_order_id), every acknowledged order is in PostgreSQL and GetOrder, none is
  duplicated, the epochs rise at every move, the book equals PostgreSQL and its journal
  replay, money is clean. Prints the pauses (how long each move took, and the slowest
  order answered during the moves): no timed assertion.
- ``test_move_refusals_and_cli``: MoveInstrument's refusals (unknown instrument, unknown
  pod, stopped pod, pod not allowed to own it) and ``exchange admin instrument move`` /
  ``exchange admin pods``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import e2e_helpers
import grpc
import pytest
from e2e_helpers import Checks, matching_new_order, matching_stacks, meta, money_problems
from journal_replay import replay_journal
from test_failover import (
    BTC,
    ETH,
    Ledger,
    Outcome,
    book_matches_pg,
    execute_once,
    get_book,
    idempotency_problems,
    journal_problems,
    load_client,
    pg,
    pg_resting,
    stop_tasks,
    summarize,
    units,
)

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common import db
from exchange_common.errors import error_info
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

KEYS = {"alice": "handover-key-alice-0123456789", "bob": "handover-key-bob-0123456789",
        "carol": "handover-key-carol-0123456789"}
# Four more instruments (with the seeded BTC-USD and ETH-USD: three groups of two).
EXTRA = {3: "AAA-USD", 4: "BBB-USD", 5: "CCC-USD", 6: "DDD-USD"}
GROUPS = {"matching-0": ("BTC-USD", "AAA-USD"), "matching-1": ("ETH-USD", "BBB-USD"),
          "matching-2": ("CCC-USD", "DDD-USD"), "matching-3": ()}
# The stack's service name of each pod.
SERVICE = {"matching-0": "matching", "matching-1": "matching-1", "matching-2": "matching-2",
           "matching-3": "matching-3"}
COMMON = {"EXCHANGE_OWNER_SESSION_TIMEOUT": "3", "EXCHANGE_OWNERSHIP_POLL": "0.5",
          # the order services' streams would hold a stopping pod this long
          "EXCHANGE_SHUTDOWN_GRACE": "1"}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED}
Code = grpc.StatusCode


def limited(seconds: float) -> Callable:
    """Fail a test body that runs longer than ``seconds`` instead of hanging."""
    def wrap(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        @functools.wraps(test)
        async def run(*args: object, **kwargs: object) -> None:
            async with asyncio.timeout(seconds):
                await test(*args, **kwargs)
        return run
    return wrap


@pytest.fixture
async def pods(database_url: str, redis_url: str, tmp_path: Path
               ) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """``await pods({"matching-0": env, ...})``: the stack with these matching pods (the
    first is the stack's ``matching``), each with EXCHANGE_MATCHING_NAME = its name and
    the env given, and the instruments of GROUPS. Log tails are printed after the test."""
    async def extra_instruments(conn: asyncpg.Connection) -> None:
        # BTC-USD's terms under other symbols (before the services start).
        await db.seed_instruments(conn, [(iid, symbol, "BTC", "USD", "0.01", "0.0001",
                                          "0.0001", "1000", "1")
                                         for iid, symbol in EXTRA.items()])

    async with matching_stacks(database_url, redis_url, KEYS, tmp_path / "logs") as start:

        async def build(pod_env: dict[str, dict[str, str]]) -> Stack:
            return await start(
                {SERVICE.get(name, name): {**COMMON, "EXCHANGE_MATCHING_NAME": name, **env}
                 for name, env in pod_env.items()}, on_prepare=extra_instruments)

        yield build


def group_pods(grace: float) -> dict[str, dict[str, str]]:
    return {name: {"EXCHANGE_MATCHING_HOME": ",".join(group),
                   "EXCHANGE_MATCHING_RESTART_GRACE": str(grace)}
            for name, group in GROUPS.items()}


async def owned_by(conn: asyncpg.Connection) -> dict[str, tuple[str | None, int]]:
    """symbol -> (owner pod, epoch), counting only owners whose session holds the lock."""
    rows = await conn.fetch(
        """SELECT i.symbol, s.owner_name, s.owner_epoch,
                  EXISTS (SELECT 1 FROM pg_locks l
                           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                             AND l.objid::bigint = i.instrument_id) AS held
             FROM instruments i JOIN instrument_state s USING (instrument_id)""", timeout=5)
    return {r["symbol"]: (r["owner_name"] if r["held"] else None, r["owner_epoch"])
            for r in rows}


async def wait_placed(conn: asyncpg.Connection, want: dict[str, str], timeout: float = 30
                      ) -> dict[str, tuple[str | None, int]]:
    """Wait until each symbol of ``want`` is owned by the pod named."""
    deadline = time.monotonic() + timeout
    while True:
        now = await owned_by(conn)
        if all(now.get(symbol, (None,))[0] == pod for symbol, pod in want.items()):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"owners {now} are not {want} after {timeout} s")
        await asyncio.sleep(0.1)


def homes() -> dict[str, str]:
    return {symbol: pod for pod, group in GROUPS.items() for symbol in group}


async def history_since(conn: asyncpg.Connection, epochs: dict[str, int]
                        ) -> dict[str, list[str]]:
    """symbol -> the pods that took it after the epochs given, in order."""
    rows = await conn.fetch(
        """SELECT i.symbol, h.owner_epoch, h.owner_name FROM ownership_history h
             JOIN instruments i USING (instrument_id) ORDER BY h.owner_epoch""", timeout=5)
    out: dict[str, list[str]] = {symbol: [] for symbol in epochs}
    for r in rows:
        if r["owner_epoch"] > epochs.get(r["symbol"], 0):
            out.setdefault(r["symbol"], []).append(r["owner_name"])
    return out


async def rollout(stack: Stack) -> None:
    """A StatefulSet's rolling restart: highest ordinal first, one at a time."""
    for name in sorted(GROUPS, reverse=True):
        service = SERVICE[name]
        code = await stack.stop_service(service)
        assert code == 0, f"{name} exited with {code} on SIGTERM"
        await stack.start_service(service)


async def light_load(stack: Stack, ledger: Ledger, stop: asyncio.Event, seconds: float
                     ) -> list[asyncio.Task]:
    channel = grpc.aio.insecure_channel(stack.order_addr)
    stub = opb_grpc.OrderServiceStub(channel)
    give_up = time.monotonic() + seconds
    return [asyncio.create_task(load_client(stub, stack, who, seed, f"{who}-{seed}", ledger,
                                            stop, give_up))
            for seed, who in enumerate(["alice", "bob"])]


async def money_and_orders_clean(checks: Checks, conn: asyncpg.Connection, stack: Stack,
                                 ledger: Ledger) -> None:
    # every order answered once: acknowledged, after retryable refusals only
    codes = {a.code for attempts in ledger.attempts.values() for a in attempts}
    checks.expect(codes <= {"OK"} | {c.name for c in RETRYABLE},
                  f"refusals that are not retryable: {codes}")
    unanswered = [coid for coid in ledger.attempts if coid not in ledger.first_ok]
    checks.expect(not unanswered, f"never acknowledged: {unanswered[:10]}")
    tick_lot = await units(conn)
    for problem in await idempotency_problems(conn, stack, ledger, tick_lot):
        checks.expect(False, problem)
    for instrument in (BTC, ETH):
        for problem in await journal_problems(conn, instrument):
            checks.expect(False, problem)
    for problem in await money_problems(conn):
        checks.expect(False, f"money: {problem}")


# ---------------------------------------------------------------------------
# Rolling restarts
# ---------------------------------------------------------------------------


@limited(180)
async def test_rollout_with_restart_grace(pods) -> None:
    stack = await pods(group_pods(30))
    checks = Checks()
    conn = await pg(stack)
    try:
        before = await wait_placed(conn, homes())
        epochs = {symbol: epoch for symbol, (_, epoch) in before.items()}
        ledger, stop = Ledger(), asyncio.Event()
        tasks = await light_load(stack, ledger, stop, 180)
        await rollout(stack)
        stop.set()
        await stop_tasks(tasks, 30)
        after = await wait_placed(conn, homes(), timeout=10)
        print("rollout with grace:", summarize(ledger))
        for symbol, (_, epoch) in after.items():
            checks.expect(epoch == epochs[symbol] + 1,
                          f"{symbol}: epoch {epochs[symbol]} -> {epoch}, not moved once")
        for symbol, taken_by in (await history_since(conn, epochs)).items():
            checks.expect(taken_by == [homes()[symbol]],
                          f"{symbol} was taken by {taken_by} during the rollout, "
                          f"not once by {homes()[symbol]}")
        owned = {pod: sorted(s for s, (p, _) in after.items() if p == pod) for pod in GROUPS}
        checks.expect(owned == {pod: sorted(group) for pod, group in GROUPS.items()},
                      f"owned after the rollout: {owned}")
        checks.expect(ledger.acked > 0, "no order was acknowledged during the rollout")
        await money_and_orders_clean(checks, conn, stack, ledger)
    finally:
        await conn.close()
    checks.done()


@limited(180)
async def test_rollout_without_restart_grace(pods) -> None:
    stack = await pods(group_pods(0))
    checks = Checks()
    conn = await pg(stack)
    try:
        before = await wait_placed(conn, homes())
        epochs = {symbol: epoch for symbol, (_, epoch) in before.items()}
        ledger, stop = Ledger(), asyncio.Event()
        tasks = await light_load(stack, ledger, stop, 180)
        await rollout(stack)
        after = await wait_placed(conn, homes())  # failback of the last pod's group
        stop.set()
        await stop_tasks(tasks, 30)
        print("rollout without grace:", summarize(ledger))
        history = await history_since(conn, epochs)
        print("taken during the rollout:", history)
        for symbol, taken_by in history.items():
            home = homes()[symbol]
            others = {pod for pod in taken_by if pod != home}
            checks.expect(len(others) <= 1, f"{symbol} went through {others}, not its home "
                                            f"{home} ({taken_by})")
            checks.expect(taken_by[-1:] == [home], f"{symbol} is not back on {home}: "
                                                   f"{taken_by}")
            checks.expect(len(taken_by) <= 2, f"{symbol} moved {len(taken_by)} times")
        owned = {pod: sorted(s for s, (p, _) in after.items() if p == pod) for pod in GROUPS}
        checks.expect(owned == {pod: sorted(group) for pod, group in GROUPS.items()},
                      f"owned after the rollout: {owned}")
        await money_and_orders_clean(checks, conn, stack, ledger)
    finally:
        await conn.close()
    checks.done()


# ---------------------------------------------------------------------------
# Crash failover, then failback
# ---------------------------------------------------------------------------


@limited(120)
async def test_crash_failover_then_failback(pods) -> None:
    stack = await pods({
        "matching-0": {"EXCHANGE_MATCHING_HOME": "BTC-USD,AAA-USD,CCC-USD"},
        "matching-1": {"EXCHANGE_MATCHING_HOME": "ETH-USD,BBB-USD,DDD-USD"},
        "matching-3": {}})
    checks = Checks()
    conn = await pg(stack)
    try:
        want = {"BTC-USD": "matching-0", "ETH-USD": "matching-1"}
        before = await wait_placed(conn, want)
        ledger, stop = Ledger(), asyncio.Event()
        tasks = await light_load(stack, ledger, stop, 120)
        await asyncio.sleep(1.0)
        killed = time.monotonic()
        stack.kill_service("matching")
        now = await owned_by(conn)
        while now["BTC-USD"][0] in (None, "matching-0"):
            await asyncio.sleep(0.02)
            now = await owned_by(conn)
        print(f"BTC-USD taken by {now['BTC-USD'][0]} {time.monotonic() - killed:.2f} s "
              "after the kill")
        await asyncio.sleep(1.0)
        await stack.start_service("matching")
        after = await wait_placed(conn, want)
        await asyncio.sleep(1.0)  # orders through the returned owner
        stop.set()
        await stop_tasks(tasks, 30)
        print("failover and failback:", summarize(ledger))
        epochs = {symbol: epoch for symbol, (_, epoch) in before.items()}
        history = await history_since(conn, epochs)
        print("taken since:", history)
        checks.expect(history["BTC-USD"] == ["matching-3", "matching-0"],
                      f"BTC-USD: {history['BTC-USD']}, not failover to the standby then "
                      "failback")
        checks.expect(history["ETH-USD"] == [], f"ETH-USD moved: {history['ETH-USD']}")
        checks.expect(after["BTC-USD"][1] == epochs["BTC-USD"] + 2, f"BTC-USD epochs {after}")
        addr = {"matching-0": stack.matching_addr,
                "matching-1": stack.extra_matching["matching-1"]}
        for instrument, pod in ((BTC, "matching-0"), (ETH, "matching-1")):
            await book_matches_pg(checks, conn, stack, addr[pod], instrument, pod)
        await money_and_orders_clean(checks, conn, stack, ledger)
    finally:
        await conn.close()
    checks.done()


# ---------------------------------------------------------------------------
# MoveInstrument
# ---------------------------------------------------------------------------


async def move(stack: Stack, symbol: str, to: str, timeout_ms: int = 15_000
               ) -> apb.MoveInstrumentResponse:
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        return await apb_grpc.AdminServiceStub(channel).MoveInstrument(
            apb.MoveInstrumentRequest(symbol=symbol, to=to, timeout_ms=timeout_ms),
            metadata=(("x-admin-key", stack.admin_key),), timeout=timeout_ms / 1000 + 5)


async def steady_client(stub: opb_grpc.OrderServiceStub, stack: Stack, who: str, prefix: str,
                        ledger: Ledger, stop: asyncio.Event, slowest: list[float]) -> None:
    """Orders on BTC-USD one after another; each retried with its client_order_id on a
    retryable refusal until acknowledged. ``slowest``: the longest wait for an answer
    (the first attempt to the acknowledgement) seen while moving."""
    n = 0
    while not stop.is_set():
        side = n % 2
        req = opb.CreateOrderRequest(
            instrument="BTC-USD", side=(cpb.SIDE_BUY, cpb.SIDE_SELL)[side],
            type=cpb.ORDER_TYPE_LIMIT, time_in_force=cpb.TIME_IN_FORCE_GTC,
            # buys 69,997-70,003 and sells 70,003-69,997: a book, and some trades
            price=f"{70_000 - 3 + (n % 7) if side == 0 else 70_000 + 3 - (n % 7)}.00",
            quantity="0.0010",
            client_order_id=f"{prefix}-{n}")
        coid = req.client_order_id
        ledger.owner[coid] = who
        first = time.monotonic()
        while True:
            sent = time.monotonic()
            try:
                resp = await stub.CreateOrder(req, metadata=meta(stack, who), timeout=5)
            except grpc.aio.AioRpcError as err:
                info = error_info(err)
                ledger.record(coid, outcome(err.code().name, info.reason if info else "",
                                            "", sent))
                assert err.code() in RETRYABLE, f"{coid}: {err.code()} {err.details()}"
                await asyncio.sleep(0.02)
                continue
            ledger.record(coid, outcome("OK", "", resp.order.order_id, sent))
            ledger.first_ok.setdefault(coid, resp)
            ledger.acked += 1
            slowest[0] = max(slowest[0], time.monotonic() - first)
            break
        n += 1


def outcome(code: str, reason: str, order_id: str, sent: float) -> Outcome:
    return Outcome(code, reason, order_id, sent, time.monotonic())


@limited(120)
async def test_move_under_load(pods) -> None:
    stack = await pods({"matching-0": {"EXCHANGE_MATCHING_HOME": "*"}, "matching-3": {}})
    checks = Checks()
    conn = await pg(stack)
    channel = grpc.aio.insecure_channel(stack.order_addr)
    stub = opb_grpc.OrderServiceStub(channel)
    try:
        await wait_placed(conn, {"BTC-USD": "matching-0"})
        ledger, stop, slowest = Ledger(), asyncio.Event(), [0.0]
        tasks = [asyncio.create_task(steady_client(stub, stack, who, f"{who}-{i}", ledger,
                                                   stop, slowest))
                 for who in KEYS for i in range(2)]
        await asyncio.sleep(1.0)
        pauses = []
        epochs = []
        for to in ["matching-3", "matching-0"] * 3:
            acked = ledger.acked
            started = time.monotonic()
            moved = await move(stack, "BTC-USD", to)
            pauses.append(time.monotonic() - started)
            checks.expect(moved.instrument.owner_pod == to, f"moved to {moved.instrument}")
            checks.expect(moved.instrument.owner_epoch > moved.previous_epoch,
                          f"epoch {moved.previous_epoch} -> {moved.instrument.owner_epoch}")
            epochs.append(moved.instrument.owner_epoch)
            # orders flow on the new owner before the next move
            while ledger.acked < acked + 20:
                await asyncio.sleep(0.02)
        slow_during_moves = slowest[0]
        stop.set()
        await stop_tasks(tasks, 30)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                checks.expect(False, f"client failed: {t.exception()!r}")
        print("moves:", summarize(ledger))
        print("MoveInstrument took (s):", [f"{p:.3f}" for p in pauses],
              f"; slowest order answer during the moves: {slow_during_moves:.3f} s")
        checks.expect(epochs == sorted(set(epochs)), f"epochs not strictly rising: {epochs}")
        history = await history_since(conn, {"BTC-USD": epochs[0] - 1})
        checks.expect(history["BTC-USD"] == ["matching-3", "matching-0"] * 3,
                      f"BTC-USD taken by {history['BTC-USD']}")
        await money_and_orders_clean(checks, conn, stack, ledger)
        # every acknowledged order answers GetOrder as acknowledged
        for coid, resp in list(ledger.first_ok.items())[::7]:
            got = await stub.GetOrder(opb.GetOrderRequest(order_id=resp.order.order_id),
                                      metadata=meta(stack, ledger.owner[coid]), timeout=5)
            checks.expect(got.order.client_order_id == coid, f"GetOrder of {coid}: {got}")
        await book_matches_pg(checks, conn, stack, stack.matching_addr, BTC, "matching-0")
        # ... and PostgreSQL's resting orders equal the journal's replay
        replay = await replay_journal(conn, BTC)
        last = await conn.fetchval(
            "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1", BTC)
        checks.expect(not replay.problems, f"journal replay: {replay.problems[:5]}")
        checks.expect(replay.last_sequence == last,
                      f"replay ends at {replay.last_sequence}, not {last}")
        resting = await pg_resting(conn, BTC)
        checks.expect(replay.book() == resting,
                      "journal replay's book differs from PostgreSQL's resting orders")
        checks.expect(len(replay.trades) > 0, "no trade during the moves")
    finally:
        await channel.close()
        await conn.close()
    checks.done()


@limited(90)
async def test_move_refusals_and_cli(pods) -> None:
    stack = await pods({"matching-0": {"EXCHANGE_MATCHING_HOME": "*"},
                        "matching-3": {},
                        "matching-eth": {"EXCHANGE_MATCHING_INSTRUMENTS": "ETH-USD"}})
    conn = await pg(stack)
    try:
        await wait_placed(conn, {"BTC-USD": "matching-0"})

        async def refused(symbol: str, to: str, code: Code, reason: str) -> None:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await move(stack, symbol, to)
            info = error_info(err.value)
            assert (err.value.code(), info.reason if info else "") == (code, reason), \
                err.value.details()

        await refused("NOPE-USD", "matching-3", Code.NOT_FOUND, "INSTRUMENT_NOT_FOUND")
        await refused("BTC-USD", "matching-9", Code.FAILED_PRECONDITION,
                      "MATCHING_POD_UNKNOWN")
        await refused("BTC-USD", "matching-eth", Code.FAILED_PRECONDITION,
                      "MATCHING_POD_MAY_NOT_OWN")
        await refused("BTC-USD", "", Code.INVALID_ARGUMENT, "TO_INVALID")
        # already there: at once, same epoch
        here = await move(stack, "BTC-USD", "matching-0")
        assert (here.instrument.owner_pod, here.previous_owner) == ("matching-0", "matching-0")
        assert here.instrument.owner_epoch == here.previous_epoch

        admin = ("--admin-key", stack.admin_key, "--json")
        proc = await e2e_helpers.run(stack, "admin", "instrument", "move", "ETH-USD",
                                     "--to", "matching-eth", *admin)
        assert proc.returncode == 0, proc.stderr
        moved = json.loads(proc.stdout)["move"]
        assert moved["instrument"]["owner_pod"] == "matching-eth", moved
        # the old owner does not believe it owns it any more: NOT_FOUND, and commands
        # sent to it straight are refused NOT_OWNER
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await get_book(stack, stack.matching_addr, ETH)
        assert err.value.code() == Code.NOT_FOUND
        command = await matching_new_order(stack, stack.account_ids["alice"],
                                           "straight-to-the-old-owner", price=350_000,
                                           instrument_id=ETH)
        result = await execute_once(stack, stack.matching_addr, command, timeout=5)
        assert result.error.code == mpb.ERROR_CODE_NOT_OWNER, result
        proc = await e2e_helpers.run(stack, "admin", "pods", *admin)
        assert proc.returncode == 0, proc.stderr
        listed = {p["name"]: p for p in json.loads(proc.stdout)["pods"]}
        assert listed["matching-eth"]["owned"] == ["ETH-USD"], listed
        assert listed["matching-eth"]["live"] is True
        assert "ETH-USD" not in listed["matching-0"].get("owned", []), listed
        # the assignment stays: a restart of the target brings it back there
        await stack.stop_service("matching-eth")
        await refused("ETH-USD", "matching-eth", Code.FAILED_PRECONDITION,
                      "MATCHING_POD_NOT_LIVE")
        await wait_placed(conn, {"ETH-USD": "matching-0"})
        await stack.start_service("matching-eth")
        await wait_placed(conn, {"ETH-USD": "matching-eth"})
        audit = await conn.fetchval(
            "SELECT count(*) FROM admin_audit WHERE action = 'MoveInstrument'")
        assert audit >= 2
    finally:
        await conn.close()
