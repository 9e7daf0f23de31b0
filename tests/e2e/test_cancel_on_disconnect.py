"""The OrderEntry session's cancel-on-disconnect and dead-man timer, on the whole stack.

The client of the disconnect tests is a real process (a small script using the client
library's session) killed with SIGKILL: its orders become CANCELLED, including those
whose creates were still on their way. A session that says goodbye (a normal exit: the
library half-closes) keeps its orders, and so does a session without the option. The
dead-man timer cancels every open order of the account unless renewed, and tells the
session with a DEAD_MAN_TIMER notice; renewals keep the orders.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from trader_helpers import Traders, eventually, held

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_client import AsyncExchangeClient
from exchange_client.errors import InvalidArgument, from_status_proto
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

CLIENT = """
import asyncio, json, sys
from exchange_client import AsyncExchangeClient

async def main(addr, key, mode, prefix):
    async with AsyncExchangeClient(addr, api_key=key, timeout=60) as client:
        async with client.order_entry(cancel_on_disconnect=(mode != "plain")) as session:
            placed = await asyncio.gather(*(
                session.create("BTC-USD", "buy", "0.01", price=str(20000 + i),
                               client_order_id=f"{prefix}-{i}") for i in range(5)))
            if mode == "kill":
                # More creates, not waited for: the process dies with them on their way.
                for i in range(5, 25):
                    session.submit(session_create(prefix, i))
            print(json.dumps([e.order.order_id for e in placed]), flush=True)
            if mode == "kill":
                await asyncio.sleep(3600)  # SIGKILL comes here
    print("goodbye", flush=True)

def session_create(prefix, i):
    from exchange_client.session import create_command
    return create_command("BTC-USD", "buy", "0.01", price=str(20000 + i),
                          client_order_id=f"{prefix}-{i}")

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture
async def traders(module_stack: Stack):
    t = Traders(module_stack)
    yield t
    await t.close()


def start_client(stack: Stack, tmp_path: Path, key: str, mode: str, prefix: str
                 ) -> tuple[subprocess.Popen[str], list[str]]:
    script = tmp_path / "session_client.py"
    script.write_text(CLIENT)
    proc = subprocess.Popen([sys.executable, str(script), stack.order_addr, key, mode, prefix],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"the client died: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


async def new_key(traders: Traders) -> tuple[str, AsyncExchangeClient]:
    name, client = await traders.new()
    assert client.api_key is not None
    return client.api_key, client


async def all_closed(client: AsyncExchangeClient, prefix: str) -> list[opb.Order]:
    orders = [o async for o in client.iter_orders("BTC-USD")
              if o.client_order_id.startswith(prefix)]
    assert orders and all(o.state not in (cpb.ORDER_STATE_NEW,
                                          cpb.ORDER_STATE_PARTIALLY_FILLED) for o in orders)
    return orders


async def test_killed_client_has_its_orders_cancelled(traders: Traders, module_stack: Stack,
                                                      tmp_path: Path) -> None:
    key, client = await new_key(traders)
    proc, order_ids = await asyncio.to_thread(start_client, module_stack, tmp_path, key,
                                              "kill", "k")
    assert len(order_ids) == 5
    proc.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(proc.wait, 60) == -signal.SIGKILL

    async def first_cancelled() -> None:
        for order_id in order_ids:
            order = (await client.get_order(order_id)).order
            assert order.state == cpb.ORDER_STATE_CANCELLED, order

    await eventually(first_cancelled, "the killed session's orders cancelled")
    # The creates that were on their way were waited for before any cancel was sent:
    # every order of the session is there by now, and each of them gets cancelled.
    closed = await eventually(lambda: all_closed(client, "k-"), "all the session's orders")
    assert all(o.state == cpb.ORDER_STATE_CANCELLED for o in closed), closed

    # Creates that died in their hold's statement were never sent: their holds go back.
    async def nothing_held() -> None:
        assert await held(client) == {}

    await eventually(nothing_held, "the session's holds released")


async def test_goodbye_and_plain_sessions_keep_their_orders(
        traders: Traders, module_stack: Stack, tmp_path: Path) -> None:
    key, client = await new_key(traders)
    for mode, prefix in (("goodbye", "g"), ("plain", "p")):
        proc, order_ids = await asyncio.to_thread(start_client, module_stack, tmp_path, key,
                                                  mode, prefix)
        if mode == "plain":
            proc.send_signal(signal.SIGKILL)  # no goodbye, but no cancel_on_disconnect
        else:
            assert proc.stdout is not None
            assert await asyncio.to_thread(proc.stdout.readline) == "goodbye\n"
        await asyncio.to_thread(proc.wait, 60)
    # A probe: a session killed after both ended, whose orders do get cancelled. Once
    # they are, the two sessions before it have long been handled.
    proc, probe_ids = await asyncio.to_thread(start_client, module_stack, tmp_path, key,
                                              "kill", "z")
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 60)

    async def probe_cancelled() -> None:
        for order_id in probe_ids:
            assert (await client.get_order(order_id)).order.state == cpb.ORDER_STATE_CANCELLED

    await eventually(probe_cancelled, "the probe's orders cancelled")
    kept = [o async for o in client.iter_orders("BTC-USD", "open")
            if o.client_order_id[0] in "gp"]
    assert sorted(o.client_order_id for o in kept) == sorted(
        [f"g-{i}" for i in range(5)] + [f"p-{i}" for i in range(5)])
    await client.cancel_all_orders()


async def test_a_session_left_with_an_exception_is_a_disconnect(traders: Traders) -> None:
    _, client = await traders.new()
    with pytest.raises(RuntimeError):
        async with client.order_entry(cancel_on_disconnect=True) as session:
            event = await session.create("BTC-USD", "buy", "0.01", price="20500",
                                         client_order_id="x-1")
            raise RuntimeError("the trading program failed")

    async def cancelled() -> None:
        order = (await client.get_order(event.order.order_id)).order
        assert order.state == cpb.ORDER_STATE_CANCELLED, order

    await eventually(cancelled, "the aborted session's order cancelled")


async def test_dead_man_timer_cancels_everything_unless_renewed(traders: Traders) -> None:
    _, client = await traders.new()
    outside = (await client.create_order("BTC-USD", "sell", "0.01", price="95000")).order
    async with client.order_entry(dead_man_seconds=4) as session:
        inside = (await session.create("BTC-USD", "buy", "0.01", price="21000",
                                       client_order_id="d-1")).order
        # Renewed often enough, for longer than the timer: nothing happens.
        for _ in range(25):
            await session.renew()
            await asyncio.sleep(0.3)
        assert session.notices == []
        for order in (outside, inside):
            assert (await client.get_order(order.order_id)).order.state == cpb.ORDER_STATE_NEW
        # Not renewed: all the account's open orders go, the session is told, once.
        notice = await session.next_notice(timeout=120)
        assert notice.notice == "DEAD_MAN_TIMER"
        assert sorted(o.order_id for o in notice.cancelled) == sorted(
            [outside.order_id, inside.order_id])
        assert all(o.state == cpb.ORDER_STATE_CANCELLED for o in notice.cancelled)
        # The session goes on; the timer is off now.
        later = (await session.create("BTC-USD", "buy", "0.01", price="21001",
                                      client_order_id="d-2")).order
        assert later.state == cpb.ORDER_STATE_NEW
    assert len(session.notices) == 1
    assert (await client.get_order(later.order_id)).order.state == cpb.ORDER_STATE_NEW
    await client.cancel_all_orders()
    assert await held(client) == {}


async def test_bad_options_are_an_error_event_and_the_session_goes_on(
        module_stack: Stack) -> None:
    meta = (("x-api-key", module_stack.keys["alice"]),)
    coid = f"opt-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(module_stack.order_addr) as channel:
        call = opb_grpc.OrderServiceStub(channel).OrderEntry(metadata=meta, timeout=60)
        for seconds in (3601, -1):
            await call.write(opb.OrderEntryRequest(
                options=opb.SessionOptions(dead_man_seconds=seconds)))
        await call.write(opb.OrderEntryRequest(commands=[opb.OrderEntryCommand(
            create=opb.CreateOrderRequest(instrument="BTC-USD", side=cpb.SIDE_BUY,
                                          type=cpb.ORDER_TYPE_LIMIT, price="21500",
                                          quantity="0.01", client_order_id=coid))]))
        await call.done_writing()
        events = [e async for response in call for e in response.events]
    errors = [from_status_proto(e.error) for e in events if e.HasField("error")]
    assert len(errors) == 2
    for err in errors:
        assert isinstance(err, InvalidArgument)
        assert err.reason == "DEAD_MAN_SECONDS_INVALID"
        assert [v.field for v in err.field_violations] == ["options.dead_man_seconds"]
    placed = [e for e in events if e.HasField("order")]
    assert [e.client_order_id for e in placed] == [coid]
    async with AsyncExchangeClient(module_stack.order_addr,
                                   api_key=module_stack.keys["alice"]) as alice:
        await alice.cancel_order(client_order_id=coid)
