"""The ticker's 24-hour window (plain Python, no I/O).

The window is exact and per minute: at a time t, it holds the trades whose minute (their
time in whole minutes since the epoch, UTC) is one of the last 1,440 whole minutes before
t's minute or t's minute itself, i.e. the trades at or after the start of the minute
24 hours before t's minute. Between 24 h and 24 h + 1 minute of trades, so a trade leaves
the window at a minute boundary, not at the nanosecond it turns 24 hours old.

Each minute keeps its aggregate (first and last trade by sequence, high, low, base and
quote volume, count), so the window costs at most 1,441 buckets whatever the rate; it is
loaded from PostgreSQL's trades at start and after every resynchronization, and advanced by
the trades the feed applies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

MINUTE_NANOS = 60 * 1_000_000_000
WINDOW_MINUTES = 1440


class MinuteBucket(NamedTuple):
    """The trades of one minute (``minute``: whole minutes since the epoch)."""

    minute: int
    open: int  # the first trade's price (ticks), by sequence
    high: int
    low: int
    close: int
    volume: int  # lots
    quote_volume: int  # ticks x lots
    trade_count: int
    first_sequence: int
    last_sequence: int


@dataclass(frozen=True, slots=True)
class WindowStats:
    open: int
    high: int
    low: int
    volume: int
    quote_volume: int
    trade_count: int


class TickerWindow:
    """Minute buckets, oldest first; trades must come in sequence order."""

    __slots__ = ("_buckets",)

    def __init__(self, buckets: Iterable[MinuteBucket] = ()) -> None:
        self._buckets: deque[MinuteBucket] = deque(sorted(buckets))

    def add(self, sequence: int, price: int, quantity: int, time_unix_nanos: int) -> None:
        """Count one trade (newer by sequence than every trade counted; a repeat is
        ignored). Its minute is normally the newest; a trade stamped earlier (another
        owner's clock after a failover) goes to its own minute, as PostgreSQL would."""
        minute = time_unix_nanos // MINUTE_NANOS
        buckets = self._buckets
        index = len(buckets)
        while index and buckets[index - 1].minute > minute:
            index -= 1
        if index and buckets[index - 1].minute == minute:
            last = buckets[index - 1]
            if sequence <= last.last_sequence:
                return  # already counted
            buckets[index - 1] = MinuteBucket(
                minute, last.open, max(last.high, price), min(last.low, price), price,
                last.volume + quantity, last.quote_volume + price * quantity,
                last.trade_count + 1, last.first_sequence, sequence)
            return
        buckets.insert(index, MinuteBucket(minute, price, price, price, price, quantity,
                                           price * quantity, 1, sequence, sequence))

    def evict(self, now_unix_nanos: int) -> bool:
        """Drop the minutes that left the window at ``now``; True if any did."""
        first = now_unix_nanos // MINUTE_NANOS - WINDOW_MINUTES
        buckets = self._buckets
        evicted = False
        while buckets and buckets[0].minute < first:
            buckets.popleft()
            evicted = True
        return evicted

    def stats(self, now_unix_nanos: int) -> WindowStats | None:
        """The window at ``now``: None when it holds no trade."""
        self.evict(now_unix_nanos)
        buckets = self._buckets
        if not buckets:
            return None
        return WindowStats(
            open=buckets[0].open,
            high=max(b.high for b in buckets),
            low=min(b.low for b in buckets),
            volume=sum(b.volume for b in buckets),
            quote_volume=sum(b.quote_volume for b in buckets),
            trade_count=sum(b.trade_count for b in buckets))

    def __len__(self) -> int:
        return len(self._buckets)
