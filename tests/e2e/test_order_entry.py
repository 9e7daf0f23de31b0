"""The OrderEntry session and AmendOrder over the real services."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from e2e_helpers import meta
from google.rpc import code_pb2, error_details_pb2

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info

pytestmark = pytest.mark.e2e

BUY, SELL = cpb.SIDE_BUY, cpb.SIDE_SELL


def create(coid, side, qty, price="", type_=cpb.ORDER_TYPE_LIMIT, **kw):
    return opb.OrderEntryCommand(create=opb.CreateOrderRequest(
        instrument=kw.pop("instrument", "BTC-USD"), side=side, type=type_, price=price,
        quantity=qty, client_order_id=coid, **kw))


async def collect(call, n: int) -> dict[str, opb.OrderEntryEvent]:
    events: dict[str, opb.OrderEntryEvent] = {}
    count = 0
    while count < n:
        response = await asyncio.wait_for(call.read(), 10)
        assert response is not grpc.aio.EOF, f"stream ended after {count} of {n} answers"
        for event in response.events:
            events[event.client_order_id] = event
            count += 1
    return events


def reason(status) -> str:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


async def test_session_batches_answers_and_errors(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        maker = orders.OrderEntry(metadata=meta(stack, "alice"))
        # 20 resting asks in ONE message
        await maker.write(opb.OrderEntryRequest(commands=[
            create(f"ask-{i}", SELL, "0.01", f"{70000 + i}") for i in range(20)]))
        asks = await collect(maker, 20)
        assert all(e.WhichOneof("result") == "order" for e in asks.values())
        assert {e.order.state for e in asks.values()} == {cpb.ORDER_STATE_NEW}

        taker = orders.OrderEntry(metadata=meta(stack, "bob"))
        # a batch mixing a sweep, a bad order and a missing client_order_id
        await taker.write(opb.OrderEntryRequest(commands=[
            create("sweep", BUY, "0.05", "70010"),
            create("bad-price", BUY, "0.01", "70000.001"),
            create("", BUY, "0.01", "70000"),
        ]))
        got = await collect(taker, 3)
        sweep = got["sweep"].order
        assert sweep.state == cpb.ORDER_STATE_FILLED
        assert [f.price for f in got["sweep"].fills] == [
            "70000.00", "70001.00", "70002.00", "70003.00", "70004.00"]
        bad = got["bad-price"].error
        assert bad.code == code_pb2.INVALID_ARGUMENT and reason(bad) == "PRICE_OFF_TICK"
        assert reason(got[""].error) == "CLIENT_ORDER_ID_REQUIRED"

        # cancel and amend through the session; a retry of a create returns the original
        await maker.write(opb.OrderEntryRequest(commands=[
            opb.OrderEntryCommand(cancel=opb.CancelOrderRequest(client_order_id="ask-19")),
            opb.OrderEntryCommand(cancel=opb.CancelOrderRequest(client_order_id="ask-0")),
            create("ask-18", SELL, "0.01", "70018"),
        ]))
        got = await collect(maker, 3)
        assert got["ask-19"].order.state == cpb.ORDER_STATE_CANCELLED
        assert reason(got["ask-0"].error) == "ORDER_NOT_OPEN"  # filled by the sweep
        assert got["ask-18"].order.order_id == asks["ask-18"].order.order_id

        # the session ends cleanly when the client half-closes
        await maker.done_writing()
        await taker.done_writing()
        assert await maker.read() is grpc.aio.EOF
        assert await taker.read() is grpc.aio.EOF


async def test_one_message_mixes_every_kind_of_answer(stack) -> None:
    """Creates of one message share one client_order_id check and go to matching
    together; each command is still answered exactly once, on its own terms."""
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        session = orders.OrderEntry(metadata=meta(stack, "alice"))
        await session.write(opb.OrderEntryRequest(commands=[create("mix-old", BUY, "0.01",
                                                                   "100")]))
        old = (await collect(session, 1))["mix-old"].order
        fresh = [create(f"mix-{i}", BUY, "0.01", f"{200 + i}") for i in range(150)]
        await session.write(opb.OrderEntryRequest(commands=[
            *fresh,
            create("mix-old", BUY, "0.01", "100"),  # a retry: the original
            create("mix-twice", BUY, "0.02", "300"),
            create("mix-twice", BUY, "0.02", "300"),  # the same order, twice in a message
            create("mix-reused", BUY, "0.01", "400"),
            create("mix-reused", BUY, "0.03", "400"),  # same id, other contents
            create("mix-unknown", BUY, "0.01", "1", instrument="NOPE-USD"),
            create("mix-small", BUY, "0.00001", "100"),
        ]))
        answers: list[opb.OrderEntryEvent] = []
        while len(answers) < len(fresh) + 7:
            response = await asyncio.wait_for(session.read(), 10)
            assert response is not grpc.aio.EOF
            answers.extend(response.events)
        by_id: dict[str, list[opb.OrderEntryEvent]] = {}
        for event in answers:
            by_id.setdefault(event.client_order_id, []).append(event)
        assert all(by_id[f"mix-{i}"][0].order.state == cpb.ORDER_STATE_NEW
                   for i in range(150))
        assert by_id["mix-old"][0].order.order_id == old.order_id
        twice = [e.order.order_id for e in by_id["mix-twice"]]
        assert len(twice) == 2 and twice[0] == twice[1] and twice[0]
        reused = by_id["mix-reused"]
        assert sorted(e.WhichOneof("result") for e in reused) == ["error", "order"]
        assert [reason(e.error) for e in reused if e.HasField("error")] == [
            "CLIENT_ORDER_ID_IN_USE"]
        assert by_id["mix-unknown"][0].error.code == code_pb2.NOT_FOUND
        assert reason(by_id["mix-small"][0].error) == "QUANTITY_OFF_LOT"

        listed = await orders.ListOrders(opb.ListOrdersRequest(page_size=1000),
                                         metadata=meta(stack, "alice"))
        mine = [o for o in listed.orders if o.client_order_id.startswith("mix-")]
        assert len(mine) == 150 + 3  # fresh, old, twice (once), reused (once)
        await session.done_writing()
        assert await session.read() is grpc.aio.EOF


async def test_session_needs_a_key(stack) -> None:
    # The server ends a session without a key at once, before reading anything.
    # The test reads without writing first: a grpc.aio write that races the
    # server's trailers can replace the server's status with INTERNAL "Internal
    # error from Core" on the client side (grpc/grpc#36066, a client bug).
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        call = opb_grpc.OrderServiceStub(ch).OrderEntry()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await call.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_amend(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        a, b = meta(stack, "alice"), meta(stack, "bob")

        async def place(coid, side, qty, price, who=a):
            return (await orders.CreateOrder(opb.CreateOrderRequest(
                instrument="BTC-USD", side=side, type=cpb.ORDER_TYPE_LIMIT, price=price,
                quantity=qty, client_order_id=coid), metadata=who)).order

        first = await place("first", SELL, "0.03", "70000")
        second = await place("second", SELL, "0.03", "70000")
        # smaller quantity keeps priority: first still fills before second
        amended = await orders.AmendOrder(opb.AmendOrderRequest(
            client_order_id="first", quantity="0.02"), metadata=a)
        assert amended.order.quantity == "0.0200" and amended.order.order_id == first.order_id
        take = await orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=BUY, type=cpb.ORDER_TYPE_MARKET, quantity="0.01"),
            metadata=b)
        got = await orders.GetOrder(opb.GetOrderRequest(order_id=first.order_id), metadata=a)
        assert got.order.filled_quantity == "0.0100" and len(got.fills) == 1
        assert got.fills[0].trade_id == take.fills[0].trade_id
        # a larger quantity loses priority: second now fills first
        await orders.AmendOrder(opb.AmendOrderRequest(order_id=first.order_id,
                                                      quantity="0.05"), metadata=a)
        await orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=BUY, type=cpb.ORDER_TYPE_MARKET, quantity="0.01"),
            metadata=b)
        got2 = await orders.GetOrder(opb.GetOrderRequest(order_id=second.order_id), metadata=a)
        assert got2.order.filled_quantity == "0.0100"
        # a new price that crosses trades at once
        bid = await place("bid", BUY, "0.01", "69000", who=b)
        crossed = await orders.AmendOrder(opb.AmendOrderRequest(
            client_order_id="bid", price="70000"), metadata=b)
        assert crossed.order.state == cpb.ORDER_STATE_FILLED and len(crossed.fills) == 1
        assert crossed.order.order_id == bid.order_id
        # errors
        for request, code, why in [
            (opb.AmendOrderRequest(order_id=first.order_id), grpc.StatusCode.INVALID_ARGUMENT,
             "AMEND_EMPTY"),
            (opb.AmendOrderRequest(order_id=first.order_id, price="1.001"),
             grpc.StatusCode.INVALID_ARGUMENT, "PRICE_OFF_TICK"),
            (opb.AmendOrderRequest(order_id=first.order_id, quantity="0.01"),
             grpc.StatusCode.INVALID_ARGUMENT, "QUANTITY_NOT_ABOVE_FILLED"),
            (opb.AmendOrderRequest(order_id=bid.order_id, price="69000"),
             grpc.StatusCode.FAILED_PRECONDITION, "ORDER_NOT_OPEN"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await orders.AmendOrder(request, metadata=b if request.order_id == bid.order_id
                                        else a)
            assert err.value.code() == code, err.value.details()
            assert error_info(err.value).reason == why
        # someone else's order is not found
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await orders.AmendOrder(opb.AmendOrderRequest(order_id=second.order_id,
                                                          quantity="0.05"), metadata=b)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_amend_post_only_that_would_take_is_refused(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        a, b = meta(stack, "alice"), meta(stack, "bob")
        await orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=SELL, type=cpb.ORDER_TYPE_LIMIT, price="70000",
            quantity="0.01"), metadata=b)
        maker = (await orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=BUY, type=cpb.ORDER_TYPE_LIMIT, price="69000",
            quantity="0.01", post_only=True), metadata=a)).order
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await orders.AmendOrder(opb.AmendOrderRequest(order_id=maker.order_id,
                                                          price="70000"), metadata=a)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(err.value).reason == "POST_ONLY_WOULD_TAKE"
        still = await orders.GetOrder(opb.GetOrderRequest(order_id=maker.order_id), metadata=a)
        assert still.order.price == "69000.00" and still.order.state == cpb.ORDER_STATE_NEW


async def test_twenty_thousand_commands_in_one_message_are_all_answered(stack) -> None:
    """Found by tests/e2e/test_fuzz.py: 20,000 empty commands in one 40 KB message were
    answered in one message over the 4 MiB limit, and the session ended with
    RESOURCE_EXHAUSTED. Now the answers go out in messages of at most 1,000 (and the
    commands past EXCHANGE_MAX_COMMANDS_PER_MESSAGE, 1,000, are refused one by one)."""
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        session = orders.OrderEntry(metadata=meta(stack, "alice"), timeout=60)
        await session.write(opb.OrderEntryRequest(commands=[opb.OrderEntryCommand()] * 20_000))
        await session.done_writing()
        events = []
        async for response in session:
            assert len(response.events) <= 1000
            events.extend(response.events)
        assert await session.code() == grpc.StatusCode.OK
        assert len(events) == 20_000
        assert [reason(e.error) for e in events].count("COMMAND_REQUIRED") == 1000
        assert [reason(e.error) for e in events].count("TOO_MANY_COMMANDS") == 19_000
