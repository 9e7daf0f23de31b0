"""One instrument's live market data: its L2 book, recent trades and subscribers.

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
coalesced: each applied group of stream entries becomes one trades message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from exchange.matching.v1 import matching_pb2
from exchange_common.instruments import InstrumentSpec
from exchange_common.streams import entry_id
from marketdata_service.book import ApplyResult, L2Book
from marketdata_service.fanout import Subscriber
from marketdata_service.store import InitialState
from marketdata_service.trades import TradeRecord, TradeRing
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
        # Levels changed since the last book message (price -> (price, lots, orders)).
        self._pending_bids: dict[int, tuple[int, int, int]] = {}
        self._pending_asks: dict[int, tuple[int, int, int]] = {}
        # The sequence the last book message brought every subscriber to, and when (loop time).
        self._flushed = 0
        self._flushed_at = float("-inf")
        self._flush_timer: asyncio.TimerHandle | None = None
        # Book messages built (one per interval, plus one per odd starting point).
        self.deltas_built = 0
        self.book = L2Book()
        self.trades = TradeRing(recent_trades)
        self.time_unix_nanos = 0
        # Where the next stream read starts (exclusive).
        self.stream_pos: bytes | str = entry_id(0)
        self.book_subscribers: set[Subscriber] = set()
        self.trade_subscribers: set[Subscriber] = set()
        self._snapshot: bytes | None = None
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
        self._snapshot = None
        self._pending_bids = {}
        self._pending_asks = {}
        self._flushed = state.sequence

    def update_spec(self, spec: InstrumentSpec) -> None:
        if spec != self.spec:
            self.spec = spec
            self.wire = Wire(spec)
            self._snapshot = None

    def reset(self, state: InitialState) -> None:
        """Replace the state with one rebuilt from PostgreSQL; every book subscriber gets a
        fresh snapshot next, every trade subscriber the trades it has not seen."""
        old = self.book.sequence
        self._load(state)
        for sub in self.book_subscribers:
            sub.invalidate()
        for sub in self.trade_subscribers:
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
        bids = self._pending_bids
        asks = self._pending_asks
        new_trades: list[TradeRecord] = []
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
            for level in batch_bids:
                bids[level[0]] = level
            for level in batch_asks:
                asks[level[0]] = level
            new_trades.extend(
                TradeRecord(t.trade_id, t.sequence, t.price, t.quantity, t.taker_side,
                            t.time_unix_nanos)
                for t in batch.trades)
            if batch.time_unix_nanos:
                self.time_unix_nanos = batch.time_unix_nanos
        if changed:
            self._snapshot = None
            self._book_changed()
            if new_trades:
                self._publish_trades(new_trades)
        if gap:
            self.consecutive_gaps += 1
        return gap

    def _book_changed(self) -> None:
        """Send the merged changes now, or when the current interval ends."""
        if self._flush_timer is not None:
            return
        interval = self.current_interval()
        if interval <= 0:
            self.flush_book()
            return
        loop = asyncio.get_running_loop()
        due = self._flushed_at + interval
        if loop.time() >= due:
            self.flush_book()
        else:
            self._flush_timer = loop.call_at(due, self._flush_due)

    def current_interval(self) -> float:
        """The time between book messages now: ``book_interval``, shortened for a book
        with few subscribers (sending to them costs little)."""
        if self.interval_per_subscriber > 0:
            return min(self.book_interval,
                       len(self.book_subscribers) * self.interval_per_subscriber)
        return self.book_interval

    def _flush_due(self) -> None:
        self._flush_timer = None
        self.flush_book()

    def flush_book(self) -> None:
        """One merged delta from the last book message to the current sequence, queued for
        every subscriber (serialized once for all those at the same point)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        sequence = self.book.sequence
        if sequence == self._flushed:
            return
        with_loop = self.book_interval > 0
        if with_loop:
            self._flushed_at = asyncio.get_running_loop().time()
        if self.book_subscribers:
            bids = sorted(self._pending_bids.values(), reverse=True)
            asks = sorted(self._pending_asks.values())
            built: dict[int, bytes] = {}
            dropped = 0
            now = time.monotonic()
            for sub in self.book_subscribers:
                if sub.need_resync:
                    # It gets a snapshot next: nothing to build for it.
                    dropped += sub.skip()
                    continue
                start = sub.queued
                if start >= sequence:
                    continue  # its snapshot already reflects everything
                data = built.get(start)
                if data is None:
                    data = built[start] = self.wire.delta(
                        start + 1, sequence, bids, asks, self.time_unix_nanos,
                    ).SerializeToString()
                dropped += sub.push(sequence, data, now)
            self.dropped += dropped
            self.deltas_built += len(built)
        self._pending_bids = {}
        self._pending_asks = {}
        self._flushed = sequence

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
        if self._snapshot is None:
            self._snapshot = self.wire.snapshot(self.book, self.time_unix_nanos).SerializeToString()
        return self._snapshot

    def _book_resync(self, _position: int) -> tuple[int, bytes | None]:
        self.book_resyncs += 1
        return self.book.sequence, self.snapshot_bytes()

    def _trades_resync(self, position: int) -> tuple[int, bytes | None]:
        self.trade_resyncs += 1
        missed = self.trades.since(position)
        data = self.wire.trades(missed).SerializeToString() if missed else None
        return max(self.book.sequence, position), data

    def subscribe_book(self, queue_limit: int, max_lag: float = float("inf")) -> Subscriber:
        sub = Subscriber(queue_limit, self._book_resync, position=self.book.sequence,
                         initial=self.snapshot_bytes(), max_age=max_lag)
        self.book_subscribers.add(sub)
        return sub

    def subscribe_trades(self, queue_limit: int, max_lag: float = float("inf")) -> Subscriber:
        sub = Subscriber(queue_limit, self._trades_resync, position=self.book.sequence,
                         max_age=max_lag)
        self.trade_subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.book_subscribers.discard(sub)
        self.trade_subscribers.discard(sub)
        if sub.dropped:
            log.info("a subscriber to %s left; %d updates were conflated for it",
                     self.spec.symbol, sub.dropped)

    def close_subscribers(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        for sub in (*self.book_subscribers, *self.trade_subscribers):
            sub.close()
