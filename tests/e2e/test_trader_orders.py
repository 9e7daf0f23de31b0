"""The trader features through the public API and the client library, on the whole stack
in real processes: self-trade prevention in each mode, stop and stop-limit orders,
good-till-time expiry, CancelAllOrders with its filters, quote-sized market buys that
never spend more than their funds, and the bad input of each.

One stack for the module; every test makes fresh accounts (trader_helpers.py), trades
in a price region of its own and cancels what it leaves, so the tests do not meet in the
book."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from trader_helpers import Traders, balances, eventually, held

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_client import AsyncExchangeClient, ExchangeClient
from exchange_client.admin import AsyncAdminClient
from exchange_client.errors import FailedPrecondition, InvalidArgument, Unavailable
from exchange_client.session import create_command
from exchange_common.errors import error_info, field_violations
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

D = Decimal
OPEN = (cpb.ORDER_STATE_NEW, cpb.ORDER_STATE_PARTIALLY_FILLED, cpb.ORDER_STATE_UNTRIGGERED)
CLOSED_BY_STP = (cpb.ORDER_STATE_CANCELLED, cpb.ORDER_STATE_EXPIRED)


@pytest.fixture
async def traders(module_stack: Stack):
    t = Traders(module_stack)
    yield t
    await t.close()


async def trades_at(client: AsyncExchangeClient, instrument: str, price: D) -> list:
    return [t async for t in client.iter_trades(instrument, limit=1000)
            if D(t.price) == price]


# -- self-trade prevention ----------------------------------------------------------------

# (mode, price, what happens to the resting sell of 0.01 and the incoming buy of 0.03)
STP_CASES = [
    # none: the self-trade prints; the buy rests with what is left.
    ("none", "50010", "filled", ("open", "0.0200"), True),
    # cancel_resting (and the default): the resting sell goes, the buy rests whole.
    ("cancel_resting", "50020", "prevented", ("open", "0.0300"), False),
    (None, "50030", "prevented", ("open", "0.0300"), False),
    # cancel_incoming: the buy goes, the sell stays.
    ("cancel_incoming", "50040", "open", ("prevented", "0"), False),
    # cancel_both: both go.
    ("cancel_both", "50050", "prevented", ("prevented", "0"), False),
    # decrement: both lose 0.01; the sell reaches zero (cancelled), the buy rests 0.02.
    ("decrement", "50060", "prevented", ("open", "0.0200"), False),
]


async def test_self_trade_prevention_modes(traders: Traders) -> None:
    _, alice = await traders.new()
    _, bob = await traders.new()
    for mode, price, sell_after, (buy_after, buy_open), prints in STP_CASES:
        sell = (await alice.create_order("BTC-USD", "sell", "0.01", price=price)).order
        kwargs = {} if mode is None else {"self_trade_prevention": mode}
        buy = await alice.create_order("BTC-USD", "buy", "0.03", price=price, **kwargs)
        expected_mode = (cpb.SELF_TRADE_PREVENTION_CANCEL_RESTING if mode is None else
                         cpb.SelfTradePrevention.Value(
                             f"SELF_TRADE_PREVENTION_{mode.upper()}"))
        assert buy.order.self_trade_prevention == expected_mode, mode
        sell_now = (await alice.get_order(sell.order_id)).order
        buy_now = (await alice.get_order(buy.order.order_id)).order
        for order, after in ((sell_now, sell_after), (buy_now, buy_after)):
            if after == "open":
                assert order.state in OPEN, (mode, order)
            elif after == "filled":
                assert order.state == cpb.ORDER_STATE_FILLED, (mode, order)
            else:
                assert order.state in CLOSED_BY_STP, (mode, order)
                assert order.reason == "SELF_TRADE_PREVENTED", (mode, order)
        assert D(buy_now.remaining_quantity) == D(buy_open), (mode, buy_now)
        fills = [f async for f in alice.iter_fills("BTC-USD", buy.order.order_id)]
        assert bool(fills) == prints, (mode, fills)
        assert bool(buy.fills) == prints, mode
        await alice.cancel_all_orders("BTC-USD")

    # bob against alice trades whatever the mode: a marker trade on the tape, after
    # which the tape must show no self-trade but the one of mode none.
    await alice.create_order("BTC-USD", "sell", "0.01", price="50070")
    crossed = await bob.create_order("BTC-USD", "buy", "0.01", price="50070",
                                     self_trade_prevention="cancel_both")
    assert crossed.order.state == cpb.ORDER_STATE_FILLED and len(crossed.fills) == 1

    async def marker_printed() -> None:
        assert await trades_at(bob, "BTC-USD", D("50070"))

    await eventually(marker_printed, "the marker trade on ListTrades")
    for mode, price, *_, prints in STP_CASES:
        printed = await trades_at(bob, "BTC-USD", D(price))
        assert len(printed) == (1 if prints else 0), (mode, printed)
    assert await held(alice) == {} and await held(bob) == {}


# -- stops ------------------------------------------------------------------------------


async def test_stop_limit_waits_untriggered_then_fires(traders: Traders) -> None:
    _, alice = await traders.new()
    _, bob = await traders.new()
    _, carol = await traders.new()
    # The last trade: 60000.
    await bob.create_order("BTC-USD", "sell", "0.01", price="60000")
    await carol.create_order("BTC-USD", "buy", "0.01", price="60000")
    before = await balances(alice)

    stop = (await alice.create_order("BTC-USD", "buy", "0.01", price="60200",
                                     stop_price="60100", client_order_id="stop-1")).order
    assert stop.state == cpb.ORDER_STATE_UNTRIGGERED
    assert D(stop.stop_price) == D("60100") and D(stop.price) == D("60200")
    got = (await alice.get_order(client_order_id="stop-1")).order
    assert got.state == cpb.ORDER_STATE_UNTRIGGERED and D(got.stop_price) == D("60100")
    listed = [o async for o in alice.iter_orders("BTC-USD", "open")]
    assert [o.order_id for o in listed] == [stop.order_id]
    closed = [o async for o in alice.iter_orders("BTC-USD", "closed")]
    assert closed == []
    # It holds like its limit order (0.01 x 60200 plus the fee at most).
    held_usd = (await balances(alice))["USD"][1] - before["USD"][1]
    assert D("602") <= held_usd <= D("602") * D("1.01"), held_usd

    # A trade at 60150 (>= 60100) fires it: a limit buy at 60200 that takes bob's rest.
    await bob.create_order("BTC-USD", "sell", "0.02", price="60150")
    await carol.create_order("BTC-USD", "buy", "0.01", price="60150")

    async def filled() -> opb.GetOrderResponse:
        answer = await alice.get_order(stop.order_id)
        assert answer.order.state == cpb.ORDER_STATE_FILLED, answer.order
        return answer

    done = await eventually(filled, "the stop-limit filled")
    assert [D(f.price) for f in done.fills] == [D("60150")]
    assert await held(alice) == {}
    for client in (bob, carol):
        await client.cancel_all_orders("BTC-USD")


async def test_stop_market_sell_and_a_stop_already_crossed(traders: Traders) -> None:
    _, alice = await traders.new()
    _, bob = await traders.new()
    await bob.create_order("BTC-USD", "sell", "0.01", price="61000")
    await alice.create_order("BTC-USD", "buy", "0.01", price="61000")  # last: 61000

    # A sell stop at or above the last price would fire at once: rejected, holding nothing.
    refused = (await alice.create_order("BTC-USD", "sell", "0.01", type="market",
                                        stop_price="61000")).order
    assert (refused.state, refused.reason) == (cpb.ORDER_STATE_REJECTED, "STOP_WOULD_TRIGGER")
    assert await held(alice) == {}

    # A stop market sell holds its base, and fires on a trade at or below 60900.
    stop = (await alice.create_order("BTC-USD", "sell", "0.01", type="market",
                                     stop_price="60900")).order
    assert stop.state == cpb.ORDER_STATE_UNTRIGGERED
    assert (await held(alice)).get("BTC") == D("0.01")
    await bob.create_order("BTC-USD", "buy", "0.03", price="60800")
    await alice.create_order("BTC-USD", "sell", "0.01", price="60800",
                             self_trade_prevention="none")

    async def fired() -> opb.Order:
        order = (await alice.get_order(stop.order_id)).order
        assert order.state == cpb.ORDER_STATE_FILLED, order
        return order

    await eventually(fired, "the stop market sell filled")
    assert await held(alice) == {}
    await bob.cancel_all_orders()


async def test_stop_market_buy_holds_at_its_protection_price(traders: Traders) -> None:
    """A stop market buy holds its quantity at the protection price of its stop price
    (10 % above it when the instrument has no price band) with the fee."""
    _, alice = await traders.new()
    _, bob = await traders.new()
    await bob.create_order("BTC-USD", "sell", "0.01", price="62000")
    await alice.create_order("BTC-USD", "buy", "0.01", price="62000")
    stop = (await alice.create_order("BTC-USD", "buy", "0.01", type="market",
                                     stop_price="62500")).order
    assert stop.state == cpb.ORDER_STATE_UNTRIGGERED
    usd = (await held(alice))["USD"]
    assert D("687.50") <= usd <= D("687.50") * D("1.01"), usd  # 0.01 x 68750 (+ fee)
    cancelled = await alice.cancel_all_orders()
    assert [o.order_id for o in cancelled] == [stop.order_id]
    assert cancelled[0].state == cpb.ORDER_STATE_CANCELLED
    assert await held(alice) == {}


# -- good-till-time ------------------------------------------------------------------------


async def test_good_till_time_expires_and_releases_its_hold(traders: Traders) -> None:
    _, alice = await traders.new()
    expire = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    placed = (await alice.create_order("BTC-USD", "buy", "0.01", price="40000",
                                       expire_time=expire)).order
    assert placed.time_in_force == cpb.TIME_IN_FORCE_GTT
    # Kept to the microsecond (PostgreSQL's precision), as given.
    assert placed.expire_time.ToDatetime(tzinfo=dt.UTC) == expire
    assert (await held(alice)).get("USD")
    listed = [o.order_id async for o in alice.iter_orders("BTC-USD", "open")]
    assert listed == [placed.order_id]

    async def expired() -> opb.Order:
        order = (await alice.get_order(placed.order_id)).order
        assert order.state == cpb.ORDER_STATE_EXPIRED, order
        return order

    order = await eventually(expired, "the GTT order expired")
    assert order.reason == "GOOD_TILL_TIME"
    assert order.expire_time.seconds == int(expire.timestamp())
    assert await held(alice) == {}
    assert [o async for o in alice.iter_orders("BTC-USD", "open")] == []


# -- mass cancel ----------------------------------------------------------------------------


async def test_cancel_all_orders_with_filters(traders: Traders) -> None:
    _, alice = await traders.new()
    _, bob = await traders.new()
    await bob.create_order("BTC-USD", "sell", "0.01", price="63000")
    await alice.create_order("BTC-USD", "buy", "0.01", price="63000")  # last: 63000
    ids = {}
    for name, instrument, side, price in [
            ("btc-buy", "BTC-USD", "buy", "30000"), ("btc-sell", "BTC-USD", "sell", "90000"),
            ("eth-buy", "ETH-USD", "buy", "1000"), ("eth-sell", "ETH-USD", "sell", "9000"),
            ("eth-buy-2", "ETH-USD", "buy", "1001")]:
        ids[name] = (await alice.create_order(instrument, side, "0.01", price=price)).order.order_id
    ids["btc-stop"] = (await alice.create_order("BTC-USD", "buy", "0.01", price="64000",
                                                stop_price="63900")).order.order_id
    others = (await bob.create_order("ETH-USD", "buy", "0.01", price="1000")).order

    def named(orders) -> set[str]:
        by_id = {v: k for k, v in ids.items()}
        return {by_id[o.order_id] for o in orders}

    first = await alice.cancel_all_orders("ETH-USD", "buy")
    assert named(first) == {"eth-buy", "eth-buy-2"}
    assert all(o.state == cpb.ORDER_STATE_CANCELLED for o in first)
    second = await alice.cancel_all_orders(side="sell")
    assert named(second) == {"btc-sell", "eth-sell"}
    assert await alice.cancel_all_orders("ETH-USD") == []  # nothing left there: safe again
    third = await alice.cancel_all_orders()
    assert named(third) == {"btc-buy", "btc-stop"}
    assert [o async for o in alice.iter_orders(status="open")] == []
    assert await held(alice) == {}
    # bob's order was never alice's to cancel.
    assert (await bob.get_order(others.order_id)).order.state == cpb.ORDER_STATE_NEW
    await bob.cancel_all_orders()
    assert await held(bob) == {}


# -- quote-sized market buys -----------------------------------------------------------------


@pytest.mark.parametrize("taker_bps,funds", [(0, "500"), (10, "500"), (25, "1000.5"),
                                             (100, "333.333333")])
async def test_funds_market_buy_never_spends_more_than_its_funds(
        traders: Traders, taker_bps: int, funds: str) -> None:
    """Across several price levels and fee rates: what the buy pays, fees included, is
    at most its funds, and everything else comes back."""
    buyer_name, buyer = await traders.new(USD="2000")
    await traders.admin.set_account_fees(buyer_name, "BTC-USD", maker_fee_bps=0,
                                         taker_fee_bps=taker_bps)
    _, maker = await traders.new()
    for quantity, price in [("0.0015", "80000"), ("0.0022", "80010.01"),
                            ("0.0031", "80100.99"), ("0.05", "80500")]:
        await maker.create_order("BTC-USD", "sell", quantity, price=price)
    answer = await buyer.create_order("BTC-USD", "buy", None, type="market", funds=funds)
    assert len({f.price for f in answer.fills}) >= 3, answer.fills  # several levels
    paid = sum(D(f.price) * D(f.quantity) + D(f.fee) for f in answer.fills)
    after = await balances(buyer)
    spent = D("2000") - after["USD"][0]
    assert after["USD"][1] == 0 and after["BTC"][1] == 0
    assert spent == paid, (spent, paid)
    assert spent <= D(funds), (spent, funds)
    assert after["BTC"][0] == sum(D(f.quantity) for f in answer.fills)
    # It bought as much as it could: one more lot at the last price would not fit.
    last = D(answer.fills[-1].price)
    one_more = last * D("0.0001") * (1 + D(taker_bps) / 10000)
    assert spent + one_more > D(funds) or D(answer.order.remaining_quantity) == 0
    await maker.cancel_all_orders()


# -- bad input -------------------------------------------------------------------------------


def _ts(seconds_from_now: float) -> Timestamp:
    return Timestamp(seconds=int(time.time() + seconds_from_now))


BAD = [
    (dict(time_in_force=cpb.TIME_IN_FORCE_GTT, expire_time=_ts(-60)), "expire_time",
     "EXPIRE_TIME_PAST"),
    (dict(time_in_force=cpb.TIME_IN_FORCE_GTT), "expire_time", "EXPIRE_TIME_REQUIRED"),
    (dict(expire_time=_ts(3600)), "expire_time", "EXPIRE_TIME_NOT_ALLOWED"),
    (dict(time_in_force=cpb.TIME_IN_FORCE_GTT, expire_time=_ts(91 * 86400)), "expire_time",
     "EXPIRE_TIME_TOO_FAR"),
    (dict(stop_price="70000.001"), "stop_price", "STOP_PRICE_OFF_TICK"),
    (dict(stop_price="0"), "stop_price", "STOP_PRICE_NOT_POSITIVE"),
    (dict(self_trade_prevention=9), "self_trade_prevention", "SELF_TRADE_PREVENTION_INVALID"),
    (dict(time_in_force=5), "time_in_force", "TIME_IN_FORCE_INVALID"),
]


async def test_bad_input_is_invalid_argument_with_field_violations(module_stack: Stack
                                                                   ) -> None:
    meta = (("x-api-key", module_stack.keys["alice"]),)
    async with grpc.aio.insecure_channel(module_stack.order_addr) as channel:
        stub = opb_grpc.OrderServiceStub(channel)
        for fields, field, reason in BAD:
            request = opb.CreateOrderRequest(instrument="BTC-USD", side=cpb.SIDE_BUY,
                                             type=cpb.ORDER_TYPE_LIMIT, price="70000",
                                             quantity="0.01", **fields)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.CreateOrder(request, metadata=meta, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
            assert error_info(err.value).reason == reason, fields
            assert [v.field for v in field_violations(err.value)] == [field], fields
        for side in (3, -1):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.CancelAllOrders(opb.CancelAllOrdersRequest(side=side),
                                           metadata=meta, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in field_violations(err.value)] == ["side"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CancelAllOrders(opb.CancelAllOrdersRequest(instrument="NOPE-USD"),
                                       metadata=meta, timeout=30)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CancelAllOrders(opb.CancelAllOrdersRequest(), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- the client library's sessions ------------------------------------------------------------


async def test_async_session_commands(traders: Traders) -> None:
    _, alice = await traders.new()
    async with alice.order_entry() as session:
        many = await session.send([create_command("BTC-USD", "buy", "0.01", price=str(p),
                                                  client_order_id=f"as-{p}")
                                   for p in range(25000, 25010)])
        assert [e.order.client_order_id for e in many] == [f"as-{p}" for p in
                                                            range(25000, 25010)]
        # A cancel sent right behind its create waits for the create's answer.
        created, cancelled = await asyncio.gather(
            session.create("BTC-USD", "buy", "0.01", price="24000", client_order_id="as-x"),
            session.cancel(client_order_id="as-x"))
        assert created.order.state == cpb.ORDER_STATE_NEW
        assert cancelled.state == cpb.ORDER_STATE_CANCELLED
        amended = await session.amend(many[0].order.order_id, price="25000.5")
        assert D(amended.order.price) == D("25000.5")
        by_id = await session.cancel(many[1].order.order_id)
        assert by_id.order_id == many[1].order.order_id
        with pytest.raises(FailedPrecondition) as err:
            await session.cancel(many[1].order.order_id)
        assert err.value.reason == "ORDER_NOT_OPEN"
        with pytest.raises(InvalidArgument) as bad:
            await session.create("BTC-USD", "buy", "0.01", price="1.001",
                                 client_order_id="as-bad")
        assert bad.value.field_violations[0].field == "price"
    assert len(await alice.cancel_all_orders()) == 9


async def test_sync_session_commands(traders: Traders, module_stack: Stack) -> None:
    _, alice = await traders.new()

    def trade() -> list[str]:
        with ExchangeClient(module_stack.order_addr, api_key=alice.api_key) as client:
            with client.order_entry(cancel_on_disconnect=True) as session:
                placed = session.send([create_command("BTC-USD", "sell", "0.01",
                                                      price=str(p), client_order_id=f"ss-{p}")
                                       for p in range(96000, 96005)])
                session.amend(client_order_id="ss-96000", quantity="0.02")
                session.cancel(client_order_id="ss-96001")
                one = session.create("BTC-USD", "sell", "0.01", price="96010",
                                     client_order_id="ss-one")
                with pytest.raises(InvalidArgument):
                    session.create("BTC-USD", "sell", "0", price="96010",
                                   client_order_id="ss-bad")
            # Left normally: a goodbye, so cancel_on_disconnect cancelled nothing.
            return [e.order.order_id for e in placed] + [one.order.order_id]

    ids = await asyncio.to_thread(trade)
    open_orders = {o.order_id: o async for o in alice.iter_orders("BTC-USD", "open")}
    assert set(open_orders) == set(ids) - {ids[1]}
    assert D(open_orders[ids[0]].quantity) == D("0.02")
    await alice.cancel_all_orders()


# -- a mass cancel that cannot reach everything -------------------------------------------------


async def test_cancel_all_that_cannot_finish_says_which_instruments(stack: Stack) -> None:
    """A halted instrument refuses its cancels (FAILED_PRECONDITION) while the others are
    cancelled; an owning pod that does not answer makes the call UNAVAILABLE
    (CANCEL_ALL_INCOMPLETE), the instruments not done named in the metadata, and a retry
    once it answers cancels what is left."""
    async with AsyncExchangeClient(stack.order_addr, stack.marketdata_addr,
                                   api_key=stack.keys["alice"], timeout=5) as alice, \
            AsyncAdminClient(stack.order_addr, stack.admin_key) as admin:
        for instrument in ("BTC-USD", "ETH-USD", "BTC-USD", "ETH-USD"):
            await alice.create_order(instrument, "buy", "0.01", price="1000")
        await admin.set_instrument_status("ETH-USD", "halted")
        with pytest.raises(FailedPrecondition) as halted:
            await alice.cancel_all_orders()
        assert halted.value.reason == "INSTRUMENT_HALTED"
        assert halted.value.metadata["instruments"] == "ETH-USD"
        assert [o.instrument async for o in alice.iter_orders(status="open")] == ["ETH-USD"] * 2
        await admin.set_instrument_status("ETH-USD", "trading")

        for instrument in ("BTC-USD", "BTC-USD"):
            await alice.create_order(instrument, "buy", "0.01", price="1000")
        stack.pause_service("matching")
        try:
            with pytest.raises(Unavailable) as away:
                await alice.cancel_all_orders()
        finally:
            stack.resume_service("matching")
        assert away.value.reason == "CANCEL_ALL_INCOMPLETE"
        assert away.value.metadata["instruments"] == "BTC-USD,ETH-USD"
        again = await alice.cancel_all_orders()  # safe: cancels whatever is still open
        assert len(again) <= 4
        assert [o async for o in alice.iter_orders(status="open")] == []

        async def nothing_held() -> None:
            assert await held(alice) == {}

        await eventually(nothing_held, "alice's holds released")
