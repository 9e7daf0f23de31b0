"""One view of an instrument's L2 book: the subscribers of StreamOrderBook that asked for
the same depth and interval, and the messages they share.

Every message of a view is serialized once and the same bytes go to each of its
subscribers (``fanout.Subscriber``); a subscriber's cost does not depend on the views
others chose. Each snapshot and delta carries the checksum of the view after it
(``checksum``).

- Depth 0 (all levels): the levels changed since the view's last message are merged (the
  latest total per price) and sent as one delta. A subscriber whose snapshot was taken
  after that message gets a delta from its own sequence with the same levels (correct,
  because levels carry totals). Its snapshot is the whole book now.
- Depth N: the view keeps the top N levels per side as its subscribers hold them (``held``,
  as of ``flushed``). A delta is the difference to the top N now: the levels that changed
  or entered the top, and "0" for those that left it, so a subscriber's top N stays whole.
  Every subscriber of such a view is at ``flushed`` (its snapshot is ``held``), so one
  delta serves them all.

Timing: with ``interval`` 0 the view follows the market's own pacing (the service's
``book_update_interval``, shorter for few subscribers); with an interval (a subscriber's
``interval_ms``) at most one message per interval. A change after a quiet period goes out
at once; sooner ones wait for the end of the interval (one timer per view). When nothing
was sent for ``heartbeat`` seconds, each subscriber gets a Heartbeat with the sequence its
stream is at.
"""

from __future__ import annotations

import asyncio
import time
from itertools import islice
from typing import TYPE_CHECKING

from marketdata_service.checksum import checksum_depth, checksum_levels
from marketdata_service.fanout import Subscriber

if TYPE_CHECKING:
    from marketdata_service.market import InstrumentMarket

Levels = list[tuple[int, int, int]]


class BookView:
    def __init__(self, market: InstrumentMarket, depth: int = 0, interval: float = 0.0
                 ) -> None:
        self.market = market
        self.depth = depth
        self.interval = interval
        self.subscribers: set[Subscriber] = set()
        # Depth 0: levels changed since the last message (price -> (price, lots, orders)).
        self._pending_bids: dict[int, tuple[int, int, int]] = {}
        self._pending_asks: dict[int, tuple[int, int, int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flushed_at = float("-inf")
        self._snapshot: bytes | None = None
        # When (time.monotonic()) the view last queued a message: heartbeats when idle.
        self.last_message = time.monotonic()
        self.deltas_built = 0
        self.flushed = 0
        self.held: tuple[Levels, Levels] = ([], [])
        self.reset()

    def reset(self) -> None:
        """Start again from the market's book (a new view, or one rebuilt)."""
        book = self.market.book
        self.flushed = book.sequence
        self._pending_bids = {}
        self._pending_asks = {}
        self._snapshot = None
        if self.depth:
            self.held = self._top()

    def _top(self) -> tuple[Levels, Levels]:
        book, depth = self.market.book, self.depth
        return list(book.bid_levels(depth)), list(book.ask_levels(depth))

    # -- changes ----------------------------------------------------------------------------

    def changed(self, bids: Levels, asks: Levels) -> None:
        """The book advanced (``bids`` and ``asks`` are the levels that changed)."""
        if not self.depth:
            self._snapshot = None
            for level in bids:
                self._pending_bids[level[0]] = level
            for level in asks:
                self._pending_asks[level[0]] = level
        if self._timer is not None:
            return
        interval = self.current_interval()
        if interval <= 0:
            self.flush()
            return
        loop = asyncio.get_running_loop()
        due = self._flushed_at + interval
        if loop.time() >= due:
            self.flush()
        else:
            self._timer = loop.call_at(due, self._flush_due)

    def current_interval(self) -> float:
        if self.interval > 0:
            return self.interval
        market = self.market
        if market.interval_per_subscriber > 0:
            return min(market.book_interval,
                       len(self.subscribers) * market.interval_per_subscriber)
        return market.book_interval

    def _flush_due(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """One message from the last one to the book's current sequence, queued for every
        subscriber."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        market = self.market
        sequence = market.book.sequence
        if sequence == self.flushed:
            return
        if self.interval > 0 or market.book_interval > 0:
            self._flushed_at = asyncio.get_running_loop().time()
        if self.depth:
            self._flush_top(sequence)
        else:
            self._flush_all(sequence)
        self.flushed = sequence

    def _flush_all(self, sequence: int) -> None:
        market = self.market
        if self.subscribers:
            bids = sorted(self._pending_bids.values(), reverse=True)
            asks = sorted(self._pending_asks.values())
            checksum = self._book_checksum()
            built: dict[int, bytes] = {}
            dropped = 0
            now = time.monotonic()
            for sub in self.subscribers:
                if sub.need_resync:
                    dropped += sub.skip()  # it gets a snapshot next
                    continue
                start = sub.queued
                if start >= sequence:
                    continue  # its snapshot already reflects everything
                data = built.get(start)
                if data is None:
                    data = built[start] = market.wire.delta(
                        start + 1, sequence, bids, asks, market.time_unix_nanos, checksum,
                    ).SerializeToString()
                dropped += sub.push(sequence, data, now)
            market.dropped += dropped
            self.deltas_built += len(built)
            self.last_message = now
        self._pending_bids = {}
        self._pending_asks = {}

    def _flush_top(self, sequence: int) -> None:
        market = self.market
        old_bids, old_asks = self.held
        new_bids, new_asks = self._top()
        self.held = (new_bids, new_asks)
        self._snapshot = None
        if not self.subscribers:
            return
        bids = _difference(old_bids, new_bids, reverse=True)
        asks = _difference(old_asks, new_asks, reverse=False)
        data = market.wire.delta(self.flushed + 1, sequence, bids, asks,
                                 market.time_unix_nanos, self._held_checksum(),
                                 ).SerializeToString()
        self.deltas_built += 1
        dropped = 0
        now = time.monotonic()
        for sub in self.subscribers:
            if sub.need_resync:
                dropped += sub.skip()
                continue
            dropped += sub.push(sequence, data, now)
        market.dropped += dropped
        self.last_message = now

    # -- checksums ------------------------------------------------------------------------

    def _book_checksum(self) -> int:
        book, wire = self.market.book, self.market.wire
        n = checksum_depth(self.depth)
        return checksum_levels(wire.price, wire.qty, islice(book.bid_levels(n), n),
                               islice(book.ask_levels(n), n))

    def _held_checksum(self) -> int:
        n = checksum_depth(self.depth)
        bids, asks = self.held
        wire = self.market.wire
        return checksum_levels(wire.price, wire.qty, bids[:n], asks[:n])

    # -- subscribers ------------------------------------------------------------------------

    def snapshot(self) -> tuple[int, bytes]:
        """(sequence, serialized snapshot) a new or resynchronized subscriber starts from;
        built once per state."""
        market = self.market
        if self.depth:
            if self._snapshot is None:
                bids, asks = self.held
                self._snapshot = market.wire.snapshot_levels(
                    self.flushed, bids, asks, market.time_unix_nanos,
                    self._held_checksum()).SerializeToString()
            return self.flushed, self._snapshot
        if self._snapshot is None:
            self._snapshot = market.wire.snapshot(
                market.book, market.time_unix_nanos, self._book_checksum()).SerializeToString()
        return market.book.sequence, self._snapshot

    def resync(self, _position: int) -> tuple[int, bytes | None]:
        self.market.book_resyncs += 1
        return self.snapshot()

    def subscribe(self, queue_limit: int, max_lag: float) -> Subscriber:
        position, data = self.snapshot()
        sub = Subscriber(queue_limit, self.resync, position=position, initial=data,
                         max_age=max_lag)
        self.subscribers.add(sub)
        return sub

    def heartbeat(self, now: float, idle: float) -> None:
        """A Heartbeat to each subscriber when the view sent nothing for ``idle`` seconds:
        one message per sequence the subscribers are at (nearly always one)."""
        if now - self.last_message < idle:
            return
        self.last_message = now
        market = self.market
        built: dict[int, bytes] = {}
        for sub in self.subscribers:
            if sub.need_resync:
                continue
            data = built.get(sub.queued)
            if data is None:
                data = built[sub.queued] = market.wire.book_heartbeat(
                    sub.queued, market.time_unix_nanos).SerializeToString()
            sub.push(sub.queued, data, now)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _difference(old: Levels, new: Levels, *, reverse: bool) -> Levels:
    """What turns the levels ``old`` into ``new``: the new or changed levels of ``new``,
    and (price, 0, 0) for each price of ``old`` not in ``new``; best first."""
    before = {level[0]: level for level in old}
    after = {level[0]: level for level in new}
    out = [level for level in new if before.get(level[0]) != level]
    out.extend((price, 0, 0) for price in before if price not in after)
    out.sort(reverse=reverse)
    return out
