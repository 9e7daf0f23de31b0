"""The synchronous client: :class:`ExchangeClient`, for scripts.

The same API as :class:`exchange_client.aio.AsyncExchangeClient` on plain
(blocking) gRPC channels; iterators are ordinary generators.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from typing import Any

import grpc

from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc
from exchange.order.v1 import order_pb2, order_pb2_grpc
from exchange_client import _convert as cv
from exchange_client._convert import DecimalLike, TimeLike
from exchange_client._tls import channel_credentials
from exchange_client.aio import (
    DEFAULT_CHANNEL_OPTIONS,
    DEFAULT_MARKETDATA_ADDR,
    DEFAULT_ORDER_ADDR,
    DEFAULT_TIMEOUT,
    _need_key,
)
from exchange_client.book import (
    ChecksumMismatch,
    Followed,
    LocalL3Book,
    LocalOrderBook,
    SequenceGap,
    resubscribe_delay,
)
from exchange_client.errors import Unavailable, from_grpc_error
from exchange_client.sync_session import OrderEntrySession
from exchange_client.updates import Resubscribe, UpdateCursor


class ExchangeClient:
    """Blocking client for the order and market-data services.

    One long-lived channel per service (created on first use, safe to share
    between threads), a deadline of ``timeout`` seconds on every unary call,
    ``x-api-key`` metadata, TLS as in the async client (``tls``, ``ca_file``,
    ``cert_file``, ``key_file``). Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        order_addr: str = DEFAULT_ORDER_ADDR,
        marketdata_addr: str = DEFAULT_MARKETDATA_ADDR,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        channel_options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS,
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        self.order_addr = order_addr
        self.marketdata_addr = marketdata_addr
        self.api_key = api_key
        self.timeout = timeout
        self._options = list(channel_options)
        self._credentials = channel_credentials(tls=tls, ca_file=ca_file, cert_file=cert_file,
                                                key_file=key_file)
        self.tls = self._credentials is not None
        self._lock = threading.Lock()
        self._order_channel: grpc.Channel | None = None
        self._md_channel: grpc.Channel | None = None
        self._order_stub: order_pb2_grpc.OrderServiceStub | None = None
        self._md_stub: marketdata_pb2_grpc.MarketDataServiceStub | None = None

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            channels = [c for c in (self._order_channel, self._md_channel) if c is not None]
            self._order_channel = self._md_channel = None
            self._order_stub = self._md_stub = None
        for channel in channels:
            channel.close()

    def _channel(self, addr: str) -> grpc.Channel:
        if self._credentials is None:
            return grpc.insecure_channel(addr, options=self._options)
        return grpc.secure_channel(addr, self._credentials, options=self._options)

    def _orders(self) -> order_pb2_grpc.OrderServiceStub:
        with self._lock:
            if self._order_stub is None:
                self._order_channel = self._channel(self.order_addr)
                self._order_stub = order_pb2_grpc.OrderServiceStub(self._order_channel)
            return self._order_stub

    def _marketdata(self) -> marketdata_pb2_grpc.MarketDataServiceStub:
        with self._lock:
            if self._md_stub is None:
                self._md_channel = self._channel(self.marketdata_addr)
                self._md_stub = marketdata_pb2_grpc.MarketDataServiceStub(self._md_channel)
            return self._md_stub

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.api_key),) if self.api_key else ()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata())
        except grpc.RpcError as err:
            raise from_grpc_error(err) from err

    def _stream(self, method: Any, request: Any, timeout: float | None) -> Iterator[Any]:
        call = method(request, timeout=timeout, metadata=self._metadata())
        try:
            yield from call
        except grpc.RpcError as err:
            raise from_grpc_error(err) from err
        finally:
            call.cancel()

    # -- orders -------------------------------------------------------------

    def create_order(
        self,
        instrument: str,
        side: str,
        quantity: DecimalLike | None,
        *,
        price: DecimalLike | None = None,
        type: str = "limit",  # noqa: A002
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        post_only: bool = False,
        funds: DecimalLike | None = None,
        self_trade_prevention: str | None = None,
        stop_price: DecimalLike | None = None,
        expire_time: TimeLike | None = None,
    ) -> order_pb2.CreateOrderResponse:
        """See :meth:`AsyncExchangeClient.create_order`."""
        _need_key(self.api_key)
        request = cv.create_order_request(
            instrument, side, quantity, price=price, type_=type,
            time_in_force_=cv.gtt_if_expiring(time_in_force, expire_time),
            client_order_id=client_order_id, post_only=post_only, funds=funds,
            self_trade_prevention_=self_trade_prevention, stop_price=stop_price,
            expire_time=expire_time,
        )
        return self._call(self._orders().CreateOrder, request)

    def cancel_order(self, order_id: str | None = None, *,
                     client_order_id: str | None = None) -> order_pb2.Order:
        _need_key(self.api_key)
        request = cv.cancel_order_request(order_id, client_order_id)
        return self._call(self._orders().CancelOrder, request).order

    def cancel_all_orders(self, instrument: str | None = None, side: str | None = None
                          ) -> list[order_pb2.Order]:
        """See :meth:`AsyncExchangeClient.cancel_all_orders`."""
        _need_key(self.api_key)
        request = cv.cancel_all_orders_request(instrument, side)
        return list(self._call(self._orders().CancelAllOrders, request).orders)

    def amend_order(self, order_id: str | None = None, *, client_order_id: str | None = None,
                    price: DecimalLike | None = None, quantity: DecimalLike | None = None
                    ) -> order_pb2.AmendOrderResponse:
        """See :meth:`AsyncExchangeClient.amend_order`."""
        _need_key(self.api_key)
        request = cv.amend_order_request(order_id, client_order_id, price, quantity)
        return self._call(self._orders().AmendOrder, request)

    def order_entry(self, *, cancel_on_disconnect: bool = False, dead_man_seconds: int = 0
                    ) -> OrderEntrySession:
        """An OrderEntry session: ``with client.order_entry(...) as session:``
        (exchange_client.sync_session)."""
        _need_key(self.api_key)
        return OrderEntrySession(self._orders(), self._metadata(),
                                 cancel_on_disconnect=cancel_on_disconnect,
                                 dead_man_seconds=dead_man_seconds)

    def get_order(self, order_id: str | None = None, *,
                  client_order_id: str | None = None) -> order_pb2.GetOrderResponse:
        _need_key(self.api_key)
        request = cv.get_order_request(order_id, client_order_id)
        return self._call(self._orders().GetOrder, request)

    def list_orders(self, instrument: str | None = None, status: str = "all", *,
                    page_size: int = 0, page_token: str = "") -> order_pb2.ListOrdersResponse:
        _need_key(self.api_key)
        request = cv.list_orders_request(instrument, status, page_size, page_token)
        return self._call(self._orders().ListOrders, request)

    def iter_orders(self, instrument: str | None = None, status: str = "all", *,
                    page_size: int = 0, limit: int | None = None) -> Iterator[order_pb2.Order]:
        size = cv.page_size_for(page_size, limit)
        yield from _pages(
            lambda token: self.list_orders(instrument, status, page_size=size, page_token=token),
            "orders", limit,
        )

    def list_fills(self, instrument: str | None = None, order_id: str | None = None, *,
                   page_size: int = 0, page_token: str = "") -> order_pb2.ListFillsResponse:
        _need_key(self.api_key)
        request = cv.list_fills_request(instrument, order_id, page_size, page_token)
        return self._call(self._orders().ListFills, request)

    def iter_fills(self, instrument: str | None = None, order_id: str | None = None, *,
                   page_size: int = 0, limit: int | None = None) -> Iterator[order_pb2.Fill]:
        size = cv.page_size_for(page_size, limit)
        yield from _pages(
            lambda token: self.list_fills(instrument, order_id, page_size=size, page_token=token),
            "fills", limit,
        )

    # -- money ----------------------------------------------------------------

    def get_balances(self, asset: str | None = None) -> list[order_pb2.Balance]:
        _need_key(self.api_key)
        response = self._call(self._orders().GetBalances,
                              order_pb2.GetBalancesRequest(asset=asset or ""))
        return list(response.balances)

    def list_ledger_entries(self, asset: str | None = None, *, page_size: int = 0,
                            page_token: str = "") -> order_pb2.ListLedgerEntriesResponse:
        _need_key(self.api_key)
        request = order_pb2.ListLedgerEntriesRequest(asset=asset or "", page_size=page_size,
                                                     page_token=page_token or "")
        return self._call(self._orders().ListLedgerEntries, request)

    def iter_ledger_entries(self, asset: str | None = None, *, page_size: int = 0,
                            limit: int | None = None) -> Iterator[order_pb2.LedgerEntry]:
        size = cv.page_size_for(page_size, limit)
        yield from _pages(
            lambda token: self.list_ledger_entries(asset, page_size=size, page_token=token),
            "entries", limit,
        )

    def stream_order_updates(self, after: int | None = None, *, timeout: float | None = None
                             ) -> Generator[order_pb2.StreamOrderUpdatesResponse]:
        _need_key(self.api_key)
        request = order_pb2.StreamOrderUpdatesRequest()
        if after is not None:
            request.after_sequence = after
        yield from self._stream(self._orders().StreamOrderUpdates, request, timeout)

    def order_updates(self, after: int | None = None, *, max_backoff: float = 2.0
                      ) -> Iterator[order_pb2.OrderUpdate]:
        """Every update of the caller's orders after ``after``, each once, resuming by
        itself (see AsyncExchangeClient.order_updates)."""
        cursor = UpdateCursor(after)
        while True:
            try:
                with closing(self.stream_order_updates(cursor.position)) as messages:
                    for message in messages:
                        yield from cursor.take(message)
            except (Unavailable, Resubscribe):
                pass
            wait = cursor.backoff(max_backoff)
            if wait:
                time.sleep(wait)

    # -- market data --------------------------------------------------------

    def list_instruments(self) -> list[marketdata_pb2.Instrument]:
        response = self._call(
            self._marketdata().ListInstruments, marketdata_pb2.ListInstrumentsRequest()
        )
        return list(response.instruments)

    def get_order_book(self, instrument: str, depth: int = 0
                       ) -> marketdata_pb2.GetOrderBookResponse:
        request = marketdata_pb2.GetOrderBookRequest(instrument=instrument, depth=depth)
        return self._call(self._marketdata().GetOrderBook, request)

    def list_trades(self, instrument: str, *, page_size: int = 0, page_token: str = ""
                    ) -> marketdata_pb2.ListTradesResponse:
        request = cv.list_trades_request(instrument, page_size, page_token)
        return self._call(self._marketdata().ListTrades, request)

    def iter_trades(self, instrument: str, *, page_size: int = 0, limit: int | None = None
                    ) -> Iterator[marketdata_pb2.Trade]:
        size = cv.page_size_for(page_size, limit)
        yield from _pages(
            lambda token: self.list_trades(instrument, page_size=size, page_token=token),
            "trades", limit,
        )

    def stream_order_book(self, instrument: str, *, depth: int = 0, interval_ms: int = 0,
                          timeout: float | None = None
                          ) -> Generator[marketdata_pb2.StreamOrderBookResponse]:
        request = marketdata_pb2.StreamOrderBookRequest(instrument=instrument, depth=depth,
                                                        interval_ms=interval_ms)
        yield from self._stream(self._marketdata().StreamOrderBook, request, timeout)

    def watch_order_book(
        self, instrument: str, *, book: LocalOrderBook | None = None,
        max_resubscribes: int | None = None, depth: int = 0, interval_ms: int = 0,
    ) -> Iterator[LocalOrderBook]:
        """See :meth:`AsyncExchangeClient.watch_order_book`."""
        book = book if book is not None else LocalOrderBook(instrument)
        yield from _follow(book, lambda: self.stream_order_book(
            instrument, depth=depth, interval_ms=interval_ms), max_resubscribes)

    def stream_trades(self, instrument: str, *, timeout: float | None = None
                      ) -> Iterator[marketdata_pb2.Trade]:
        request = marketdata_pb2.StreamTradesRequest(instrument=instrument)
        for message in self._stream(self._marketdata().StreamTrades, request, timeout):
            yield from message.trades

    def get_ticker(self, instrument: str) -> marketdata_pb2.Ticker:
        request = marketdata_pb2.GetTickerRequest(instrument=instrument)
        return self._call(self._marketdata().GetTicker, request).ticker

    def stream_ticker(self, instrument: str, *, interval_ms: int = 0,
                      timeout: float | None = None) -> Iterator[marketdata_pb2.Ticker]:
        request = marketdata_pb2.StreamTickerRequest(instrument=instrument,
                                                     interval_ms=interval_ms)
        for message in self._stream(self._marketdata().StreamTicker, request, timeout):
            yield message.ticker

    def list_candles(self, instrument: str, interval: str = "1m", *,
                     start: cv.TimeLike | None = None, end: cv.TimeLike | None = None,
                     page_size: int = 0, page_token: str = ""
                     ) -> marketdata_pb2.ListCandlesResponse:
        request = cv.list_candles_request(instrument, interval, start, end, page_size,
                                          page_token)
        return self._call(self._marketdata().ListCandles, request)

    def iter_candles(self, instrument: str, interval: str = "1m", *,
                     start: cv.TimeLike | None = None, end: cv.TimeLike | None = None,
                     page_size: int = 0, limit: int | None = None
                     ) -> Iterator[marketdata_pb2.Candle]:
        size = cv.page_size_for(page_size, limit)
        yield from _pages(
            lambda token: self.list_candles(instrument, interval, start=start, end=end,
                                            page_size=size, page_token=token),
            "candles", limit,
        )

    def stream_order_book_l3(self, instrument: str, *, timeout: float | None = None
                             ) -> Generator[marketdata_pb2.StreamOrderBookL3Response]:
        request = marketdata_pb2.StreamOrderBookL3Request(instrument=instrument)
        yield from self._stream(self._marketdata().StreamOrderBookL3, request, timeout)

    def watch_order_book_l3(self, instrument: str, *, book: LocalL3Book | None = None,
                            max_resubscribes: int | None = None) -> Iterator[LocalL3Book]:
        """See :meth:`AsyncExchangeClient.watch_order_book_l3`."""
        book = book if book is not None else LocalL3Book(instrument)
        yield from _follow(book, lambda: self.stream_order_book_l3(instrument),
                           max_resubscribes)



def _follow(book: Followed, stream: Callable[[], Generator[Any]],
            max_resubscribes: int | None) -> Iterator[Followed]:
    """See :meth:`AsyncExchangeClient._follow`."""
    failures = 0
    while True:
        gap: SequenceGap | ChecksumMismatch | None = None
        with closing(stream()) as updates:
            for update in updates:
                try:
                    book.apply(update)
                except (SequenceGap, ChecksumMismatch) as err:
                    gap = err
                    break
                if update.WhichOneof("update") == "delta":
                    failures = 0  # the stream follows on again
                yield book
        if gap is None:
            return
        failures += 1
        delay = resubscribe_delay(book, failures, gap, max_resubscribes)
        if delay:
            time.sleep(delay)


def _pages(fetch: Any, field: str, limit: int | None) -> Iterator[Any]:
    token, count = "", 0
    while True:
        page = fetch(token)
        for item in getattr(page, field):
            if limit is not None and count >= limit:
                return
            count += 1
            yield item
        token = page.next_page_token
        if not token or (limit is not None and count >= limit):
            return
