"""The public ``exchange.marketdata.v1.MarketDataService``: proto in, proto (or bytes) out.

The two streaming methods yield pre-serialized ``bytes`` shared by every subscriber; they are
registered with a response serializer that passes bytes through (``RESPONSE_SERIALIZERS``).

Slow subscribers (``subscriber_queue`` updates behind): a StreamOrderBook subscriber gets a
fresh snapshot instead of its backlog. A StreamTrades subscriber gets, instead of its backlog,
one message with the trades it has not seen that are still among the ``recent_trades`` kept in
memory (older ones are lost to it; ``ListTrades`` has them, each trade carries its sequence).
The same happens after an instrument is rebuilt from PostgreSQL because of a stream gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.marketdata.v1 import marketdata_pb2_grpc as md_pb2_grpc
from exchange_common.errors import InvalidArgument, NotFound, Unavailable, clip, grpc_errors
from exchange_common.paging import INT64_MAX, PageTokens, page_size
from exchange_common.slots import StreamSlots
from marketdata_service.candles import INTERVALS, candle_range
from marketdata_service.fanout import Subscriber, SubscriptionClosed
from marketdata_service.feed import MarketFeed
from marketdata_service.market import InstrumentMarket
from marketdata_service.store import MAX_MICROS

SERVICE = md_pb2.DESCRIPTOR.services_by_name["MarketDataService"]

# StreamOrderBook: depth 0 (all) or up to this; interval_ms 0 or within the bounds.
MAX_STREAM_DEPTH = 1000
MIN_BOOK_INTERVAL_MS = 10
MIN_TICKER_INTERVAL_MS = 100
MAX_INTERVAL_MS = 60_000
DEFAULT_TICKER_INTERVAL_MS = 1000
# google.protobuf.Timestamp's range: 0001-01-01 to 9999-12-31.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799


def _trades_filters(instrument_id: int) -> tuple:
    return ("trades", instrument_id)


class MarketDataServicer(md_pb2_grpc.MarketDataServiceServicer):
    def __init__(self, feed: MarketFeed, *, queue_limit: int, page_tokens: PageTokens,
                 max_lag: float = float("inf"), max_subscribers: int = 10_000,
                 max_streams_per_connection: int = 100, heartbeat: float = 1.0) -> None:
        self.feed = feed
        self.heartbeat = heartbeat
        self.page_tokens = page_tokens
        self.queue_limit = queue_limit
        self.max_lag = max_lag
        # Both streams count against the same bounds.
        self.slots = StreamSlots(max_streams_per_connection, max_subscribers,
                                 what="subscriptions")

    def _market(self, symbol: str) -> InstrumentMarket:
        if not symbol:
            raise InvalidArgument("instrument is required", field="instrument",
                                  reason="INSTRUMENT_REQUIRED")
        if not self.feed.ready.is_set():
            raise Unavailable("market data is loading", reason="NOT_READY")
        market = self.feed.market(symbol) or self.feed.market(symbol.upper())
        if market is None:
            raise NotFound(f"unknown instrument {clip(symbol)!r}", reason="INSTRUMENT_NOT_FOUND",
                           metadata={"instrument": clip(symbol)})
        return market

    @grpc_errors
    async def ListInstruments(self, request: md_pb2.ListInstrumentsRequest,
                              context: grpc.aio.ServicerContext) -> md_pb2.ListInstrumentsResponse:
        if not self.feed.ready.is_set():
            raise Unavailable("market data is loading", reason="NOT_READY")
        markets = sorted(self.feed.markets.values(), key=lambda m: m.instrument_id)
        return md_pb2.ListInstrumentsResponse(instruments=[m.wire.instrument() for m in markets])

    @grpc_errors
    async def GetOrderBook(self, request: md_pb2.GetOrderBookRequest,
                           context: grpc.aio.ServicerContext) -> md_pb2.GetOrderBookResponse:
        if request.depth < 0:
            raise InvalidArgument("depth must be 0 (all levels) or positive", field="depth",
                                  reason="INVALID_DEPTH")
        market = self._market(request.instrument)
        return market.wire.order_book(market.book, request.depth, market.time_unix_nanos)

    @grpc_errors
    async def StreamOrderBook(self, request: md_pb2.StreamOrderBookRequest,
                              context: grpc.aio.ServicerContext):
        depth = request.depth
        if not 0 <= depth <= MAX_STREAM_DEPTH:
            raise InvalidArgument(f"depth must be 0 (all levels) or 1-{MAX_STREAM_DEPTH}",
                                  field="depth", reason="INVALID_DEPTH")
        interval_ms = request.interval_ms
        if interval_ms and not MIN_BOOK_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
            raise InvalidArgument(
                f"interval_ms must be 0 or {MIN_BOOK_INTERVAL_MS}-{MAX_INTERVAL_MS}",
                field="interval_ms", reason="INVALID_INTERVAL")
        market = self._market(request.instrument)

        def subscribe(queue_limit: int, max_lag: float) -> Subscriber:
            return market.subscribe_book(queue_limit, max_lag, depth=depth,
                                         interval=interval_ms / 1000)

        async for message in self._follow(market, subscribe, context):
            yield message

    @grpc_errors
    async def ListTrades(self, request: md_pb2.ListTradesRequest,
                         context: grpc.aio.ServicerContext) -> md_pb2.ListTradesResponse:
        size = page_size(request.page_size)
        market = self._market(request.instrument)
        filters = _trades_filters(market.instrument_id)
        position = self.page_tokens.decode(request.page_token, filters, (INT64_MAX,))
        before = position[0] if position else None
        trades = await self.feed.trades_page(market, before, size + 1)
        response = md_pb2.ListTradesResponse(
            trades=[market.wire.trade(t) for t in trades[:size]])
        if len(trades) > size:
            response.next_page_token = self.page_tokens.encode([trades[size - 1].trade_id],
                                                                filters)
        return response

    @grpc_errors
    async def StreamTrades(self, request: md_pb2.StreamTradesRequest,
                           context: grpc.aio.ServicerContext):
        market = self._market(request.instrument)
        async for message in self._follow(market, market.subscribe_trades, context):
            yield message

    @grpc_errors
    async def GetTicker(self, request: md_pb2.GetTickerRequest,
                        context: grpc.aio.ServicerContext) -> md_pb2.GetTickerResponse:
        market = self._market(request.instrument)
        return md_pb2.GetTickerResponse(ticker=market.ticker()[0])

    @grpc_errors
    async def StreamTicker(self, request: md_pb2.StreamTickerRequest,
                           context: grpc.aio.ServicerContext):
        interval_ms = request.interval_ms or DEFAULT_TICKER_INTERVAL_MS
        if not MIN_TICKER_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
            raise InvalidArgument(
                f"interval_ms must be 0 (1000) or {MIN_TICKER_INTERVAL_MS}-{MAX_INTERVAL_MS}",
                field="interval_ms", reason="INVALID_INTERVAL")
        market = self._market(request.instrument)
        with self.slots.hold(context):
            try:
                async for message in market.ticker_updates(interval_ms / 1000,
                                                           self.heartbeat):
                    yield message
            except SubscriptionClosed:
                raise Unavailable("the server is shutting down; resubscribe",
                                  reason="SHUTTING_DOWN") from None

    @grpc_errors
    async def ListCandles(self, request: md_pb2.ListCandlesRequest,
                          context: grpc.aio.ServicerContext) -> md_pb2.ListCandlesResponse:
        interval = INTERVALS.get(_enum_name(md_pb2.CandleInterval, request.interval))
        if interval is None:
            raise InvalidArgument("interval must be one of " + ", ".join(INTERVALS),
                                  field="interval", reason="INVALID_INTERVAL")
        start = _nanos(request, "start_time")
        end = _nanos(request, "end_time")
        if start is not None and end is not None and end < start:
            raise InvalidArgument("end_time must not be before start_time", field="end_time",
                                  reason="INVALID_TIME_RANGE")
        size = page_size(request.page_size)
        market = self._market(request.instrument)
        low, high = candle_range(interval, start, end, MAX_MICROS)
        filters = ("candles", market.instrument_id, request.interval, start, end)
        position = self.page_tokens.decode(request.page_token, filters, (MAX_MICROS,))
        if position is not None:
            low = max(low, position[0])
        candles, following = await self.feed.store.candles(market.instrument_id, interval,
                                                           low, high, size)
        response = md_pb2.ListCandlesResponse(candles=[market.wire.candle(c) for c in candles])
        if following is not None:
            response.next_page_token = self.page_tokens.encode([following], filters)
        return response

    @grpc_errors
    async def StreamOrderBookL3(self, request: md_pb2.StreamOrderBookL3Request,
                                context: grpc.aio.ServicerContext):
        market = self._market(request.instrument)
        async for message in self._follow(market, market.subscribe_l3, context):
            yield message

    async def _follow(self, market: InstrumentMarket,
                      subscribe: Callable[[int, float], Subscriber],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """A subscription's messages, holding a stream slot while it lasts."""
        with self.slots.hold(context):
            sub = subscribe(self.queue_limit, self.max_lag)
            try:
                while True:
                    yield await sub.next()
            except SubscriptionClosed:
                raise Unavailable("the server is shutting down; resubscribe",
                                  reason="SHUTTING_DOWN") from None
            finally:
                market.unsubscribe(sub)


def _serialize(response: bytes | md_pb2.StreamOrderBookResponse) -> bytes:
    """Pass pre-serialized updates through; serialize anything else."""
    if isinstance(response, bytes):
        return response
    return response.SerializeToString()


def _enum_name(enum, number: int) -> str:
    try:
        return enum.Name(number)
    except ValueError:
        return ""


def _nanos(request: md_pb2.ListCandlesRequest, field: str) -> int | None:
    """A request's timestamp in nanoseconds since the epoch (None: not set)."""
    if not request.HasField(field):
        return None
    ts = getattr(request, field)
    if not (MIN_SECONDS <= ts.seconds <= MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument(f"{field} is not a valid timestamp (years 1-9999)", field=field,
                              reason="INVALID_TIMESTAMP")
    return ts.seconds * 1_000_000_000 + ts.nanos


# The streams yield bytes: serialized once, shared by every subscriber.
RESPONSE_SERIALIZERS = {"StreamOrderBook": _serialize, "StreamTrades": _serialize,
                        "StreamTicker": _serialize, "StreamOrderBookL3": _serialize}
