"""The client library: exact decimals, typed errors from a real server, the local book.

The server here is a real ``grpc.aio`` server on port 0 whose servicers
raise ``exchange_common.errors`` exceptions (through ``grpc_errors``), so the
clients decode the same rich statuses (ErrorInfo + BadRequest) that the
services send. No mocks.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest
import pytest_asyncio

from exchange.common.v1 import common_pb2
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc
from exchange.order.v1 import order_pb2, order_pb2_grpc
from exchange_client import (
    AlreadyExists,
    AsyncExchangeClient,
    DeadlineExceeded,
    ExchangeClient,
    ExchangeError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    LocalOrderBook,
    NotFound,
    ResourceExhausted,
    SequenceGap,
    Unauthenticated,
    Unavailable,
    exception_class_for_grpc_status,
)
from exchange_client._convert import decimal_string, side, status_filter, time_in_force
from exchange_common import errors as server_errors
from exchange_common.errors import grpc_errors

API_KEY = "good-key"

SERVER_ERRORS: dict[str, type[server_errors.ExchangeError]] = {
    "INVALID_ARGUMENT": server_errors.InvalidArgument,
    "NOT_FOUND": server_errors.NotFound,
    "ALREADY_EXISTS": server_errors.AlreadyExists,
    "FAILED_PRECONDITION": server_errors.FailedPrecondition,
    "UNAUTHENTICATED": server_errors.Unauthenticated,
    "UNAVAILABLE": server_errors.Unavailable,
    "RESOURCE_EXHAUSTED": server_errors.ResourceExhausted,
    "DEADLINE_EXCEEDED": server_errors.DeadlineExceeded,
}

CLIENT_ERRORS: dict[str, type[ExchangeError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "FAILED_PRECONDITION": FailedPrecondition,
    "UNAUTHENTICATED": Unauthenticated,
    "UNAVAILABLE": Unavailable,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
}


# -- a real server ------------------------------------------------------------


def _levels(*pairs: tuple[str, str]) -> list[marketdata_pb2.PriceLevel]:
    return [marketdata_pb2.PriceLevel(price=p, quantity=q, order_count=1) for p, q in pairs]


def _snapshot(seq: int, bids=(), asks=()) -> marketdata_pb2.StreamOrderBookResponse:
    return marketdata_pb2.StreamOrderBookResponse(
        instrument="BTC-USD",
        snapshot=marketdata_pb2.OrderBookSnapshot(sequence=seq, bids=_levels(*bids),
                                                  asks=_levels(*asks)))


def _delta(first: int, seq: int, bids=(), asks=()) -> marketdata_pb2.StreamOrderBookResponse:
    return marketdata_pb2.StreamOrderBookResponse(
        instrument="BTC-USD",
        delta=marketdata_pb2.OrderBookDelta(first_sequence=first, sequence=seq,
                                            bids=_levels(*bids), asks=_levels(*asks)))


def _checksummed(script: list[marketdata_pb2.StreamOrderBookResponse]
                 ) -> list[marketdata_pb2.StreamOrderBookResponse]:
    """The messages with the checksum of the book after each, as the exchange sends them
    (up to the first gap: the client never applies what follows one)."""
    replica = LocalOrderBook(verify=False)
    for msg in script:
        try:
            replica.apply(msg)
        except SequenceGap:
            break
        getattr(msg, msg.WhichOneof("update")).checksum = replica.checksum()
    return script


# What StreamOrderBook sends, per instrument, on the 1st, 2nd, ... subscription.
BOOK_SCRIPTS = {
    "BTC-USD": [
        _checksummed([
            _snapshot(10, bids=[("100.00", "1.0")], asks=[("101.00", "2.0")]),
            _delta(11, 12, bids=[("100.50", "0.5")]),
            _delta(14, 14, bids=[("100.75", "9.9")]),  # gap: 13 is missing
        ]),
        _checksummed([
            _snapshot(20, bids=[("99.00", "3.0")], asks=[("101.00", "2.0")]),
            _delta(21, 21, asks=[("101.00", "0"), ("102.00", "1.0")]),
        ]),
    ],
    "GAPPY": [_checksummed([_snapshot(1), _delta(5, 5)])] * 10,
}


def _order(request: order_pb2.CreateOrderRequest, order_id: str = "1001") -> order_pb2.Order:
    return order_pb2.Order(
        order_id=order_id, client_order_id=request.client_order_id,
        instrument=request.instrument, side=request.side, type=request.type,
        time_in_force=request.time_in_force, price=request.price, quantity=request.quantity,
        filled_quantity="0", remaining_quantity=request.quantity,
        state=common_pb2.ORDER_STATE_NEW, post_only=request.post_only,
    )


class Recorder:
    def __init__(self) -> None:
        self.requests: list[object] = []
        self.metadata: list[dict[str, str]] = []
        self.time_remaining: list[float | None] = []
        self.book_subscriptions: dict[str, int] = {}

    def record(self, request: object, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        self.metadata.append({k: v for k, v in context.invocation_metadata() or ()})
        self.time_remaining.append(context.time_remaining())
        key = dict(context.invocation_metadata() or ()).get("x-api-key")
        if key != API_KEY:
            raise server_errors.Unauthenticated("unknown API key", reason="API_KEY_INVALID")


class FakeOrders(order_pb2_grpc.OrderServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.orders = [order_pb2.Order(order_id=str(2000 + i), instrument="BTC-USD")
                       for i in range(7)]

    @grpc_errors
    async def CreateOrder(self, request, context):
        self.rec.record(request, context)
        if request.price == "70000.001":
            raise server_errors.InvalidArgument(
                "price 70000.001 is not a multiple of the price step 0.01",
                reason="PRICE_OFF_TICK", field="price")
        return order_pb2.CreateOrderResponse(order=_order(request))

    @grpc_errors
    async def GetOrder(self, request, context):
        # order_id "ERR:<CODE>" fails with that code; "slow" outlives the deadline.
        self.rec.record(request, context)
        if request.order_id.startswith("ERR:"):
            code = request.order_id[4:]
            field = "order_id" if code == "INVALID_ARGUMENT" else None
            raise SERVER_ERRORS[code](f"failing with {code}", reason=f"TEST_{code}", field=field,
                                      metadata={"code": code})
        if request.order_id == "slow":
            await asyncio.sleep(5)
        return order_pb2.GetOrderResponse(order=order_pb2.Order(order_id=request.order_id))

    @grpc_errors
    async def CancelOrder(self, request, context):
        self.rec.record(request, context)
        return order_pb2.CancelOrderResponse(order=order_pb2.Order(
            order_id=request.order_id or "77", client_order_id=request.client_order_id,
            state=common_pb2.ORDER_STATE_CANCELLED))

    @grpc_errors
    async def ListOrders(self, request, context):
        self.rec.record(request, context)
        size = request.page_size or 3
        start = int(request.page_token or 0)
        end = start + size
        token = str(end) if end < len(self.orders) else ""
        return order_pb2.ListOrdersResponse(orders=self.orders[start:end], next_page_token=token)

    @grpc_errors
    async def ListFills(self, request, context):
        self.rec.record(request, context)
        return order_pb2.ListFillsResponse(fills=[order_pb2.Fill(trade_id="5",
                                                                 order_id=request.order_id)])


class FakeMarketData(marketdata_pb2_grpc.MarketDataServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    @grpc_errors
    async def ListInstruments(self, request, context):
        return marketdata_pb2.ListInstrumentsResponse(instruments=[
            marketdata_pb2.Instrument(symbol="BTC-USD", tick_size="0.01", lot_size="0.0001")])

    @grpc_errors
    async def GetOrderBook(self, request, context):
        if request.instrument != "BTC-USD":
            raise server_errors.NotFound(f"no instrument {request.instrument}",
                                         reason="INSTRUMENT_NOT_FOUND")
        self.rec.time_remaining.append(context.time_remaining())
        return marketdata_pb2.GetOrderBookResponse(
            instrument="BTC-USD", sequence=7, bids=_levels(("100.00", "1.0")),
            asks=_levels(("101.00", "2.0"))[: request.depth or None])

    @grpc_errors
    async def ListTrades(self, request, context):
        trades = [marketdata_pb2.Trade(trade_id=str(i), sequence=i) for i in range(5, 0, -1)]
        size = request.page_size or 2
        start = int(request.page_token or 0)
        token = str(start + size) if start + size < len(trades) else ""
        return marketdata_pb2.ListTradesResponse(trades=trades[start:start + size],
                                                 next_page_token=token)

    @grpc_errors
    async def StreamOrderBook(self, request, context):
        n = self.rec.book_subscriptions.get(request.instrument, 0)
        self.rec.book_subscriptions[request.instrument] = n + 1
        for message in BOOK_SCRIPTS[request.instrument][n]:
            yield message

    @grpc_errors
    async def StreamTrades(self, request, context):
        yield marketdata_pb2.StreamTradesResponse(trades=[
            marketdata_pb2.Trade(trade_id="1", price="100.00", sequence=1),
            marketdata_pb2.Trade(trade_id="2", price="100.50", sequence=2)])
        yield marketdata_pb2.StreamTradesResponse(trades=[
            marketdata_pb2.Trade(trade_id="3", price="101.00", sequence=3)])


@pytest_asyncio.fixture
async def server():
    rec = Recorder()
    srv = grpc.aio.server()
    order_pb2_grpc.add_OrderServiceServicer_to_server(FakeOrders(rec), srv)
    marketdata_pb2_grpc.add_MarketDataServiceServicer_to_server(FakeMarketData(rec), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    rec.addr = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        yield rec
    finally:
        await srv.stop(None)


@pytest_asyncio.fixture
async def client(server):
    async with AsyncExchangeClient(server.addr, server.addr, api_key=API_KEY,
                                   timeout=2.0) as c:
        yield c


# -- exact decimals -------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("70000.50"), "70000.50"),
    ("70000.50", "70000.50"),
    ("0.010", "0.010"),  # digits kept as written
    (" 0.5 ", "0.5"),
    ("1E+3", "1000"),  # never exponent form on the wire
    (Decimal("1E-8"), "0.00000001"),
    (Decimal("123456789012345678.123456789012345678"), "123456789012345678.123456789012345678"),
    (5, "5"),
])
def test_decimal_string_is_exact(value, text):
    assert decimal_string(value, "price") == text


@pytest.mark.parametrize("value", [0.1, 70000.0, float("nan")])
def test_float_is_rejected(value):
    with pytest.raises(TypeError, match="float"):
        decimal_string(value, "price")


@pytest.mark.parametrize("value", [True, None, [1], b"1"])
def test_other_types_are_rejected(value):
    with pytest.raises(TypeError):
        decimal_string(value, "quantity")


@pytest.mark.parametrize("value", ["abc", "", "NaN", "Infinity", "1,5", Decimal("sNaN")])
def test_junk_is_rejected(value):
    with pytest.raises(ValueError):
        decimal_string(value, "quantity")


def test_enum_names():
    assert side("buy") == side("BUY") == side("SIDE_BUY") == common_pb2.SIDE_BUY
    assert side(common_pb2.SIDE_SELL) == common_pb2.SIDE_SELL
    assert time_in_force(None) == common_pb2.TIME_IN_FORCE_UNSPECIFIED
    assert time_in_force("fok") == common_pb2.TIME_IN_FORCE_FOK
    assert status_filter("all") == order_pb2.ORDER_STATUS_FILTER_UNSPECIFIED
    assert status_filter("open") == order_pb2.ORDER_STATUS_FILTER_OPEN
    for bad in ("hold", 0, 7, None):
        with pytest.raises(ValueError):
            side(bad)


async def test_float_rejected_before_any_call(client, server):
    with pytest.raises(TypeError):
        await client.create_order("BTC-USD", "buy", "0.01", price=70000.5)
    with pytest.raises(TypeError):
        await client.create_order("BTC-USD", "buy", 0.01, price="70000.5")
    with pytest.raises(ValueError, match="needs a price"):
        await client.create_order("BTC-USD", "buy", "0.01")
    with pytest.raises(ValueError, match="no price"):
        await client.create_order("BTC-USD", "buy", "0.01", price="1", type="market")
    with pytest.raises(ValueError, match="exactly one"):
        await client.get_order("1", client_order_id="x")
    assert server.requests == []


# -- calls and their requests -----------------------------------------------------


async def test_create_order_sends_exact_strings_key_and_deadline(client, server):
    response = await client.create_order(
        "BTC-USD", "sell", Decimal("0.0100"), price="7E+4", time_in_force="ioc",
        client_order_id="my-id-1", post_only=True)
    request = server.requests[-1]
    assert request.price == "70000" and request.quantity == "0.0100"
    assert request.side == common_pb2.SIDE_SELL
    assert request.type == common_pb2.ORDER_TYPE_LIMIT
    assert request.time_in_force == common_pb2.TIME_IN_FORCE_IOC
    assert request.client_order_id == "my-id-1" and request.post_only
    assert server.metadata[-1]["x-api-key"] == API_KEY
    remaining = server.time_remaining[-1]
    # the deadline travels (gRPC may round it up by a few ms on the server side)
    assert remaining is not None and 0 < remaining <= 2.05
    assert response.order.order_id == "1001" and response.order.price == "70000"


async def test_create_order_market_and_generated_client_order_id(client, server):
    await client.create_order("BTC-USD", "buy", "0.5", type="market")
    first = server.requests[-1]
    await client.create_order("BTC-USD", "buy", "0.5", type="market")
    second = server.requests[-1]
    assert first.type == common_pb2.ORDER_TYPE_MARKET and first.price == ""
    assert first.client_order_id and first.client_order_id != second.client_order_id
    assert len(first.client_order_id) <= 64 and first.client_order_id.isalnum()


async def test_cancel_and_get_by_either_id(client, server):
    order = await client.cancel_order(client_order_id="abc")
    assert order.client_order_id == "abc"
    assert order.state == common_pb2.ORDER_STATE_CANCELLED
    got = await client.get_order("42")
    assert got.order.order_id == "42"


async def test_pages(client, server):
    page = await client.list_orders("BTC-USD", "open", page_size=2)
    assert [o.order_id for o in page.orders] == ["2000", "2001"] and page.next_page_token == "2"
    request = server.requests[-1]
    assert request.status == order_pb2.ORDER_STATUS_FILTER_OPEN and request.instrument == "BTC-USD"
    every = [o.order_id async for o in client.iter_orders()]
    assert every == [str(2000 + i) for i in range(7)]
    five = [o.order_id async for o in client.iter_orders(limit=5)]
    assert five == [str(2000 + i) for i in range(5)]
    trades = [t.trade_id async for t in client.iter_trades("BTC-USD")]
    assert trades == ["5", "4", "3", "2", "1"]
    fills = [f.order_id async for f in client.iter_fills(order_id="9")]
    assert fills == ["9"]


async def test_market_data_calls(client, server):
    instruments = await client.list_instruments()
    assert [i.symbol for i in instruments] == ["BTC-USD"]
    book = await client.get_order_book("BTC-USD", depth=1)
    assert book.sequence == 7 and book.asks[0].price == "101.00"
    assert server.time_remaining[-1] is not None
    trades = [t.trade_id async for t in client.stream_trades("BTC-USD")]
    assert trades == ["1", "2", "3"]


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(SERVER_ERRORS))
async def test_status_codes_map_to_typed_errors(client, code):
    with pytest.raises(ExchangeError) as info:
        await client.get_order(f"ERR:{code}")
    err = info.value
    assert type(err) is CLIENT_ERRORS[code]
    assert err.code == getattr(grpc.StatusCode, code)
    assert exception_class_for_grpc_status(err.code) is CLIENT_ERRORS[code]
    assert err.reason == f"TEST_{code}"
    assert err.domain == "exchange" and err.metadata == {"code": code}
    assert err.message == f"failing with {code}"
    assert isinstance(err.rpc_error, grpc.aio.AioRpcError)
    if code == "INVALID_ARGUMENT":
        assert err.field_violations == [
            FieldViolation("order_id", f"failing with {code}", f"TEST_{code}")]
    else:
        assert err.field_violations == []


async def test_invalid_argument_carries_reason_and_field(client):
    with pytest.raises(InvalidArgument) as info:
        await client.create_order("BTC-USD", "buy", "0.01", price="70000.001")
    err = info.value
    assert err.reason == "PRICE_OFF_TICK"
    assert [v.field for v in err.field_violations] == ["price"]
    assert str(err) == ("INVALID_ARGUMENT (PRICE_OFF_TICK) price: price 70000.001 is not a "
                        "multiple of the price step 0.01")


async def test_bad_and_missing_api_key(server):
    async with AsyncExchangeClient(server.addr, server.addr, api_key="wrong") as c:
        with pytest.raises(Unauthenticated) as info:
            await c.list_orders()
        assert info.value.reason == "API_KEY_INVALID"
    async with AsyncExchangeClient(server.addr, server.addr) as c:
        with pytest.raises(Unauthenticated) as info:
            await c.list_orders()
        assert info.value.reason == "API_KEY_MISSING" and info.value.rpc_error is None
        assert len(await c.list_instruments()) == 1  # market data needs no key


async def test_deadline_is_enforced(server):
    async with AsyncExchangeClient(server.addr, server.addr, api_key=API_KEY,
                                   timeout=0.2) as c:
        with pytest.raises(DeadlineExceeded):
            await c.get_order("slow")


async def test_unavailable():
    async with AsyncExchangeClient("127.0.0.1:1", "127.0.0.1:1", api_key="k",
                                   timeout=2.0) as c:
        with pytest.raises(Unavailable) as info:
            await c.list_instruments()
        assert "\n" not in str(info.value) and str(info.value).startswith("UNAVAILABLE ")


def test_error_text_without_details():
    err = NotFound("order 5 not found", reason="ORDER_NOT_FOUND")
    assert str(err) == "NOT_FOUND (ORDER_NOT_FOUND) order 5 not found"
    assert str(NotFound("x", reason="NOT_FOUND")) == "NOT_FOUND x"
    other = ExchangeError("boom", code=grpc.StatusCode.DATA_LOSS)
    assert str(other) == "DATA_LOSS boom" and other.code == grpc.StatusCode.DATA_LOSS


def test_client_made_outside_a_loop():
    AsyncExchangeClient()  # channels are created lazily, inside the loop that uses them


# -- the local book -----------------------------------------------------------------


def test_local_book_snapshot_deltas_and_order():
    book = LocalOrderBook("BTC-USD", verify=False)  # messages without checksums
    assert not book.ready
    book.apply(_snapshot(10, bids=[("9.50", "1"), ("10.00", "2")],
                         asks=[("10.50", "1"), ("100.00", "4"), ("11.00", "3")]))
    # Decimal order, not string order: 10.00 > 9.50 and 11.00 < 100.00.
    assert [lv.price for lv in book.bids()] == [Decimal("10.00"), Decimal("9.50")]
    assert [str(lv.price) for lv in book.asks()] == ["10.50", "11.00", "100.00"]
    assert [str(lv.price) for lv in book.asks(2)] == ["10.50", "11.00"]
    assert book.spread == Decimal("0.50") and book.sequence == 10

    book.apply(_delta(11, 13, bids=[("10.00", "0.0000"), ("9.75", "5")],
                      asks=[("10.50", "0.5")]))
    assert book.sequence == 13
    assert [(str(lv.price), str(lv.quantity)) for lv in book.bids()] == [
        ("9.75", "5"), ("9.50", "1")]
    assert book.best_ask.quantity == Decimal("0.5")

    # A gap raises and leaves the book as it was.
    with pytest.raises(SequenceGap) as info:
        book.apply(_delta(15, 15, bids=[("9.90", "1")]))
    assert info.value.expected == 14 and info.value.first_sequence == 15
    assert book.sequence == 13 and book.best_bid.price == Decimal("9.75")
    # A duplicate (already applied) delta is not contiguous either.
    with pytest.raises(SequenceGap):
        book.apply(_delta(13, 13))

    # A fresh snapshot (sent to a slow subscriber) replaces everything.
    book.apply(_snapshot(40, asks=[("12.00", "1")]))
    assert book.bids() == [] and book.sequence == 40 and book.spread is None
    assert book.snapshots == 2 and book.deltas == 1


def test_delta_before_snapshot_is_a_gap():
    with pytest.raises(SequenceGap):
        LocalOrderBook().apply(_delta(1, 1))


async def test_watch_order_book_resubscribes_on_gap(client, server):
    seen = []
    async for book in client.watch_order_book("BTC-USD"):
        seen.append(book.sequence)
    assert seen == [10, 12, 20, 21]
    assert server.book_subscriptions["BTC-USD"] == 2
    assert book.resubscribes == 1
    assert [(str(lv.price), str(lv.quantity)) for lv in book.bids()] == [("99.00", "3.0")]
    assert [str(lv.price) for lv in book.asks()] == ["102.00"]


async def test_watch_order_book_gives_up_after_max_resubscribes(client, server):
    with pytest.raises(SequenceGap):
        async for _ in client.watch_order_book("GAPPY", max_resubscribes=2):
            pass
    assert server.book_subscriptions["GAPPY"] == 3


async def test_stream_errors_are_typed(client):
    with pytest.raises(NotFound) as info:
        await client.get_order_book("NOPE-USD")
    assert info.value.reason == "INSTRUMENT_NOT_FOUND"


# -- the sync client, on the same server (run in a thread: the server shares this loop) ---


async def test_sync_client(server):
    def scenario() -> dict[str, object]:
        out: dict[str, object] = {}
        with ExchangeClient(server.addr, server.addr, api_key=API_KEY, timeout=2.0) as c:
            out["created"] = c.create_order("BTC-USD", "buy", "0.01", price=Decimal("70000.10"))
            try:
                c.create_order("BTC-USD", "buy", "0.01", price="70000.001")
            except InvalidArgument as err:
                out["error"] = err
            try:
                c.create_order("BTC-USD", "buy", "0.01", price=1.5)
            except TypeError as err:
                out["float"] = err
            out["orders"] = [o.order_id for o in c.iter_orders(limit=4)]
            out["books"] = [b.sequence for b in c.watch_order_book("BTC-USD")]
            out["trades"] = [t.trade_id for t in c.stream_trades("BTC-USD")]
            out["cancelled"] = c.cancel_order("5")
            try:
                c.get_order("ERR:FAILED_PRECONDITION")
            except FailedPrecondition as err:
                out["precondition"] = err
        return out

    out = await asyncio.to_thread(scenario)
    assert out["created"].order.price == "70000.10"
    assert server.metadata[0]["x-api-key"] == API_KEY
    assert out["error"].reason == "PRICE_OFF_TICK"
    assert out["error"].field_violations[0].field == "price"
    assert isinstance(out["float"], TypeError)
    assert out["orders"] == ["2000", "2001", "2002", "2003"]
    assert out["books"] == [10, 12, 20, 21]
    assert out["trades"] == ["1", "2", "3"]
    assert out["cancelled"].order_id == "5"
    assert out["precondition"].reason == "TEST_FAILED_PRECONDITION"
