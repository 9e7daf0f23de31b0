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
from marketdata_service.fanout import Subscriber, SubscriptionClosed
from marketdata_service.feed import MarketFeed
from marketdata_service.market import InstrumentMarket

SERVICE = md_pb2.DESCRIPTOR.services_by_name["MarketDataService"]


def _trades_filters(instrument_id: int) -> tuple:
    return ("trades", instrument_id)


class MarketDataServicer(md_pb2_grpc.MarketDataServiceServicer):
    def __init__(self, feed: MarketFeed, *, queue_limit: int, page_tokens: PageTokens,
                 max_lag: float = float("inf"), max_subscribers: int = 10_000,
                 max_streams_per_connection: int = 100) -> None:
        self.feed = feed
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
        market = self._market(request.instrument)
        async for message in self._follow(market, market.subscribe_book, context):
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


# The streams yield bytes: serialized once, shared by every subscriber.
RESPONSE_SERIALIZERS = {"StreamOrderBook": _serialize, "StreamTrades": _serialize}
