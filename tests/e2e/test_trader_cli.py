"""The ``exchange`` command's trader features against the running stack: stops, good-till-
time and self-trade prevention on ``order create``, ``order amend``, ``order cancel-all``,
and ``exchange session`` fed from stdin (answers as lines, JSON lines, the end of input a
goodbye, bad lines reported without ending the session)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from decimal import Decimal

import pytest
from e2e_helpers import EXCHANGE, cli_env, run, run_json
from trader_helpers import Traders, held

from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

D = Decimal


@pytest.fixture
async def traders(module_stack: Stack):
    t = Traders(module_stack)
    yield t
    await t.close()


async def session(stack: Stack, key: str, text: str, *args: str
                  ) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [EXCHANGE, "session", *args], input=text, env=cli_env(stack, key),
        capture_output=True, text=True, timeout=120)


async def test_create_amend_and_cancel_all(traders: Traders, module_stack: Stack) -> None:
    _, alice = await traders.new()
    _, bob = await traders.new()
    key = alice.api_key
    assert key is not None
    await bob.create_order("BTC-USD", "sell", "0.01", price="66000")
    await alice.create_order("BTC-USD", "buy", "0.01", price="66000")  # last: 66000

    stop = await run_json(module_stack, "order", "create", "BTC-USD", "buy", "0.01",
                          "--price", "66200", "--stop-price", "66100", "--stp", "cancel-both",
                          "--client-order-id", "cli-stop", key=key)
    order = stop["order"]
    assert order["state"] == "ORDER_STATE_UNTRIGGERED"
    assert D(order["stop_price"]) == D("66100")
    assert order["self_trade_prevention"] == "SELF_TRADE_PREVENTION_CANCEL_BOTH"

    gtt = await run_json(module_stack, "order", "create", "BTC-USD", "buy", "0.01",
                         "--price", "30000", "--expire-time", "+30m", "--client-order-id",
                         "cli-gtt", key=key)
    assert gtt["order"]["time_in_force"] == "TIME_IN_FORCE_GTT"
    assert gtt["order"]["expire_time"]
    gtt_id = gtt["order"]["order_id"]

    table = await run(module_stack, "order", "get", gtt_id, key=key)
    assert table.returncode == 0 and "expires" in table.stdout, table.stdout

    amended = await run_json(module_stack, "order", "amend", gtt_id, "--quantity", "0.02",
                             "--price", "30001", key=key)
    assert D(amended["order"]["quantity"]) == D("0.02")
    assert D(amended["order"]["price"]) == D("30001")
    by_client_id = await run_json(module_stack, "order", "amend", "--client-order-id",
                                  "cli-gtt", "--quantity", "0.03", key=key)
    assert D(by_client_id["order"]["quantity"]) == D("0.03")
    stop_amend = await run(module_stack, "order", "amend", "--client-order-id", "cli-stop",
                           "--quantity", "0.02", key=key)
    assert stop_amend.returncode == 1
    assert "FAILED_PRECONDITION (STOP_NOT_AMENDABLE)" in stop_amend.stderr

    none = await run(module_stack, "order", "amend", gtt_id, key=key)
    assert none.returncode == 1 and "--price and/or --quantity" in none.stderr

    eth = await run_json(module_stack, "order", "create", "ETH-USD", "sell", "0.01",
                         "--price", "9000", key=key)
    only_eth = await run_json(module_stack, "order", "cancel-all", "--instrument", "ETH-USD",
                              key=key)
    assert [o["order_id"] for o in only_eth["orders"]] == [eth["order"]["order_id"]]
    listed = await run(module_stack, "order", "cancel-all", "--side", "buy", key=key)
    assert listed.returncode == 0, listed.stderr
    assert "Cancelled 2 order(s)" in listed.stdout
    assert await held(alice) == {}
    await bob.cancel_all_orders()


async def test_bad_trader_options(traders: Traders, module_stack: Stack) -> None:
    _, alice = await traders.new()
    key = alice.api_key
    assert key is not None
    cases = [
        (["--price", "70000", "--stop-price", "70000.001"], "STOP_PRICE_OFF_TICK"),
        (["--price", "70000", "--tif", "gtt"], "EXPIRE_TIME_REQUIRED"),
        (["--price", "70000", "--expire-time", "2020-01-01T00:00:00Z"], "EXPIRE_TIME_PAST"),
        (["--price", "70000", "--expire-time", "tomorrow"], "is not a time"),
    ]
    for extra, text in cases:
        proc = await run(module_stack, "order", "create", "BTC-USD", "buy", "0.01", *extra,
                         key=key)
        assert proc.returncode == 1, (extra, proc.stdout)
        assert text in proc.stderr and proc.stderr.startswith("error: "), proc.stderr
    bad_stp = await run(module_stack, "order", "create", "BTC-USD", "buy", "0.01", "--price",
                        "1", "--stp", "sometimes", key=key)
    assert bad_stp.returncode == 2  # argparse


async def test_session_from_stdin(traders: Traders, module_stack: Stack) -> None:
    _, alice = await traders.new()
    key = alice.api_key
    assert key is not None
    script = "\n".join([
        "# a quote, then changes",
        "buy BTC-USD 0.01 @ 30000 id=s1",
        "sell BTC-USD 0.01 @ 99000 id=s2 stp=cancel_both",
        "amend s1 qty=0.02",
        "cancel s2",
        "buy BTC-USD 0.01 @ 30000.001 id=bad-tick",
        "hold BTC-USD 1",
        "buy BTC-USD 0.01 @ 30500 expire=+1h id=s3",
        "renew",
        "",
    ])
    proc = await session(module_stack, key, script, "--json", "--cancel-on-disconnect",
                         "--dead-man", "600")
    assert proc.returncode == 1, proc.stderr  # two lines failed
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by_line = {entry["line"]: entry for entry in lines}
    assert by_line[2]["order"]["client_order_id"] == "s1"
    assert by_line[3]["order"]["self_trade_prevention"] == "SELF_TRADE_PREVENTION_CANCEL_BOTH"
    assert D(by_line[4]["order"]["quantity"]) == D("0.02")
    assert by_line[5]["order"]["state"] == "ORDER_STATE_CANCELLED"
    assert by_line[6]["error"]["reason"] == "PRICE_OFF_TICK"
    assert by_line[6]["error"]["field_violations"][0]["field"] == "price"
    assert "unknown command" in by_line[7]["error"]["message"]
    assert by_line[8]["order"]["time_in_force"] == "TIME_IN_FORCE_GTT"
    # The end of input was a goodbye: the open orders stay (s1 and s3).
    open_ids = sorted([o.client_order_id async for o in alice.iter_orders(status="open")])
    assert open_ids == ["s1", "s3"]

    text = await session(module_stack, key, "cancel s1\ncancel s1\n")
    assert text.returncode == 1
    assert text.stdout.startswith("s1  cancelled  buy 0.0200 BTC-USD @ 30000"), text.stdout
    assert "line 2: cancel s1: error: FAILED_PRECONDITION (ORDER_NOT_OPEN)" in text.stderr
    await alice.cancel_all_orders()
    assert await held(alice) == {}
