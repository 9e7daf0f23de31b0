"""``exchange top`` in a real terminal (tmux) against the real services.

The stack's three services serve their metrics (``EXCHANGE_METRICS_LISTEN``); orders go
through the real order service, and the view is read off the tmux pane as a person would
read it: the instrument with the orders accepted (the exact count, and a rate above 0
while orders arrive), its owner (the matching pod's endpoint) and epoch, a rejection by
its reason. Then the market-data service is killed and the view must say so and go on;
Ctrl-C must end it with status 0. Every wait polls the screen against a deadline.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from e2e_helpers import EXCHANGE, cli_env, meta
from top_screen import after, cells

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

SYMBOL = "BTC-USD"
BEFORE = 3  # orders placed before the view starts


# The command under a shell that writes its exit status and its stderr to files when it
# ends (tmux does not always collect a pane's exit status). The shell catches SIGINT with
# a trap, so that the command gets Ctrl-C as on a terminal (a caught signal is reset to
# its default at exec; an ignored one would stay ignored) and the shell still writes the
# status after it.
RUN = 'status=$1 err=$2; shift 2; trap : INT; "$@" 2>"$err"; echo $? >"$status"'


class Tmux:
    """A tmux server of the test's own (its socket in ``files``) with one 160x50 session
    running ``args``."""

    def __init__(self, args: list[str], env: dict[str, str], files: Path) -> None:
        self.socket = str(files / "tmux.sock")
        self.env = env
        self.status, self.stderr = files / "status", files / "stderr"
        self.tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "50", "--",
                  "sh", "-c", RUN, "sh", str(self.status), str(self.stderr), *args)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", *args],
                              env=self.env, capture_output=True, text=True, timeout=30)

    def tmux(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, f"tmux {args}: {proc.stderr}"
        return proc.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top")

    def ended(self) -> bool:
        """The session is gone (its command, and the shell around it, ended)."""
        return self.run("has-session", "-t", "top").returncode != 0

    async def wait_for(self, check: Callable[[str], bool], what: str,
                       timeout: float = 30.0) -> str:
        """The screen, once ``check`` accepts it."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed {what}:\n{screen}")
            await asyncio.sleep(0.2)

    def close(self) -> None:
        self.run("kill-server")



def instrument_row(screen: str) -> list[str] | None:
    """Instrument, accepted/s, cancelled/s, accepted, owner, epoch, queue, commands/s,
    trades/s, publish backlog."""
    for line in screen.splitlines():
        found = cells(line)
        if len(found) == 10 and found[0] == SYMBOL:
            return found
    return None



def order(client_order_id: str, price: str = "60000.00") -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(
        instrument=SYMBOL, side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
        time_in_force=cpb.TIME_IN_FORCE_GTC, price=price, quantity="0.0100",
        client_order_id=client_order_id)


async def test_top_in_a_terminal(stack: Stack, tmp_path: Path) -> None:
    urls = {name: stack.metrics_url(name) for name in ("order", "matching", "marketdata")}
    owner = urls["matching"].removeprefix("http://").removesuffix("/metrics")
    marketdata = urls["marketdata"].removeprefix("http://").removesuffix("/metrics")

    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        orders = opb_grpc.OrderServiceStub(channel)
        for i in range(BEFORE):
            await orders.CreateOrder(order(f"top-{i}"), metadata=meta(stack), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError):  # off the tick: refused
            await orders.CreateOrder(order("top-bad", "60000.001"), metadata=meta(stack),
                                     timeout=10)

        term = Tmux([EXCHANGE, "top", "--order", urls["order"], "--matching",
                     urls["matching"], "--marketdata", urls["marketdata"],
                     "--interval", "0.5"], cli_env(stack), tmp_path)
        try:
            await _trade_and_watch(term, orders, stack, owner)
            await _lose_marketdata_and_exit(term, stack, owner, marketdata)
        finally:
            term.close()


async def _trade_and_watch(term: Tmux, orders: opb_grpc.OrderServiceStub, stack: Stack,
                           owner: str) -> None:
    def accepted(count: int) -> Callable[[str], bool]:
        def check(screen: str) -> bool:
            row = instrument_row(screen)
            return row is not None and row[3] == str(count)
        return check

    screen = await term.wait_for(accepted(BEFORE), f"{BEFORE} orders accepted")
    row = instrument_row(screen)
    assert row is not None and row[4:6] == [owner, "1"]  # the owner, at epoch 1
    assert "instruments without owner: 0" in screen
    assert after(screen, "PRICE_OFF_TICK", 2)[1:] == ["1"]  # /s, total

    # Orders arriving while the view runs: a rate above 0, then the exact total.
    placed, deadline = BEFORE, time.monotonic() + 30
    while True:
        await orders.CreateOrder(order(f"top-{placed}"), metadata=meta(stack), timeout=10)
        placed += 1
        row = instrument_row(term.screen())
        if row is not None and row[1] != "–" and float(row[1]) > 0:
            break
        assert time.monotonic() < deadline, f"no rate above 0:\n{term.screen()}"
        await asyncio.sleep(0.1)
    await term.wait_for(accepted(placed), f"{placed} orders accepted")


async def _lose_marketdata_and_exit(term: Tmux, stack: Stack, owner: str,
                                    marketdata: str) -> None:
    # One service dies: the view says so, and goes on.
    stack.kill_service("marketdata")

    def marketdata_down(screen: str) -> bool:
        return ["marketdata", marketdata, "DOWN (connection refused)"] in [
            cells(line)[:3] for line in screen.splitlines()] and "marketdata: DOWN" in screen

    screen = await term.wait_for(marketdata_down, "the market-data endpoint down")
    assert "1 of 3 endpoints down" in screen
    row = instrument_row(screen)
    assert row is not None and row[4] == owner

    # Ctrl-C: the view ends, and its session with it, with status 0 and nothing on stderr.
    term.tmux("send-keys", "-t", "top", "C-c")
    deadline = time.monotonic() + 30
    while not term.ended():
        assert time.monotonic() < deadline, f"still running after Ctrl-C:\n{term.screen()}"
        await asyncio.sleep(0.2)
    assert term.status.read_text() == "0\n", term.stderr.read_text()
    assert term.stderr.read_text() == ""
