"""The asyncio client: :class:`AsyncExchangeClient`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Any

import grpc

from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc
from exchange.order.v1 import order_pb2, order_pb2_grpc
from exchange_client import _convert as cv
from exchange_client._convert import DecimalLike, TimeLike
from exchange_client._tls import channel_credentials
from exchange_client.book import (
    ChecksumMismatch,
    Followed,
    LocalL3Book,
    LocalOrderBook,
    SequenceGap,
    resubscribe_delay,
)
from exchange_client.errors import Unauthenticated, Unavailable, from_grpc_error
from exchange_client.session import AsyncOrderEntrySession
from exchange_client.updates import Resubscribe, UpdateCursor

DEFAULT_ORDER_ADDR = "127.0.0.1:50051"
DEFAULT_MARKETDATA_ADDR = "127.0.0.1:50052"
DEFAULT_TIMEOUT = 10.0

#: Keepalive so that a long-lived channel notices a dead peer; the servers
#: allow pings this often (exchange_common.server.server_options).
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)

API_KEY_MISSING = "API_KEY_MISSING"


def _need_key(api_key: str | None) -> None:
    if not api_key:
        raise Unauthenticated(
            "no API key: order calls need one (api_key=... / EXCHANGE_API_KEY)",
            reason=API_KEY_MISSING,
        )


class AsyncExchangeClient:
    """Async client for the order and market-data services.

    One long-lived ``grpc.aio`` channel per service, created on first use
    inside the running event loop (so the client may be constructed
    anywhere, but is used from one loop). Every unary call has a deadline of
    ``timeout`` seconds; streams run until the caller stops iterating.
    ``api_key`` goes as ``x-api-key`` metadata; order calls without one raise
    ``Unauthenticated`` (reason ``API_KEY_MISSING``) without calling.

    TLS: ``tls=True``, or ``ca_file`` (PEM of the CA that signed the servers'
    certificates; default the system's roots), plus ``cert_file`` and
    ``key_file`` for servers that require a client certificate. Without them
    the channels are plaintext.

    Use as ``async with AsyncExchangeClient(...) as client:`` or call
    :meth:`close`. Failed calls raise :mod:`exchange_client.errors` types.
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._order_channel: grpc.aio.Channel | None = None
        self._md_channel: grpc.aio.Channel | None = None
        self._order_stub: order_pb2_grpc.OrderServiceStub | None = None
        self._md_stub: marketdata_pb2_grpc.MarketDataServiceStub | None = None

    async def __aenter__(self) -> AsyncExchangeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close both channels (calls still running are cancelled)."""
        channels = [c for c in (self._order_channel, self._md_channel) if c is not None]
        self._order_channel = self._md_channel = None
        self._order_stub = self._md_stub = None
        self._loop = None
        for channel in channels:
            await channel.close()

    # -- channels -----------------------------------------------------------

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("AsyncExchangeClient is bound to another event loop")

    def _channel(self, addr: str) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(addr, options=self._options)
        return grpc.aio.secure_channel(addr, self._credentials, options=self._options)

    def _orders(self) -> order_pb2_grpc.OrderServiceStub:
        self._check_loop()
        if self._order_stub is None:
            self._order_channel = self._channel(self.order_addr)
            self._order_stub = order_pb2_grpc.OrderServiceStub(self._order_channel)
        return self._order_stub

    def _marketdata(self) -> marketdata_pb2_grpc.MarketDataServiceStub:
        self._check_loop()
        if self._md_stub is None:
            self._md_channel = self._channel(self.marketdata_addr)
            self._md_stub = marketdata_pb2_grpc.MarketDataServiceStub(self._md_channel)
        return self._md_stub

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.api_key),) if self.api_key else ()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata())
        except grpc.RpcError as err:
            raise from_grpc_error(err) from err

    async def _stream(self, method: Any, request: Any, timeout: float | None
                      ) -> AsyncIterator[Any]:
        call = method(request, timeout=timeout, metadata=self._metadata())
        try:
            async for message in call:
                yield message
        except grpc.RpcError as err:
            raise from_grpc_error(err) from err
        finally:
            call.cancel()

    # -- orders -------------------------------------------------------------

    async def create_order(
        self,
        instrument: str,
        side: str,
        quantity: DecimalLike | None,
        *,
        price: DecimalLike | None = None,
        type: str = "limit",  # noqa: A002 - the API's own word
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        post_only: bool = False,
        funds: DecimalLike | None = None,
        self_trade_prevention: str | None = None,
        stop_price: DecimalLike | None = None,
        expire_time: TimeLike | None = None,
    ) -> order_pb2.CreateOrderResponse:
        """Place an order; returns the response (``.order`` and ``.fills``).

        ``side`` "buy"/"sell"; ``type`` "limit" (needs ``price``) or "market"
        (no price); ``time_in_force`` "gtc"/"ioc"/"fok" or None for the
        server's default (GTC for limit, IOC for market). ``client_order_id``
        None means a random one is generated; retrying with the same id is
        safe (the server returns the original order). ``funds``: a market
        buy's budget in the quote asset, fees included (``quantity`` may then
        be None: as much as the funds pay for).

        ``self_trade_prevention``: "cancel_resting" (the server's default), "none",
        "cancel_incoming", "cancel_both" or "decrement". ``stop_price`` makes a stop
        (market) or stop-limit (limit) order. ``expire_time`` (an aware datetime or an
        ISO 8601 string) makes a good-till-time limit order (``time_in_force`` "gtt",
        implied when not given).
        """
        _need_key(self.api_key)
        request = cv.create_order_request(
            instrument, side, quantity, price=price, type_=type,
            time_in_force_=cv.gtt_if_expiring(time_in_force, expire_time),
            client_order_id=client_order_id, post_only=post_only, funds=funds,
            self_trade_prevention_=self_trade_prevention, stop_price=stop_price,
            expire_time=expire_time,
        )
        return await self._call(self._orders().CreateOrder, request)

    async def cancel_order(self, order_id: str | None = None, *,
                           client_order_id: str | None = None) -> order_pb2.Order:
        """Cancel by ``order_id`` or ``client_order_id``; returns the order after it."""
        _need_key(self.api_key)
        request = cv.cancel_order_request(order_id, client_order_id)
        response = await self._call(self._orders().CancelOrder, request)
        return response.order

    async def cancel_all_orders(self, instrument: str | None = None, side: str | None = None
                                ) -> list[order_pb2.Order]:
        """Cancel every open order (resting or untriggered), optionally of one
        ``instrument`` and/or ``side``; the orders cancelled. Safe to retry."""
        _need_key(self.api_key)
        request = cv.cancel_all_orders_request(instrument, side)
        response = await self._call(self._orders().CancelAllOrders, request)
        return list(response.orders)

    async def amend_order(self, order_id: str | None = None, *,
                          client_order_id: str | None = None,
                          price: DecimalLike | None = None,
                          quantity: DecimalLike | None = None
                          ) -> order_pb2.AmendOrderResponse:
        """Change a resting limit order's price and/or total quantity; the response
        (``.order`` and ``.fills``)."""
        _need_key(self.api_key)
        request = cv.amend_order_request(order_id, client_order_id, price, quantity)
        return await self._call(self._orders().AmendOrder, request)

    def order_entry(self, *, cancel_on_disconnect: bool = False, dead_man_seconds: int = 0
                    ) -> AsyncOrderEntrySession:
        """An OrderEntry session: ``async with client.order_entry(...) as session:``
        then ``await session.create(...)``, ``cancel``, ``amend``, ``send`` (many at
        once), ``renew()`` (the dead-man timer), ``notices`` (exchange_client.session)."""
        _need_key(self.api_key)
        return AsyncOrderEntrySession(self._orders(), self._metadata(),
                                      cancel_on_disconnect=cancel_on_disconnect,
                                      dead_man_seconds=dead_man_seconds)

    async def get_order(self, order_id: str | None = None, *,
                        client_order_id: str | None = None) -> order_pb2.GetOrderResponse:
        """One order by either id; returns the response (``.order`` and ``.fills``)."""
        _need_key(self.api_key)
        request = cv.get_order_request(order_id, client_order_id)
        return await self._call(self._orders().GetOrder, request)

    async def list_orders(self, instrument: str | None = None, status: str = "all", *,
                          page_size: int = 0, page_token: str = ""
                          ) -> order_pb2.ListOrdersResponse:
        """One page of the caller's orders, newest first; ``status`` all/open/closed."""
        _need_key(self.api_key)
        request = cv.list_orders_request(instrument, status, page_size, page_token)
        return await self._call(self._orders().ListOrders, request)

    async def iter_orders(self, instrument: str | None = None, status: str = "all", *,
                          page_size: int = 0, limit: int | None = None
                          ) -> AsyncIterator[order_pb2.Order]:
        """All the caller's orders (at most ``limit``), following the pages."""
        size = cv.page_size_for(page_size, limit)
        async for order in _pages(
            lambda token: self.list_orders(instrument, status, page_size=size, page_token=token),
            "orders", limit,
        ):
            yield order

    async def list_fills(self, instrument: str | None = None, order_id: str | None = None, *,
                         page_size: int = 0, page_token: str = ""
                         ) -> order_pb2.ListFillsResponse:
        """One page of the caller's fills, newest first."""
        _need_key(self.api_key)
        request = cv.list_fills_request(instrument, order_id, page_size, page_token)
        return await self._call(self._orders().ListFills, request)

    async def iter_fills(self, instrument: str | None = None, order_id: str | None = None, *,
                         page_size: int = 0, limit: int | None = None
                         ) -> AsyncIterator[order_pb2.Fill]:
        """All the caller's fills (at most ``limit``), following the pages."""
        size = cv.page_size_for(page_size, limit)
        async for fill in _pages(
            lambda token: self.list_fills(instrument, order_id, page_size=size, page_token=token),
            "fills", limit,
        ):
            yield fill

    # -- money ----------------------------------------------------------------

    async def get_balances(self, asset: str | None = None) -> list[order_pb2.Balance]:
        """The caller's balances (of ``asset`` only, if given): available and held."""
        _need_key(self.api_key)
        response = await self._call(self._orders().GetBalances,
                                    order_pb2.GetBalancesRequest(asset=asset or ""))
        return list(response.balances)

    async def list_ledger_entries(self, asset: str | None = None, *, page_size: int = 0,
                                  page_token: str = "") -> order_pb2.ListLedgerEntriesResponse:
        """One page of the caller's ledger entries, newest first."""
        _need_key(self.api_key)
        request = order_pb2.ListLedgerEntriesRequest(asset=asset or "", page_size=page_size,
                                                     page_token=page_token or "")
        return await self._call(self._orders().ListLedgerEntries, request)

    async def iter_ledger_entries(self, asset: str | None = None, *, page_size: int = 0,
                                  limit: int | None = None
                                  ) -> AsyncIterator[order_pb2.LedgerEntry]:
        """All the caller's ledger entries (at most ``limit``), following the pages."""
        size = cv.page_size_for(page_size, limit)
        async for entry in _pages(
            lambda token: self.list_ledger_entries(asset, page_size=size, page_token=token),
            "entries", limit,
        ):
            yield entry

    async def stream_order_updates(self, after: int | None = None, *,
                                   timeout: float | None = None
                                   ) -> AsyncGenerator[order_pb2.StreamOrderUpdatesResponse]:
        """The raw StreamOrderUpdates messages (updates, and heartbeats with the latest
        sequence), after sequence ``after`` (None: live only). No resuming: see
        :meth:`order_updates`."""
        _need_key(self.api_key)
        request = order_pb2.StreamOrderUpdatesRequest()
        if after is not None:
            request.after_sequence = after
        async for message in self._stream(self._orders().StreamOrderUpdates, request, timeout):
            yield message

    async def order_updates(self, after: int | None = None, *,
                            max_backoff: float = 2.0) -> AsyncIterator[order_pb2.OrderUpdate]:
        """Every update of the caller's orders after sequence ``after`` (0: from the
        first; None: from the next one), in sequence order, each exactly once, for as
        long as you iterate.

        When the stream breaks (``Unavailable``: a restart, a lost connection) or ends,
        it subscribes again after the last sequence it yielded (after a backoff growing
        to ``max_backoff`` seconds while it keeps failing), so a gap or a duplicate
        never reaches you. Other errors are raised. Keep ``update.sequence`` to resume
        in a later process: ``order_updates(after=that)``."""
        cursor = UpdateCursor(after)
        while True:
            try:
                async with aclosing(self.stream_order_updates(cursor.position)) as messages:
                    async for message in messages:
                        for update in cursor.take(message):
                            yield update
            except (Unavailable, Resubscribe):
                pass
            wait = cursor.backoff(max_backoff)
            if wait:
                await asyncio.sleep(wait)

    # -- market data --------------------------------------------------------

    async def list_instruments(self) -> list[marketdata_pb2.Instrument]:
        response = await self._call(
            self._marketdata().ListInstruments, marketdata_pb2.ListInstrumentsRequest()
        )
        return list(response.instruments)

    async def get_order_book(self, instrument: str, depth: int = 0
                             ) -> marketdata_pb2.GetOrderBookResponse:
        """Aggregated levels, best first; ``depth`` levels per side (0 = all)."""
        request = marketdata_pb2.GetOrderBookRequest(instrument=instrument, depth=depth)
        return await self._call(self._marketdata().GetOrderBook, request)

    async def list_trades(self, instrument: str, *, page_size: int = 0, page_token: str = ""
                          ) -> marketdata_pb2.ListTradesResponse:
        """One page of recent trades, newest first."""
        request = cv.list_trades_request(instrument, page_size, page_token)
        return await self._call(self._marketdata().ListTrades, request)

    async def iter_trades(self, instrument: str, *, page_size: int = 0,
                          limit: int | None = None) -> AsyncIterator[marketdata_pb2.Trade]:
        """Recent trades, newest first (at most ``limit``), following the pages."""
        size = cv.page_size_for(page_size, limit)
        async for trade in _pages(
            lambda token: self.list_trades(instrument, page_size=size, page_token=token),
            "trades", limit,
        ):
            yield trade

    async def stream_order_book(self, instrument: str, *, depth: int = 0, interval_ms: int = 0,
                                timeout: float | None = None
                                ) -> AsyncGenerator[marketdata_pb2.StreamOrderBookResponse]:
        """The raw StreamOrderBook messages: a snapshot, then deltas (and heartbeats).

        ``depth`` levels per side (0: all), at most one message per ``interval_ms``
        (0: as the server paces them). No deadline unless ``timeout`` is given. Close
        the iterator (or use ``contextlib.aclosing``) to cancel the stream early.
        """
        request = marketdata_pb2.StreamOrderBookRequest(instrument=instrument, depth=depth,
                                                        interval_ms=interval_ms)
        async for message in self._stream(self._marketdata().StreamOrderBook, request, timeout):
            yield message

    async def watch_order_book(
        self, instrument: str, *, book: LocalOrderBook | None = None,
        max_resubscribes: int | None = None, depth: int = 0, interval_ms: int = 0,
    ) -> AsyncIterator[LocalOrderBook]:
        """A local book kept from StreamOrderBook; yields it after each update.

        Yields the same :class:`LocalOrderBook` object every time (copy what
        you keep). It verifies every message's checksum and sequence; on a
        mismatch or a gap it resubscribes (after a short backoff when they
        repeat; ``book.resubscribes`` counts them) and the next snapshot
        replaces the book; more than ``max_resubscribes`` in a row (with no
        delta applied between them) re-raise :class:`SequenceGap` or
        :class:`ChecksumMismatch`. ``depth`` and ``interval_ms`` as in
        :meth:`stream_order_book`. Ends when the server ends the stream.
        """
        book = book if book is not None else LocalOrderBook(instrument)
        async for kept in self._follow(
                book, lambda: self.stream_order_book(instrument, depth=depth,
                                                     interval_ms=interval_ms),
                max_resubscribes):
            yield kept

    @staticmethod
    async def _follow(book: Followed, stream: Callable[[], AsyncGenerator[Any]],
                      max_resubscribes: int | None) -> AsyncIterator[Followed]:
        """Apply ``stream()``'s messages to ``book``, yielding it after each; on a gap
        or a checksum mismatch subscribe again (``resubscribe_delay``)."""
        failures = 0
        while True:
            gap: SequenceGap | ChecksumMismatch | None = None
            async with aclosing(stream()) as updates:
                async for update in updates:
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
                await asyncio.sleep(delay)

    async def stream_trades(self, instrument: str, *, timeout: float | None = None
                            ) -> AsyncIterator[marketdata_pb2.Trade]:
        """Trades as they happen, one ``Trade`` at a time (messages are flattened)."""
        request = marketdata_pb2.StreamTradesRequest(instrument=instrument)
        async for message in self._stream(self._marketdata().StreamTrades, request, timeout):
            for trade in message.trades:
                yield trade

    async def get_ticker(self, instrument: str) -> marketdata_pb2.Ticker:
        """Last trade, best bid and ask, and the last 24 hours' figures."""
        request = marketdata_pb2.GetTickerRequest(instrument=instrument)
        return (await self._call(self._marketdata().GetTicker, request)).ticker

    async def stream_ticker(self, instrument: str, *, interval_ms: int = 0,
                            timeout: float | None = None) -> AsyncIterator[marketdata_pb2.Ticker]:
        """The ticker, then on each change (at most every ``interval_ms``, 0: 1000), and
        again unchanged when nothing changes for a while."""
        request = marketdata_pb2.StreamTickerRequest(instrument=instrument,
                                                     interval_ms=interval_ms)
        async for message in self._stream(self._marketdata().StreamTicker, request, timeout):
            yield message.ticker

    async def list_candles(self, instrument: str, interval: str = "1m", *,
                           start: cv.TimeLike | None = None, end: cv.TimeLike | None = None,
                           page_size: int = 0, page_token: str = ""
                           ) -> marketdata_pb2.ListCandlesResponse:
        """One page of candles, oldest first: ``interval`` 1m, 5m, 15m, 1h or 1d; the
        candles starting in [start, end) (aware datetimes or ISO 8601 strings with a
        zone; None: from the first trade / up to now)."""
        request = cv.list_candles_request(instrument, interval, start, end, page_size,
                                          page_token)
        return await self._call(self._marketdata().ListCandles, request)

    async def iter_candles(self, instrument: str, interval: str = "1m", *,
                           start: cv.TimeLike | None = None, end: cv.TimeLike | None = None,
                           page_size: int = 0, limit: int | None = None
                           ) -> AsyncIterator[marketdata_pb2.Candle]:
        """Every candle of the range, oldest first (at most ``limit``), following the
        pages."""
        size = cv.page_size_for(page_size, limit)
        async for candle in _pages(
            lambda token: self.list_candles(instrument, interval, start=start, end=end,
                                            page_size=size, page_token=token),
            "candles", limit,
        ):
            yield candle

    async def stream_order_book_l3(self, instrument: str, *, timeout: float | None = None
                                   ) -> AsyncGenerator[marketdata_pb2.StreamOrderBookL3Response]:
        """The raw StreamOrderBookL3 messages: a snapshot of every resting order, then
        deltas (ADD, CHANGE, REMOVE) and heartbeats."""
        request = marketdata_pb2.StreamOrderBookL3Request(instrument=instrument)
        async for message in self._stream(self._marketdata().StreamOrderBookL3, request,
                                          timeout):
            yield message

    async def watch_order_book_l3(
        self, instrument: str, *, book: LocalL3Book | None = None,
        max_resubscribes: int | None = None,
    ) -> AsyncIterator[LocalL3Book]:
        """A local L3 book kept from StreamOrderBookL3, yielded after each update; its
        sequences are verified and a gap resubscribes, as :meth:`watch_order_book`."""
        book = book if book is not None else LocalL3Book(instrument)
        async for kept in self._follow(book, lambda: self.stream_order_book_l3(instrument),
                                       max_resubscribes):
            yield kept


async def _pages(fetch: Any, field: str, limit: int | None) -> AsyncIterator[Any]:
    """Items of ``field`` over the pages ``fetch(token)`` returns, at most ``limit``."""
    token, count = "", 0
    while True:
        page = await fetch(token)
        for item in getattr(page, field):
            if limit is not None and count >= limit:
                return
            count += 1
            yield item
        token = page.next_page_token
        if not token or (limit is not None and count >= limit):
            return
