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
from bench.orders import resting_order
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.embedded import free_port
from exchange_dev.stack import Stack, health_check

log = logging.getLogger("bench.loadgen")


class ExchangeTarget:
    """The exchange under load. ``own`` when this tool started the stack:
    then it knows every server process (for CPU) and the database (for the
    durability check)."""

    def __init__(self, *, accounts: int = 50, order_addr: str | None = None,
                 api_keys: list[str] | None = None, keep: bool = False,
                 service_env: dict[str, dict[str, str]] | None = None,
                 order_workers: str = "auto") -> None:
        self.own = order_addr is None
        self.addr = order_addr or ""
        self.keys = list(api_keys or [])
        self.accounts = accounts
        self.keep = keep
        self.service_env = service_env or {}
        self.order_workers = order_workers
        self.stack: Stack | None = None
        self.data_dir: Path | None = None

    async def start(self) -> None:
        if not self.own:
            if not self.keys:
                raise SystemExit("--order-addr needs --api-keys")
            return
        self.data_dir = Path(tempfile.mkdtemp(prefix="bench-loadgen-"))
        keys = {f"bench-{i:03d}": secrets.token_urlsafe(18) for i in range(self.accounts)}
        self.stack = Stack(data_dir=self.data_dir, keys=keys, log_dir=self.data_dir / "logs",
                           service_env=self.service_env, order_workers=self.order_workers)
        t = time.monotonic()
        await self.stack.start()
        self.addr = self.stack.order_addr
        self.keys = list(keys.values())
        log.info("exchange started in %.1f s (order service %s, %d accounts, logs in %s)",
                 time.monotonic() - t, self.addr, len(keys), self.data_dir / "logs")

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
        finally:
            await conn.close()
        found = {r["client_order_id"] for r in rows}
        missing = acked - found
        return {"checked": True, "acknowledged": len(acked), "in_postgres": len(acked & found),
                "missing": len(missing), "missing_examples": sorted(missing)[:5]}

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
