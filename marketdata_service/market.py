"""One instrument's live market data: its L2 and L3 books, recent trades, the ticker, and
subscribers.

Everything here runs on the event loop without awaiting, so a subscriber added between two
updates sees a snapshot and then exactly the updates after it.

Book updates are coalesced by time: the levels changed since the last book message are merged
(the latest total per price) and sent at most once every ``book_interval`` seconds (shorter
for a book with few subscribers: ``interval_per_subscriber`` each). A change
after a quiet period goes out at once; changes that come sooner wait for the end of the interval
(one timer per instrument, none per subscriber). The merged delta covers every sequence since the
previous one, so ``first_sequence`` is still the previous message's ``sequence`` + 1. It is
serialized once per interval and the same bytes go to the bounded queue
(``fanout.Subscriber``) of every subscriber that is at the same point; the few that are not (a
subscriber whose snapshot was taken inside the interval) get a delta from their own sequence with
the same levels, which is correct because levels carry totals, not differences. Trades are never
coalesced: each applied group of stream entries becomes one trades message. A subscriber's
depth and interval choose its view (``views.BookView``: the default view is the one described
here); each view's messages are serialized once for its subscribers.

The L3 book follows the batches' changed orders; each applied group of entries becomes one
L3 delta (never coalesced), with the same sequences as the L2 stream. The ticker is built
on demand from the state here and cached until it changes (``ticker_version``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.matching.v1 import matching_pb2
from exchange_common.instruments import InstrumentSpec
from exchange_common.streams import entry_id
from marketdata_service.book import ApplyResult, L2Book
from marketdata_service.fanout import Subscriber, SubscriptionClosed
from marketdata_service.l3 import L3Book, L3Change, L3Order
from marketdata_service.store import InitialState
from marketdata_service.ticker import TickerWindow
from marketdata_service.trades import TradeRecord, TradeRing
from marketdata_service.views import BookView
from marketdata_service.wire import Wire

log = logging.getLogger(__name__)

# (stream entry id, parsed batch or None when the entry could not be parsed)
Entry = tuple[bytes | str, matching_pb2.MarketDataBatch | None]


def _levels(updates) -> list[tuple[int, int, int]]:
    return [(u.price, u.quantity, u.order_count) for u in updates]


class InstrumentMarket:
    def __init__(self, spec: InstrumentSpec, state: InitialState, *, recent_trades: int,
                 book_interval: float = 0.0, interval_per_subscriber: float = 0.0) -> None:
        self.spec = spec
        self.wire = Wire(spec)
        self._recent_trades = recent_trades
        # At most one book message per subscriber every this many seconds (0: one per apply).
        self.book_interval = book_interval
        # ... or this many seconds per book subscriber when that is less (0: no such bound).
        self.interval_per_subscriber = interval_per_subscriber
        self.book = L2Book()
        # (depth, interval seconds) -> view; the default view (0, 0.0) always exists.
        self.views: dict[tuple[int, float], BookView] = {}
        self.trades = TradeRing(recent_trades)
        self.time_unix_nanos = 0
        # Where the next stream read starts (exclusive).
        self.stream_pos: bytes | str = entry_id(0)
        self.trade_subscribers: set[Subscriber] = set()
        self.l3 = L3Book()
        self.l3_subscribers: set[Subscriber] = set()
        self._l3_snapshot: bytes | None = None
        self._l3_last_message = time.monotonic()
        self.window = TickerWindow()
        # Bumped when the ticker's content changes; ``ticker_changed`` is set then (and
        # replaced), for StreamTicker.
        self.ticker_version = 0
        self.ticker_changed = asyncio.Event()
        self._ticker: tuple[int, bytes, md_pb2.Ticker] | None = None
        # Set at shutdown: StreamTicker subscribers end (SubscriptionClosed).
        self.closed = False
        self._best: tuple = (None, None)
        # Updates thrown away for subscribers that were behind (conflated).
        self.dropped = 0
        # Snapshots and trade catch-ups sent instead of a subscriber's backlog.
        self.book_resyncs = 0
        self.trade_resyncs = 0
        # Set while the instrument is being rebuilt from PostgreSQL: the stream is not read.
        self.rebuilding = False
        # Gaps seen since the last entry applied (rebuilds back off when this grows).
        self.consecutive_gaps = 0
        self._load(state)
        self.views[(0, 0.0)] = BookView(self)

    @property
    def instrument_id(self) -> int:
        return self.spec.instrument_id

    @property
    def sequence(self) -> int:
        return self.book.sequence

    def _load(self, state: InitialState) -> None:
        self.book = L2Book.from_levels(state.sequence, state.bids, state.asks)
        self.trades = TradeRing(self._recent_trades, state.trades, state.all_trades)
        self.time_unix_nanos = state.time_unix_nanos
        self.stream_pos = entry_id(state.sequence)
        self.l3 = L3Book(state.orders)
        self._l3_snapshot = None
        self.window = TickerWindow(state.minutes)
        for view in self.views.values():
            view.reset()
        self._best = (self.book.best_bid(), self.book.best_ask())
        self._ticker_changed()

    @property
    def book_subscribers(self) -> list[Subscriber]:
        """Every StreamOrderBook subscriber, whatever its view."""
        return [sub for view in self.views.values() for sub in view.subscribers]

    @property
    def deltas_built(self) -> int:
        return sum(view.deltas_built for view in self.views.values())

    @property
    def default_view(self) -> BookView:
        return self.views[(0, 0.0)]

    def update_spec(self, spec: InstrumentSpec) -> None:
        if spec != self.spec:
            self.spec = spec
            self.wire = Wire(spec)
            for view in self.views.values():
                view.reset()
            self._l3_snapshot = None
            self._ticker_changed()

    def reset(self, state: InitialState) -> None:
        """Replace the state with one rebuilt from PostgreSQL; every book subscriber gets a
        fresh snapshot next, every trade subscriber the trades it has not seen."""
        old = self.book.sequence
        self._load(state)
        for sub in (*self.book_subscribers, *self.trade_subscribers, *self.l3_subscribers):
            sub.invalidate()
        log.info("instrument %s rebuilt from PostgreSQL at sequence %d (was %d)",
                 self.spec.symbol, state.sequence, old)

    # -- updates ----------------------------------------------------------------------------

    def apply(self, entries: Sequence[Entry]) -> bool:
        """Apply stream entries in order and publish what changed. Returns True when a gap
        (or an unreadable entry) was met: the entries from there on are not applied and the
        instrument needs a rebuild."""
        book = self.book
        changed = False
        bids: list[tuple[int, int, int]] = []
        asks: list[tuple[int, int, int]] = []
        new_trades: list[TradeRecord] = []
        l3_changes: list[L3Change] = []
        first_sequence = book.sequence + 1
        gap = False
        for eid, batch in entries:
            if batch is None:
                log.error("unreadable entry %r in the stream of %s", eid, self.spec.symbol)
                gap = True
                break
            batch_bids = _levels(batch.bids)
            batch_asks = _levels(batch.asks)
            before = book.sequence
            result = book.apply(batch.first_sequence, batch.last_sequence, batch_bids, batch_asks)
            if result is ApplyResult.GAP:
                log.warning("gap in the stream of %s: book at %d, entry %r covers %d-%d",
                            self.spec.symbol, before, eid, batch.first_sequence,
                            batch.last_sequence)
                gap = True
                break
            self.stream_pos = eid
            if result is ApplyResult.SKIPPED:
                continue
            self.consecutive_gaps = 0
            changed = True
            bids.extend(batch_bids)
            asks.extend(batch_asks)
            if batch.orders:
                l3_changes.extend(self.l3.apply(
                    L3Order(o.order_id, o.side, o.price, o.quantity, o.priority)
                    for o in batch.orders))
            new_trades.extend(
                TradeRecord(t.trade_id, t.sequence, t.price, t.quantity, t.taker_side,
                            t.time_unix_nanos)
                for t in batch.trades)
            if batch.time_unix_nanos:
                self.time_unix_nanos = batch.time_unix_nanos
        if changed:
            for view in list(self.views.values()):
                view.changed(bids, asks)
            self._publish_l3(first_sequence, l3_changes)
            if new_trades:
                window = self.window
                for t in new_trades:
                    window.add(t.sequence, t.price, t.quantity, t.time_unix_nanos)
                self._publish_trades(new_trades)
            best = (book.best_bid(), book.best_ask())
            if new_trades or best != self._best:
                self._best = best
                self._ticker_changed()
        if gap:
            self.consecutive_gaps += 1
        return gap

    def current_interval(self) -> float:
        """The default view's time between book messages now."""
        return self.default_view.current_interval()

    def _publish_l3(self, first_sequence: int, changes: list[L3Change]) -> None:
        """One L3 delta for the entries just applied (even with no change: the sequences
        follow on)."""
        if changes:
            self._l3_snapshot = None
        if not self.l3_subscribers:
            return
        sequence = self.book.sequence
        data = self.wire.l3_delta(first_sequence, sequence, changes,
                                  self.time_unix_nanos).SerializeToString()
        dropped = 0
        now = time.monotonic()
        for sub in self.l3_subscribers:
            if sub.need_resync:
                dropped += sub.skip()
            elif sub.queued < sequence:
                dropped += sub.push(sequence, data, now)
        self.dropped += dropped
        self._l3_last_message = now

    def _publish_trades(self, new_trades: list[TradeRecord]) -> None:
        sequence = self.book.sequence
        self.trades.extend(new_trades)
        if self.trade_subscribers:
            data = self.wire.trades(new_trades).SerializeToString()
            dropped = 0
            now = time.monotonic()
            for sub in self.trade_subscribers:
                dropped += sub.push(sequence, data, now)
            self.dropped += dropped

    # -- subscribers ------------------------------------------------------------------------

    def snapshot_bytes(self) -> bytes:
        """The full book as a serialized StreamOrderBookResponse, built once per state."""
        return self.default_view.snapshot()[1]

    def l3_snapshot_bytes(self) -> bytes:
        """Every resting order as a serialized StreamOrderBookL3Response, once per state."""
        if self._l3_snapshot is None:
            self._l3_snapshot = self.wire.l3_snapshot(
                self.book.sequence, self.l3.side_orders(1), self.l3.side_orders(2),
                self.time_unix_nanos).SerializeToString()
        return self._l3_snapshot

    def _l3_resync(self, _position: int) -> tuple[int, bytes | None]:
        self.book_resyncs += 1
        return self.book.sequence, self.l3_snapshot_bytes()

    def _trades_resync(self, position: int) -> tuple[int, bytes | None]:
        self.trade_resyncs += 1
        missed = self.trades.since(position)
        data = self.wire.trades(missed).SerializeToString() if missed else None
        return max(self.book.sequence, position), data

    def subscribe_book(self, queue_limit: int, max_lag: float = float("inf"), *,
                       depth: int = 0, interval: float = 0.0) -> Subscriber:
        """A StreamOrderBook subscriber of the view (depth, interval seconds)."""
        key = (depth, interval)
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = BookView(self, depth, interval)
        return view.subscribe(queue_limit, max_lag)

    def subscribe_l3(self, queue_limit: int, max_lag: float = float("inf")) -> Subscriber:
        sub = Subscriber(queue_limit, self._l3_resync, position=self.book.sequence,
                         initial=self.l3_snapshot_bytes(), max_age=max_lag)
        self.l3_subscribers.add(sub)
        return sub

    def subscribe_trades(self, queue_limit: int, max_lag: float = float("inf")) -> Subscriber:
        sub = Subscriber(queue_limit, self._trades_resync, position=self.book.sequence,
                         max_age=max_lag)
        self.trade_subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        for key, view in list(self.views.items()):
            if sub in view.subscribers:
                view.subscribers.discard(sub)
                if not view.subscribers and key != (0, 0.0):
                    view.close()
                    del self.views[key]
        self.trade_subscribers.discard(sub)
        self.l3_subscribers.discard(sub)
        if sub.dropped:
            log.info("a subscriber to %s left; %d updates were conflated for it",
                     self.spec.symbol, sub.dropped)

    def close_subscribers(self) -> None:
        self.closed = True
        self.ticker_changed.set()  # StreamTicker subscribers see ``closed``
        for view in self.views.values():
            view.close()
        for sub in (*self.book_subscribers, *self.trade_subscribers, *self.l3_subscribers):
            sub.close()

    # -- heartbeats and the ticker ----------------------------------------------------------

    def tick(self, now: float, now_unix_nanos: int, idle: float) -> None:
        """Called every fraction of ``idle`` seconds: heartbeats to the streams that sent
        nothing for ``idle`` seconds, and the ticker's window moved on."""
        for view in self.views.values():
            view.heartbeat(now, idle)
        if self.l3_subscribers and now - self._l3_last_message >= idle:
            self._l3_last_message = now
            data = self.wire.l3_heartbeat(self.book.sequence,
                                          self.time_unix_nanos).SerializeToString()
            for sub in self.l3_subscribers:
                if not sub.need_resync and sub.queued == self.book.sequence:
                    sub.push(sub.queued, data, now)
        if self.window.evict(now_unix_nanos):
            self._ticker_changed()

    def _ticker_changed(self) -> None:
        self.ticker_version += 1
        self._ticker = None
        self.ticker_changed.set()
        self.ticker_changed = asyncio.Event()

    def ticker(self) -> tuple[md_pb2.Ticker, bytes]:
        """The ticker now and its StreamTickerResponse bytes, built once per version."""
        cached = self._ticker
        if cached is None or cached[0] != self.ticker_version:
            now = time.time_ns()
            book = self.book
            ticker = self.wire.ticker(book.sequence, now, self.trades.newest(),
                                      book.best_bid(), book.best_ask(), self.window.stats(now))
            data = md_pb2.StreamTickerResponse(ticker=ticker).SerializeToString()
            cached = self._ticker = (self.ticker_version, data, ticker)
        return cached[2], cached[1]

    async def ticker_updates(self, interval: float, idle: float) -> AsyncIterator[bytes]:
        """StreamTicker: the ticker now, then after each change (at most one message per
        ``interval`` seconds, changes in between merged), and again unchanged when nothing
        changed for ``max(idle, interval)`` seconds. Serialized once per version, shared."""
        loop = asyncio.get_running_loop()
        quiet = max(idle, interval)
        while True:
            if self.closed:
                raise SubscriptionClosed
            version = self.ticker_version
            yield self.ticker()[1]
            sent = loop.time()
            await asyncio.sleep(interval)
            if self.ticker_version == version:
                changed = self.ticker_changed
                remaining = sent + quiet - loop.time()
                if remaining > 0:
                    try:
                        await asyncio.wait_for(changed.wait(), remaining)
                    except TimeoutError:
                        pass
