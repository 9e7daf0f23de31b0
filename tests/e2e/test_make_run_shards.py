"""``make run SHARDS=3 STANDBYS=1`` as a newcomer runs it: ``exchange-dev --shards 3
--standbys 1`` as a process (on the test's PostgreSQL and Redis, every port free), read
through what it prints.

- Each group pod owns exactly its group (the banner's table, and PostgreSQL: owner
  address, epoch, the ownership lock held) and the standby owns nothing; with two
  instruments seeded, a third (SOL-USD) was created for the third shard.
- Orders on instruments of the three shards go through the order service.
- ``kill -9`` of matching-1 (the pid the banner prints): the standby matching-3 takes
  ETH-USD (the admin API shows it as the owner; the change is logged), an ETH-USD order
  is acknowledged, exchange-dev keeps running and starts matching-1 again after its
  back-off (a new pid, logged with the restart count).
- Ctrl-C stops it all with exit 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import psutil
import pytest
from e2e_helpers import gone, wait_for

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.embedded import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KEY = "topology-key-alice-0123456789"
ADMIN_KEY = "exa_00000000_topology-admin-key-0123456789"
POD_ROW = re.compile(r"^\s+(matching-\d+)\s+(\S+:\d+)\s+(\d+)\s+(group \d+|standby)\s+(\S+)"
                     r"\s+(.*)$")
# While matching-1 is dead, long enough to see the standby own its group.
RESTART_BACKOFF = 4


class DevRun:
    """An ``exchange-dev`` process and its output (a file, read as it grows)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "exchange_dev", *args],
                                         env=env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=REPO)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        """The first match of ``pattern`` in the output (fails if exchange-dev exits or
        it does not come within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text(), re.MULTILINE)
            if found:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"exchange-dev exited ({self.proc.returncode}) before "
                            f"{pattern!r}:\n{self.text()[-6000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} within {timeout}s:\n{self.text()[-6000:]}")
            time.sleep(0.1)

    def banner(self) -> str:
        self.wait_for(r"Place a first order(.|\n)*^={78}\s*$")
        return self.text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def dev_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """exchange-dev's environment: the test's servers, free ports, fixed keys."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EXCHANGE_") or k == "EXCHANGE_LOG_LEVEL"}
    env.update({
        "EXCHANGE_DATA_DIR": str(tmp_path / "data"),
        "EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_REDIS_URL": redis_url,
        "EXCHANGE_DEV_API_KEYS": f"alice={KEY}", "EXCHANGE_DEV_ADMIN_KEY": ADMIN_KEY,
        "EXCHANGE_DEV_RESTART_BACKOFF": str(RESTART_BACKOFF),
    })
    for name in ("ORDER_LISTEN", "MATCHING_LISTEN", "MARKETDATA_LISTEN",
                 "ORDER_METRICS_LISTEN", "MATCHING_METRICS_LISTEN",
                 "MARKETDATA_METRICS_LISTEN"):
        env[f"EXCHANGE_{name}"] = f"127.0.0.1:{free_port()}"
    return env


@pytest.fixture
def dev_run(dev_env: dict[str, str], tmp_path: Path) -> Iterator[DevRun]:
    run = DevRun(["--shards", "3", "--standbys", "1", "--order-workers", "1",
                  "--md-workers", "2"], dev_env, tmp_path / "exchange-dev.log")
    try:
        yield run
    finally:
        run.stop()
        print(run.text()[-8000:])


async def owners(database_url: str) -> dict[str, tuple[str, int, bool]]:
    """symbol -> (owner address, epoch, whether a session holds its ownership lock)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT i.symbol, s.owner_address, s.owner_epoch,
                      EXISTS (SELECT 1 FROM pg_locks l
                               WHERE l.locktype = 'advisory' AND l.granted
                                 AND l.objid::bigint = i.instrument_id) AS held
                 FROM instruments i JOIN instrument_state s USING (instrument_id)""")
    finally:
        await conn.close()
    return {r["symbol"]: (r["owner_address"], r["owner_epoch"], r["held"]) for r in rows}


async def place(stub: opb_grpc.OrderServiceStub, symbol: str, coid: str,
                timeout: float = 30) -> opb.CreateOrderResponse:
    """A buy far below the market, retried with the same client_order_id while the
    instrument changes hands (UNAVAILABLE), as a client would."""
    request = opb.CreateOrderRequest(instrument=symbol, side=cpb.SIDE_BUY,
                                     type=cpb.ORDER_TYPE_LIMIT, price="1", quantity="1",
                                     client_order_id=coid)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await stub.CreateOrder(request, metadata=(("x-api-key", KEY),),
                                          timeout=10)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def test_three_shards_a_standby_and_a_killed_shard(dev_run: DevRun,
                                                         dev_env: dict[str, str],
                                                         database_url: str) -> None:
    text = dev_run.banner()
    pods = {m[1]: m for m in (POD_ROW.match(line) for line in text.splitlines()) if m}
    assert list(pods) == ["matching-0", "matching-1", "matching-2", "matching-3"], text
    addr = {name: m[2] for name, m in pods.items()}
    pid = {name: int(m[3]) for name, m in pods.items()}
    assert addr["matching-0"] == dev_env["EXCHANGE_MATCHING_LISTEN"]
    assert [pods[n][4] for n in pods] == ["group 0", "group 1", "group 2", "standby"]
    assert [pods[n][5] for n in pods] == ["BTC-USD", "ETH-USD", "SOL-USD",
                                          "BTC-USD,ETH-USD,SOL-USD"]
    assert [pods[n][6] for n in pods] == ["BTC-USD (1)", "ETH-USD (1)", "SOL-USD (1)", "-"]
    assert "created instrument SOL-USD so that each of the 3 shards owns one" in text
    assert f"kill -9 {pid['matching-1']}" in text
    # Each group pod owns exactly its group; nobody else owns anything.
    group = {"BTC-USD": "matching-0", "ETH-USD": "matching-1", "SOL-USD": "matching-2"}
    assert await owners(database_url) == {s: (addr[p], 1, True) for s, p in group.items()}
    # Each pod is a matching process of exchange-dev; market data has two processes.
    children = psutil.Process(dev_run.proc.pid).children()
    assert {c.pid for c in children} >= set(pid.values())
    md = next(c for c in children if "marketdata_service" in c.cmdline())
    assert len(md.children()) == 1  # worker 0 started worker 1

    channel = grpc.aio.insecure_channel(dev_env["EXCHANGE_ORDER_LISTEN"])
    try:
        stub = opb_grpc.OrderServiceStub(channel)
        admin = apb_grpc.AdminServiceStub(channel)
        for symbol in group:
            placed = await place(stub, symbol, f"before-{symbol}")
            assert placed.order.instrument == symbol and placed.order.order_id

        os.kill(pid["matching-1"], signal.SIGKILL)
        dev_run.wait_for(r"ETH-USD: matching-1 -> matching-3 \(epoch 2\)", 30)
        placed = await place(stub, "ETH-USD", "after-kill")
        assert placed.order.instrument == "ETH-USD" and placed.order.order_id
        listed = await admin.ListInstruments(apb.ListInstrumentsRequest(),
                                             metadata=(("x-admin-key", ADMIN_KEY),),
                                             timeout=10)
        shown = {i.symbol: (i.owner, i.owner_epoch) for i in listed.instruments}
        # The standby owns ETH-USD now (unless matching-1, restarted meanwhile, took
        # its home group back: then the epoch moved on again).
        assert shown["ETH-USD"] == (addr["matching-3"], 2) or shown["ETH-USD"][1] > 2
        assert shown["BTC-USD"] == (addr["matching-0"], 1)
        assert shown["SOL-USD"] == (addr["matching-2"], 1)
        for symbol in ("BTC-USD", "SOL-USD"):
            placed = await place(stub, symbol, f"after-kill-{symbol}")
            assert placed.order.order_id

        # matching-1 comes back after its back-off; exchange-dev never stopped.
        restarted = dev_run.wait_for(r"matching-1 restarted \(restart 1\): pid (\d+)", 60)
        new_pid = int(restarted[1])
        assert new_pid != pid["matching-1"] and psutil.pid_exists(new_pid)
        assert f"matching-1 (pid {pid['matching-1']}) died (killed by SIGKILL)" \
            in dev_run.text()
        assert dev_run.proc.poll() is None
        placed = await place(stub, "ETH-USD", "after-restart")
        assert placed.order.order_id
    finally:
        await channel.close()

    everyone = psutil.Process(dev_run.proc.pid).children(recursive=True)
    dev_run.proc.send_signal(signal.SIGINT)
    assert dev_run.proc.wait(60) == 0, dev_run.text()[-3000:]
    await wait_for(lambda: all(gone(c.pid) for c in everyone), "every child to exit", 10)
