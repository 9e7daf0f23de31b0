"""What the load goes to: the exchange (its own Stack, or a running one) or the echo floor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import asyncpg
import grpc
from grpc_health.v1 import health_pb2

from bench.cpu import Group
from bench.loadgen.worker import CODE_NAMES
from bench.orders import BENCH_MARKETS, BTC_USD, Market, resting_order
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common import db
from exchange_dev.embedded import free_port
from exchange_dev.stack import Stack, health_check

log = logging.getLogger("bench.loadgen")

# The instruments the benchmark's own exchange creates at set-up (on top of what every
# exchange seeds, exchange_common.db.DEFAULT_INSTRUMENTS), so that a load can spread over
# four instruments: BTC-USD's terms (tick 0.01, lot 0.0001, quantity 0.0001-1000, min
# notional 1) under other symbols. ``make run`` and the tests' stacks never have them.
BENCH_INSTRUMENTS = [
    (3, "CAP3-USD", "CAP3", "USD", "0.01", "0.0001", "0.0001", "1000", "1"),
    (4, "CAP4-USD", "CAP4", "USD", "0.01", "0.0001", "0.0001", "1000", "1"),
]


def markets_of(spec: str) -> list[Market]:
    """``--instruments``: a count N (the first N of ``BENCH_MARKETS``) or symbols
    (comma-separated, each one of ``BENCH_MARKETS``)."""
    spec = spec.strip()
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n <= len(BENCH_MARKETS):
            raise SystemExit(f"--instruments: 1 to {len(BENCH_MARKETS)} "
                             f"({', '.join(m.symbol for m in BENCH_MARKETS)})")
        return list(BENCH_MARKETS[:n])
    known = {m.symbol: m for m in BENCH_MARKETS}
    out = []
    for symbol in (p.strip() for p in spec.split(",") if p.strip()):
        if symbol not in known:
            raise SystemExit(f"--instruments: unknown instrument {symbol!r} "
                             f"(known: {', '.join(known)})")
        out.append(known[symbol])
    if not out or len({m.symbol for m in out}) != len(out):
        raise SystemExit("--instruments: a count, or distinct symbols")
    return out


def pod_groups(symbols: list[str], pods: int) -> list[list[str]]:
    """The instruments of each of ``pods`` matching pods: dealt in turn (pod i gets
    symbols i, i + pods, ...); every pod gets at least one."""
    if not 1 <= pods <= len(symbols):
        raise SystemExit(f"--matching-pods: 1 to the number of instruments ({len(symbols)})")
    return [symbols[i::pods] for i in range(pods)]


def pod_name(i: int) -> str:
    """The Stack's name of matching pod ``i`` (the first is the Stack's own "matching")."""
    return "matching" if i == 0 else f"matching-{i}"


async def create_bench_instruments(conn: asyncpg.Connection) -> None:
    """The benchmark's extra instruments, created before the services start (so that every
    matching pod sees them, and the accounts are funded in their assets): the Stack's
    ``on_prepare``."""
    await db.seed_instruments(conn, BENCH_INSTRUMENTS)


class ExchangeTarget:
    """The exchange under load. ``own`` when this tool started the stack:
    then it knows every server process (for CPU) and the database (for the
    durability check)."""

    def __init__(self, *, accounts: int = 50, order_addr: str | None = None,
                 api_keys: list[str] | None = None, keep: bool = False,
                 service_env: dict[str, dict[str, str]] | None = None,
                 order_workers: str = "auto", markets: list[Market] | None = None,
                 matching_pods: int = 1) -> None:
        self.own = order_addr is None
        self.addr = order_addr or ""
        self.keys = list(api_keys or [])
        self.accounts = accounts
        self.keep = keep
        self.service_env = service_env or {}
        self.order_workers = order_workers
        self.markets = list(markets or [BTC_USD])
        self.symbols = [m.symbol for m in self.markets]
        # The instruments of each matching pod (pod i: pod_name(i)).
        self.groups = pod_groups(self.symbols, matching_pods)
        self.stack: Stack | None = None
        self.data_dir: Path | None = None

    async def start(self) -> None:
        if not self.own:
            if not self.keys:
                raise SystemExit("--order-addr needs --api-keys")
            return
        self.data_dir = Path(tempfile.mkdtemp(prefix="bench-loadgen-"))
        keys = {f"bench-{i:03d}": secrets.token_urlsafe(18) for i in range(self.accounts)}
        service_env = {k: dict(v) for k, v in self.service_env.items()}
        pods = [self.pod_env(i) for i in range(len(self.groups))]
        service_env["matching"] = {**pods[0], **service_env.get("matching", {})}
        self.stack = Stack(data_dir=self.data_dir, keys=keys,
                           log_dir=self.data_dir / "logs", service_env=service_env,
                           order_workers=self.order_workers)
        self.stack.on_prepare = create_bench_instruments
        for i in range(1, len(self.groups)):
            self.stack.add_matching(pod_name(i), env={
                **self.service_env.get("matching", {}), **pods[i]})
        t = time.monotonic()
        await self.stack.start()
        self.addr = self.stack.order_addr
        self.keys = list(keys.values())
        log.info("exchange started in %.1f s (order service %s, %d accounts, matching pods "
                 "%s, logs in %s)", time.monotonic() - t, self.addr, len(keys),
                 "; ".join(f"{pod_name(i)}: {','.join(g)}" for i, g in enumerate(self.groups)),
                 self.data_dir / "logs")

    def pod_env(self, i: int) -> dict[str, str]:
        """Matching pod ``i``'s settings: it may own, and is the home of, its group only
        (EXCHANGE_MATCHING_HOME and EXCHANGE_MATCHING_NAME are ignored by a matching
        service that predates them)."""
        group = ",".join(self.groups[i])
        return {"EXCHANGE_MATCHING_INSTRUMENTS": group, "EXCHANGE_MATCHING_HOME": group,
                "EXCHANGE_MATCHING_NAME": pod_name(i)}

    async def stop(self) -> None:
        if self.stack is not None:
            await self.stack.stop()
            self.stack = None
        if self.data_dir is not None and not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def cpu_groups(self) -> list[Group]:
        if self.stack is None:
            return []
        # With their workers (EXCHANGE_ORDER_WORKERS, EXCHANGE_MARKETDATA_WORKERS).
        # Every matching pod is a group of its own ("matching", "matching-1", ...).
        groups = [Group(name, [proc.pid], children=True)
                  for name, proc in self.stack.processes.items()]
        if self.stack.pg is not None and self.stack.pg.pid:
            groups.append(Group("postgres", [self.stack.pg.pid], children=True))
        if self.stack.redis is not None and self.stack.redis.pid:
            groups.append(Group("redis", [self.stack.redis.pid]))
        return groups

    def check_alive(self) -> None:
        if self.stack is not None:
            dead = self.stack.exited()
            if dead:
                raise RuntimeError(f"exchange processes died: {dead}")

    async def verify_durable(self, tag: str, acked: set[str]) -> dict:
        """Every acknowledged order of run ``tag`` is in PostgreSQL's orders table."""
        if self.stack is None or not acked:
            return {"checked": False}
        conn = await asyncpg.connect(self.stack.database_url)
        try:
            rows = await conn.fetch(
                "SELECT client_order_id FROM orders WHERE client_order_id LIKE $1",
                tag + "-%")
            per_instrument = await conn.fetch(
                """SELECT i.symbol, count(*) AS orders FROM orders o
                     JOIN instruments i USING (instrument_id)
                    WHERE o.client_order_id LIKE $1 GROUP BY i.symbol""", tag + "-%")
            owners = await conn.fetch(
                """SELECT i.symbol, s.owner_address FROM instrument_state s
                     JOIN instruments i USING (instrument_id) WHERE i.symbol = ANY($1)""",
                self.symbols)
        finally:
            await conn.close()
        found = {r["client_order_id"] for r in rows}
        missing = acked - found
        by_addr = {self.stack.addr(pod_name(i)): pod_name(i) for i in range(len(self.groups))}
        return {"checked": True, "acknowledged": len(acked), "in_postgres": len(acked & found),
                "missing": len(missing), "missing_examples": sorted(missing)[:5],
                # Orders of the run in PostgreSQL per instrument, and the matching pod
                # that owns each instrument (its advertise address) when the run ended.
                "orders_per_instrument": {r["symbol"]: r["orders"] for r in per_instrument},
                "owner_pod": {r["symbol"]: by_addr.get(r["owner_address"],
                                                       r["owner_address"]) for r in owners},
                "pod_instruments": {pod_name(i): g for i, g in enumerate(self.groups)}}

    async def prefill(self, depth: int, seed: int = 7, batch: int = 500,
                      window: int = 8) -> dict:
        """``depth`` resting limit orders per side, placed through OrderEntry
        sessions (``batch`` orders per message) before the timed run; falls
        back to unary calls when the server has no OrderEntry."""
        if depth <= 0:
            return {}
        rng = random.Random(seed)
        total = 2 * depth
        orders = [resting_order(rng, cpb.SIDE_BUY if i % 2 == 0 else cpb.SIDE_SELL,
                                f"prefill-{seed}-{i}") for i in range(total)]
        t = time.monotonic()
        async with grpc.aio.insecure_channel(self.addr) as channel:
            stub = opb_grpc.OrderServiceStub(channel)
            sessions = min(4, len(self.keys))
            share = [orders[i::sessions] for i in range(sessions)]
            results = await asyncio.gather(*(
                _prefill_session(stub, self.keys[i], share[i], batch, window)
                for i in range(sessions)))
        ok = sum(r[0] for r in results)
        errors: dict[str, int] = {}
        for r in results:
            for k, v in r[1].items():
                errors[k] = errors.get(k, 0) + v
        seconds = time.monotonic() - t
        log.info("prefilled %d resting orders (%d per side) in %.1f s (%.0f/s), errors %s",
                 ok, depth, seconds, ok / seconds if seconds else 0, errors or "none")
        return {"depth_per_side": depth, "placed": ok, "seconds": round(seconds, 2),
                "errors": errors}


async def _prefill_session(stub, key: str, orders: list[opb.CreateOrderRequest], batch: int,
                           window: int) -> tuple[int, dict[str, int]]:
    meta = (("x-api-key", key),)
    call = stub.OrderEntry(metadata=meta)
    chunks = [orders[i:i + batch] for i in range(0, len(orders), batch)]
    pending = 0
    ok, errors = 0, dict[str, int]()
    sent = 0
    try:
        while sent < len(chunks) or pending:
            while sent < len(chunks) and pending < window * batch:
                await call.write(opb.OrderEntryRequest(
                    commands=[opb.OrderEntryCommand(create=o) for o in chunks[sent]]))
                pending += len(chunks[sent])
                sent += 1
            if sent == len(chunks):
                with contextlib.suppress(Exception):
                    await call.done_writing()
            response = await call.read()
            if response is grpc.aio.EOF:
                break
            for ev in response.events:
                pending -= 1
                if ev.HasField("error"):
                    name = CODE_NAMES.get(ev.error.code, str(ev.error.code))
                    errors[name] = errors.get(name, 0) + 1
                else:
                    ok += 1
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
        # No order-entry session on this server: one unary call at a time per
        # order, many in flight.
        return await _prefill_unary(stub, meta, orders)
    return ok, errors


async def _prefill_unary(stub, meta, orders) -> tuple[int, dict[str, int]]:
    sem = asyncio.Semaphore(200)
    ok, errors = 0, dict[str, int]()

    async def one(o):
        nonlocal ok
        async with sem:
            try:
                await stub.CreateOrder(o, metadata=meta, timeout=30)
                ok += 1
            except grpc.aio.AioRpcError as err:
                errors[err.code().name] = errors.get(err.code().name, 0) + 1

    await asyncio.gather(*(one(o) for o in orders))
    return ok, errors


class EchoTarget:
    """``bench/echo.py`` as its own process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.addr = ""
        self.keys = ["echo-key"]
        self.own = True
        self.log_file: IO[bytes] | None = None

    async def start(self) -> None:
        self.addr = f"127.0.0.1:{free_port()}"
        log_file = self.log_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.echo", "--listen", self.addr],
            stdout=log_file, stderr=subprocess.STDOUT,
            cwd=str(Path(__file__).resolve().parents[2]),
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                log_file.seek(0)
                raise RuntimeError("echo server exited: "
                                   + log_file.read().decode(errors="replace")[-2000:])
            if await health_check(self.addr) == health_pb2.HealthCheckResponse.SERVING:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("echo server not SERVING after 30 s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log_file is not None:
            self.log_file.close()

    def cpu_groups(self) -> list[Group]:
        return [Group("echo", [self.proc.pid])] if self.proc is not None else []

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"echo server died with code {self.proc.returncode}")

    async def verify_durable(self, tag: str, acked: set[str]) -> dict:
        return {"checked": False}
