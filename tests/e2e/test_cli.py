"""The ``exchange`` command against the running stack (three services as real
processes, real PostgreSQL and Redis): alice and bob trade through the CLI,
and every view of the result (order get, order list, fills, book, trades,
the live book) agrees."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from e2e_helpers import EXCHANGE, cli_env, run, run_json

pytestmark = pytest.mark.e2e

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 20.0) -> T:
    """``check()`` once it stops failing its assertions (market data is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def levels(side: list[dict[str, Any]]) -> list[tuple[Decimal, Decimal, int]]:
    return [(Decimal(lv["price"]), Decimal(lv["quantity"]), lv["order_count"]) for lv in side]


def D(text: str) -> Decimal:  # noqa: N802
    return Decimal(text)


async def test_trade_through_the_cli(stack):
    alice, bob = stack.keys["alice"], stack.keys["bob"]

    instruments = await run_json(stack, "instruments")
    btc = next(i for i in instruments["instruments"] if i["symbol"] == "BTC-USD")
    assert D(btc["tick_size"]) == D("0.01") and D(btc["lot_size"]) == D("0.0001")

    # alice rests a sell; the same client order id again is the same order.
    placed = await run_json(stack, "order", "create", "BTC-USD", "sell", "0.5",
                            "--price", "70000", "--client-order-id", "alice-sell-1", key=alice)
    sell = placed["order"]
    sell_id = sell["order_id"]
    assert sell["state"] == "ORDER_STATE_NEW" and sell["side"] == "SIDE_SELL"
    assert sell["type"] == "ORDER_TYPE_LIMIT" and sell["client_order_id"] == "alice-sell-1"
    assert D(sell["price"]) == D("70000") and D(sell["remaining_quantity"]) == D("0.5")
    assert placed["fills"] == []
    again = await run_json(stack, "order", "create", "BTC-USD", "sell", "0.5",
                           "--price", "70000", "--client-order-id", "alice-sell-1", key=alice)
    assert again["order"]["order_id"] == sell_id

    async def resting() -> None:
        book = await run_json(stack, "book", "BTC-USD")
        assert levels(book["asks"]) == [(D("70000"), D("0.5"), 1)] and book["bids"] == []

    await eventually(resting)

    # bob takes 0.2 with a limit order (key from --api-key), then 0.1 at market (key from env).
    proc = await run(stack, "--api-key", bob, "order", "create", "BTC-USD", "buy", "0.2",
                     "--price", "70000", "--tif", "ioc", "--json")
    assert proc.returncode == 0, proc.stderr
    limit_buy = json.loads(proc.stdout)
    assert limit_buy["order"]["state"] == "ORDER_STATE_FILLED"
    assert D(limit_buy["order"]["filled_quantity"]) == D("0.2")
    [taker_fill] = limit_buy["fills"]
    assert taker_fill["liquidity"] == "LIQUIDITY_TAKER" and taker_fill["side"] == "SIDE_BUY"
    assert D(taker_fill["price"]) == D("70000") and D(taker_fill["quantity"]) == D("0.2")

    market_buy = await run_json(stack, "order", "create", "BTC-USD", "buy", "0.1",
                                "--type", "market", key=bob)
    assert market_buy["order"]["type"] == "ORDER_TYPE_MARKET"
    assert market_buy["order"]["state"] == "ORDER_STATE_FILLED"
    assert D(market_buy["order"]["average_fill_price"]) == D("70000")
    trade_ids = {taker_fill["trade_id"], market_buy["fills"][0]["trade_id"]}
    assert len(trade_ids) == 2

    # order get: by id and by client order id, JSON and table.
    got = await run_json(stack, "order", "get", sell_id, key=alice)
    order = got["order"]
    assert order["state"] == "ORDER_STATE_PARTIALLY_FILLED"
    assert D(order["filled_quantity"]) == D("0.3") and D(order["remaining_quantity"]) == D("0.2")
    assert D(order["average_fill_price"]) == D("70000")
    assert {f["trade_id"] for f in got["fills"]} == trade_ids
    assert all(f["liquidity"] == "LIQUIDITY_MAKER" for f in got["fills"])
    by_client_id = await run_json(stack, "order", "get", "--client-order-id", "alice-sell-1",
                                  key=alice)
    assert by_client_id["order"] == order
    proc = await run(stack, "order", "get", sell_id, key=alice)
    assert proc.returncode == 0 and sell_id in proc.stdout
    assert "partially_filled" in proc.stdout and "70000" in proc.stdout

    # order list agrees with order get.
    listed = await run_json(stack, "order", "list", key=alice)
    assert [o["order_id"] for o in listed["orders"]] == [sell_id]
    assert listed["orders"][0]["state"] == order["state"]
    assert listed["orders"][0]["filled_quantity"] == order["filled_quantity"]
    open_ = await run_json(stack, "order", "list", "--status", "open", "--instrument",
                           "BTC-USD", key=alice)
    assert [o["order_id"] for o in open_["orders"]] == [sell_id]
    assert (await run_json(stack, "order", "list", "--status", "closed", key=alice)
            )["orders"] == []
    bob_closed = await run_json(stack, "order", "list", "--status", "closed", key=bob)
    assert [o["order_id"] for o in bob_closed["orders"]] == [
        market_buy["order"]["order_id"], limit_buy["order"]["order_id"]]  # newest first
    one = await run_json(stack, "order", "list", "--limit", "1", key=bob)
    assert [o["order_id"] for o in one["orders"]] == [market_buy["order"]["order_id"]]

    # fills: alice made, bob took, the same trades.
    alice_fills = (await run_json(stack, "fills", key=alice))["fills"]
    bob_fills = (await run_json(stack, "fills", "--instrument", "BTC-USD", key=bob))["fills"]
    assert {f["trade_id"] for f in alice_fills} == {f["trade_id"] for f in bob_fills} == trade_ids
    assert {f["order_id"] for f in alice_fills} == {sell_id}
    assert all(f["side"] == "SIDE_SELL" and f["liquidity"] == "LIQUIDITY_MAKER"
               for f in alice_fills)
    assert sorted(D(f["quantity"]) for f in alice_fills) == [D("0.1"), D("0.2")]
    only_limit = (await run_json(stack, "fills", "--order-id", limit_buy["order"]["order_id"],
                                 key=bob))["fills"]
    assert [f["trade_id"] for f in only_limit] == [taker_fill["trade_id"]]
    proc = await run(stack, "fills", key=alice)
    assert proc.returncode == 0 and all(t in proc.stdout for t in trade_ids)

    # market data agrees: what is left of the sell, and the two trades.
    async def book_after() -> dict[str, Any]:
        book = await run_json(stack, "book", "BTC-USD", "--depth", "10")
        assert levels(book["asks"]) == [(D("70000"), D("0.2"), 1)] and book["bids"] == []
        return book

    book = await eventually(book_after)
    assert book["sequence"] > 0

    async def trades_after() -> list[dict[str, Any]]:
        trades = (await run_json(stack, "trades", "BTC-USD", "--limit", "10"))["trades"]
        assert {t["trade_id"] for t in trades} == trade_ids
        return trades

    trades = await eventually(trades_after)
    assert all(t["taker_side"] == "SIDE_BUY" and D(t["price"]) == D("70000") for t in trades)
    assert [D(t["quantity"]) for t in trades] == [D("0.1"), D("0.2")]  # newest first
    proc = await run(stack, "book", "BTC-USD")
    assert proc.returncode == 0 and "70000.00" in proc.stdout and "0.2000" in proc.stdout
    proc = await run(stack, "trades", "BTC-USD")
    assert proc.returncode == 0 and all(t in proc.stdout for t in trade_ids)

    # cancel what is left, by client order id.
    cancelled = await run_json(stack, "order", "cancel", "--client-order-id", "alice-sell-1",
                               key=alice)
    assert cancelled["order"]["state"] == "ORDER_STATE_CANCELLED"
    assert D(cancelled["order"]["filled_quantity"]) == D("0.3")

    async def empty() -> None:
        book = await run_json(stack, "book", "BTC-USD")
        assert book["asks"] == [] and book["bids"] == []

    await eventually(empty)


async def test_errors_are_one_line_with_exit_1(stack):
    alice = stack.keys["alice"]
    proc = await run(stack, "order", "create", "BTC-USD", "buy", "0.01", "--price",
                     "70000.001", key=alice)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: INVALID_ARGUMENT (PRICE_OFF_TICK) price: ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert (await run_json(stack, "order", "list", key=alice))["orders"] == []

    proc = await run(stack, "order", "create", "BTC-USD", "buy", "0.00001", "--price", "70000",
                     key=alice)
    assert proc.returncode == 1 and proc.stderr.startswith("error: INVALID_ARGUMENT (")
    assert "quantity" in proc.stderr

    proc = await run(stack, "order", "list")
    assert proc.returncode == 1 and proc.stderr.startswith("error: no API key")
    assert "EXCHANGE_API_KEY" in proc.stderr

    proc = await run(stack, "order", "list", key="not-a-key")
    assert proc.returncode == 1 and proc.stderr.startswith("error: UNAUTHENTICATED")

    proc = await run(stack, "order", "get", "123456789", key=alice)
    assert proc.returncode == 1 and proc.stderr.startswith("error: NOT_FOUND")
    assert proc.stderr.count("\n") == 1


class Terminal:
    """A process on a pseudo-terminal (so rich draws its live view)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 160, 0, 0))
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                     env=env | {"TERM": "xterm-256color"})
        os.close(slave)
        self.output = b""

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return self.proc.poll() is None
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the process closed the terminal
            chunk = b""
        self.output += chunk
        return bool(chunk) or self.proc.poll() is None

    def expect(self, *texts: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(t.encode() in self.output for t in texts):
            if time.monotonic() > deadline or not self._read(0.1):
                raise AssertionError(f"{texts} not shown; output:\n{self.text[-3000:]}")

    def interrupt(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        while self._read(0.1) and time.monotonic() < deadline:
            pass
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        finally:
            os.close(self.master)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


async def test_book_watch(stack):
    alice, bob = stack.keys["alice"], stack.keys["bob"]
    await run_json(stack, "order", "create", "BTC-USD", "sell", "0.5", "--price", "70000",
                   key=alice)
    await run_json(stack, "order", "create", "BTC-USD", "buy", "0.25", "--price", "69000",
                   key=alice)

    async def both_sides() -> dict[str, Any]:
        book = await run_json(stack, "book", "BTC-USD")
        assert levels(book["asks"]) == [(D("70000"), D("0.5"), 1)]
        assert levels(book["bids"]) == [(D("69000"), D("0.25"), 1)]
        return book

    book = await eventually(both_sides)

    # Without a terminal: runs for --duration, leaves the last frame.
    proc = await run(stack, "book", "BTC-USD", "--watch", "--duration", "2")
    assert proc.returncode == 0, proc.stderr
    for text in ("BTC-USD", "70000.00", "0.5000", "69000.00", "0.2500", "spread 1000.00",
                 f"sequence {book['sequence']}"):
        assert text in proc.stdout, (text, proc.stdout)

    # --json: one book state per update, starting from the snapshot.
    proc = await run(stack, "book", "BTC-USD", "--watch", "--duration", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout.splitlines()[0])
    assert first["sequence"] == book["sequence"]
    assert levels(first["asks"]) == levels(book["asks"])
    assert levels(first["bids"]) == levels(book["bids"])

    # On a terminal: the live view follows a trade; Ctrl-C exits cleanly.
    term = Terminal([EXCHANGE, "book", "BTC-USD", "--watch", "--depth", "5"], cli_env(stack))
    try:
        await asyncio.to_thread(term.expect, "70000.00", "69000.00", "no trades yet")
        await run_json(stack, "order", "create", "BTC-USD", "buy", "0.1", "--type", "market",
                       key=bob)
        # the ask shrinks to 0.4 and the trade shows in the tape
        await asyncio.to_thread(term.expect, "0.4000", "0.1000")
        code = await asyncio.to_thread(term.interrupt)
    finally:
        term.kill()
    assert code == 0, term.text[-3000:]
    assert "Traceback" not in term.text and "KeyboardInterrupt" not in term.text


async def test_trades_follow(stack):
    alice, bob = stack.keys["alice"], stack.keys["bob"]
    await run_json(stack, "order", "create", "BTC-USD", "sell", "1", "--price", "70000",
                   key=alice)
    await run_json(stack, "order", "create", "BTC-USD", "buy", "0.1", "--type", "market",
                   key=bob)

    async def one_trade() -> None:
        trades = (await run_json(stack, "trades", "BTC-USD"))["trades"]
        assert len(trades) == 1

    await eventually(one_trade)
    follower = await asyncio.to_thread(
        subprocess.Popen, [EXCHANGE, "trades", "BTC-USD", "--follow", "--json",
                           "--duration", "8"],
        env=cli_env(stack), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.sleep(2.5)  # started and subscribed
        second = await run_json(stack, "order", "create", "BTC-USD", "buy", "0.2",
                                "--type", "market", key=bob)
        out, err = await asyncio.to_thread(follower.communicate, timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    trades = [json.loads(line) for line in out.splitlines()]
    assert [D(t["quantity"]) for t in trades] == [D("0.1"), D("0.2")]  # listed, then live
    assert trades[1]["trade_id"] == second["fills"][0]["trade_id"]
    assert trades[0]["sequence"] < trades[1]["sequence"]
