"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
from prometheus_client.parser import text_string_to_metric_families

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange_common.instruments import load_instruments
from exchange_dev.stack import Stack
from order_service.balances_check import check_balances
from order_service.holds import GRANTED, HOLD_SQL, PENDING, hold_columns
from order_service.orders import hold_request
from order_service.validation import ValidOrder


@contextlib.asynccontextmanager
async def matching_stacks(database_url: str, redis_url: str, keys: Mapping[str, str],
                          log_dir: Path, tail_lines: int = 40
                          ) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """``async with matching_stacks(...) as build``: ``await build({"matching": env_a,
    "matching-b": env_b, ...})`` starts a stack on these servers with one matching process
    per entry, in order (the first is the stack's own ``matching``, whatever its key; the
    others are ``add_matching(key)``), each with its env; ``on_prepare`` as the Stack's.
    Every stack built is stopped at the end and its log tails printed (a failed test's
    output shows them)."""
    stacks: list[Stack] = []

    async def build(pods: Mapping[str, Mapping[str, str]],
                    on_prepare: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
                    ) -> Stack:
        envs = list(pods.items())
        stack = Stack(database_url=database_url, redis_url=redis_url, keys=keys,
                      log_dir=log_dir, service_env={"matching": dict(envs[0][1])})
        stack.on_prepare = on_prepare
        for name, env in envs[1:]:
            stack.add_matching(name, env=env)
        stacks.append(stack)
        await stack.start()
        return stack

    try:
        yield build
    finally:
        for stack in stacks:
            await stack.stop()
            print(stack.log_tails(tail_lines))


class Checks:
    """Failures collected along the way, so that one run reports all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect(self, ok: bool, message: str) -> bool:
        if not ok:
            self.failures.append(message)
            print("CHECK FAILED:", message)
        return ok

    def done(self) -> None:
        assert not self.failures, "\n".join(["failed checks:", *self.failures])


def meta(stack: Stack, who: str = "alice", *extra: tuple[str, str]
         ) -> tuple[tuple[str, str], ...]:
    """Call metadata with ``who``'s API key (an account of ``stack``), then ``extra`` pairs."""
    return (("x-api-key", stack.keys[who]), *extra)


# -- the exchange command ---------------------------------------------------------

EXCHANGE = str(Path(sys.executable).parent / "exchange")


def cli_env(stack: Any, key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env["EXCHANGE_ORDER_ADDR"] = stack.order_addr
    env["EXCHANGE_MARKETDATA_ADDR"] = stack.marketdata_addr
    if key is not None:
        env["EXCHANGE_API_KEY"] = key
    return env


async def run(stack: Any, *args: str, key: str | None = None, timeout: float = 60
              ) -> subprocess.CompletedProcess[str]:
    """Run ``exchange ARGS`` (without blocking the event loop)."""
    return await asyncio.to_thread(
        subprocess.run, [EXCHANGE, *args], env=cli_env(stack, key), capture_output=True,
        text=True, timeout=timeout)


async def run_json(stack: Any, *args: str, key: str | None = None) -> Any:
    proc = await run(stack, *args, "--json", key=key)
    assert proc.returncode == 0, f"exchange {' '.join(args)}: {proc.stderr}"
    assert proc.stderr == ""
    return json.loads(proc.stdout)


# -- matching, as an order service calls it ----------------------------------------------------

async def matching_new_order(stack: Stack, account_id: int, client_order_id: str,
                             price: int = 6_900_000, instrument_id: int = 1,
                             side: int = cpb.SIDE_BUY, quantity: int = 100,
                             request_id: int = 1, *,
                             time_in_force: int = cpb.TIME_IN_FORCE_GTC,
                             stop_price: int = 0, expire_ns: int = 0,
                             self_trade_prevention: int = 0) -> mpb.Command:
    """A limit order (by default a GTC buy of 0.01 BTC at ``price`` ticks; a stop-limit
    with ``stop_price``, good till ``expire_ns`` with TIME_IN_FORCE_GTT) as an order
    service sends it to matching: with its funds put on hold first, by the order path's
    own statement (order_service/holds.py)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        spec = next(s for s in await load_instruments(conn) if s.instrument_id == instrument_id)
        fees = (spec.maker_fee_bps, spec.taker_fee_bps)
        order = ValidOrder(side, cpb.ORDER_TYPE_LIMIT, cpb.TIME_IN_FORCE_GTC,  # type: ignore[arg-type]
                           price, quantity, client_order_id, False)
        request = hold_request(account_id, spec, order, fees)
        row = (await conn.fetch(HOLD_SQL, *hold_columns([request])))[0]
        held = row["need"]
        if row["status"] == PENDING:  # sent before: the same hold goes again
            held = await conn.fetchval(
                "SELECT amount FROM order_holds WHERE account_id = $1 AND hold_key = $2",
                account_id, client_order_id)
        else:
            assert row["status"] == GRANTED, f"no hold for {client_order_id}: {dict(row)}"
    finally:
        await conn.close()
    return mpb.Command(request_id=request_id, new_order=mpb.NewOrder(
        instrument_id=instrument_id, account_id=account_id, side=side,  # type: ignore[arg-type]
        type=cpb.ORDER_TYPE_LIMIT, time_in_force=time_in_force,  # type: ignore[arg-type]
        price=price, quantity=quantity, client_order_id=client_order_id, held=held,
        held_at_unix_nanos=time.time_ns(), maker_fee_bps=fees[0], taker_fee_bps=fees[1],
        stop_price=stop_price, expire_time_unix_nanos=expire_ns,
        self_trade_prevention=self_trade_prevention))  # type: ignore[arg-type]


async def orders_named(stack: Stack, prefix: str) -> int:
    """Orders in PostgreSQL whose client_order_id starts with ``prefix``."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM orders WHERE client_order_id LIKE $1", prefix + "%")
    finally:
        await conn.close()


async def execute_once(channel: grpc.aio.Channel, request: mpb.ExecuteRequest, *,
                       metadata: Any = None, timeout: float = 10.0) -> mpb.ExecuteResponse:
    """One ExecuteRequest through matching's Execute session (a channel authenticated as an
    order service, e.g. ``stack.matching_channel()``): every result, by request id."""
    call = mpb_grpc.MatchingServiceStub(channel).Execute(metadata=metadata, timeout=timeout)
    await call.write(request)
    await call.done_writing()
    results = [r async for response in call for r in response.results]
    return mpb.ExecuteResponse(results=sorted(results, key=lambda r: r.request_id))


# -- several processes of one service on one port (workers) -------------------------------------

def own_channel(addr: str) -> grpc.aio.Channel:
    """A channel with a TCP connection of its own (channels in one process share
    connections to the same address unless told not to)."""
    return grpc.aio.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)])


def established_on(pid: int, port: int) -> int:
    """Connections the process ``pid`` has accepted on ``port``."""
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def worker_pids(stack: Stack, service: str) -> list[int]:
    """The workers worker 0 of ``service`` started (its child processes)."""
    return [c.pid for c in psutil.Process(stack.processes[service].pid).children()]


def gone(pid: int) -> bool:
    """The process ``pid`` has exited (or is a zombie waiting for its parent)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- metrics -------------------------------------------------------------------------


class Samples(dict):
    """One scrape of a Prometheus endpoint: (sample name, labels) -> value."""

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels`` (0 when absent: a labelled counter
        appears at its first increment)."""
        return self.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(url: str) -> Samples:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
    samples = Samples()
    for family in text_string_to_metric_families(await asyncio.to_thread(get)):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def wait_for_metric(url: str, name: str, expected: float, timeout: float = 20.0,
                          **labels: str) -> None:
    """Until the scrape of ``url`` shows ``name`` with ``labels`` at ``expected`` (a gauge
    is sampled once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = (await scrape(url)).value(name, **labels)
        if seen == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} stayed at {seen}, not {expected}")
        await asyncio.sleep(0.2)


# -- money ------------------------------------------------------------------------

async def money_problems(conn: asyncpg.Connection) -> list[str]:
    """What breaks the exchange's money invariants now (empty: none): what
    ``exchange admin check-balances`` reports (order_service/balances_check.py)."""
    return (await check_balances(conn)).problems
