"""A local copy of one instrument's order book, kept from StreamOrderBook.

The stream sends a snapshot (all levels, with the sequence it reflects),
then deltas: each delta's ``first_sequence`` is the previous message's
``sequence`` + 1 and its levels carry the new total quantity ("0" = the
level is gone). A delta that does not follow on is a gap:
:meth:`LocalOrderBook.apply` raises :class:`SequenceGap` and leaves the book
as it was; the watcher (``watch_order_book`` on either client) then
resubscribes and the next snapshot replaces the book. The server may also
send a fresh snapshot at any time (to a subscriber that fell behind); it
simply replaces the book.

Pure logic: no gRPC, no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from google.protobuf import timestamp_pb2

from exchange.marketdata.v1 import marketdata_pb2


@dataclass(frozen=True, slots=True)
class Level:
    """One aggregated price level. Decimals keep the server's digits ("70000.00")."""

    price: Decimal
    quantity: Decimal
    order_count: int


class SequenceGap(Exception):
    """A delta did not follow on from the book's sequence: resubscribe."""

    def __init__(self, expected: int | None, first_sequence: int) -> None:
        self.expected = expected
        self.first_sequence = first_sequence
        if expected is None:
            text = f"delta from sequence {first_sequence} before any snapshot"
        else:
            text = f"expected a delta from sequence {expected}, got {first_sequence}"
        super().__init__(text)


class LocalOrderBook:
    """Bids and asks by price, the sequence they reflect, and counters.

    ``sequence`` is None until the first snapshot. ``resubscribes`` counts
    the gaps the watcher recovered from.
    """

    def __init__(self, instrument: str = "") -> None:
        self.instrument = instrument
        self.sequence: int | None = None
        self.time: timestamp_pb2.Timestamp | None = None
        self._bids: dict[Decimal, Level] = {}
        self._asks: dict[Decimal, Level] = {}
        self.snapshots = 0
        self.deltas = 0
        self.resubscribes = 0

    @property
    def ready(self) -> bool:
        """True once a snapshot has been applied."""
        return self.sequence is not None

    def reset(self) -> None:
        self.sequence = None
        self.time = None
        self._bids.clear()
        self._asks.clear()

    def apply(self, update: marketdata_pb2.StreamOrderBookResponse) -> None:
        """Apply one stream message; raises SequenceGap (book unchanged) on a gap."""
        if update.instrument and not self.instrument:
            self.instrument = update.instrument
        kind = update.WhichOneof("update")
        if kind == "snapshot":
            self.apply_snapshot(update.snapshot)
        elif kind == "delta":
            self.apply_delta(update.delta)

    def apply_snapshot(self, snapshot: marketdata_pb2.OrderBookSnapshot) -> None:
        self.replace(snapshot.sequence, decode_levels(snapshot.bids),
                     decode_levels(snapshot.asks), _time(snapshot))

    def apply_delta(self, delta: marketdata_pb2.OrderBookDelta) -> None:
        self.change(delta.first_sequence, delta.sequence, decode_levels(delta.bids),
                    decode_levels(delta.asks), _time(delta))

    # Decoded messages: for a caller that decodes one message once for many books (the
    # levels are immutable, so books may share them).

    def replace(self, sequence: int, bids: Iterable[Level], asks: Iterable[Level],
                time: timestamp_pb2.Timestamp | None = None) -> None:
        """Apply a snapshot decoded into levels (``decode_levels``)."""
        self._bids = {}
        self._asks = {}
        _merge(self._bids, bids)
        _merge(self._asks, asks)
        self.sequence = sequence
        self.time = time
        self.snapshots += 1

    def change(self, first_sequence: int, sequence: int, bids: Iterable[Level],
               asks: Iterable[Level], time: timestamp_pb2.Timestamp | None = None) -> None:
        """Apply a delta decoded into levels (quantity 0: the level is gone); raises
        SequenceGap (book unchanged) when ``first_sequence`` does not follow on."""
        expected = None if self.sequence is None else self.sequence + 1
        if expected is None or first_sequence != expected:
            raise SequenceGap(expected, first_sequence)
        _merge(self._bids, bids)
        _merge(self._asks, asks)
        self.sequence = sequence
        self.time = time
        self.deltas += 1

    def bids(self, depth: int = 0) -> list[Level]:
        """Bid levels, best (highest) first; ``depth`` 0 means all."""
        if depth > 0:
            return heapq.nlargest(depth, self._bids.values(), key=_price)
        return sorted(self._bids.values(), key=_price, reverse=True)

    def asks(self, depth: int = 0) -> list[Level]:
        """Ask levels, best (lowest) first; ``depth`` 0 means all."""
        if depth > 0:
            return heapq.nsmallest(depth, self._asks.values(), key=_price)
        return sorted(self._asks.values(), key=_price)

    @property
    def best_bid(self) -> Level | None:
        return max(self._bids.values(), key=_price, default=None)

    @property
    def best_ask(self) -> Level | None:
        return min(self._asks.values(), key=_price, default=None)

    @property
    def spread(self) -> Decimal | None:
        bid, ask = self.best_bid, self.best_ask
        if bid is None or ask is None:
            return None
        return ask.price - bid.price

    def to_snapshot(self, depth: int = 0) -> marketdata_pb2.OrderBookSnapshot:
        """The book as the server would send it: an ``OrderBookSnapshot`` with the
        sequence, the time and the levels best first (``depth`` 0 means all), the
        server's digits kept ("70000.00"). E.g. to compare with ``GetOrderBook`` or to
        pass the book on. Raises ValueError before the first snapshot."""
        if self.sequence is None:
            raise ValueError("no snapshot applied yet")
        return marketdata_pb2.OrderBookSnapshot(
            sequence=self.sequence, time=self.time,
            bids=[_wire(level) for level in self.bids(depth)],
            asks=[_wire(level) for level in self.asks(depth)])

    def __repr__(self) -> str:
        return (f"LocalOrderBook({self.instrument!r}, sequence={self.sequence}, "
                f"bids={len(self._bids)}, asks={len(self._asks)})")


def _price(level: Level) -> Decimal:
    return level.price


def _wire(level: Level) -> marketdata_pb2.PriceLevel:
    # "f": the digits as received, never an exponent (str(Decimal("0.0000001")) is "1E-7").
    return marketdata_pb2.PriceLevel(price=f"{level.price:f}", quantity=f"{level.quantity:f}",
                                     order_count=level.order_count)


def _time(msg: marketdata_pb2.OrderBookSnapshot | marketdata_pb2.OrderBookDelta
          ) -> timestamp_pb2.Timestamp | None:
    if not msg.HasField("time"):
        return None
    ts = timestamp_pb2.Timestamp()
    ts.CopyFrom(msg.time)
    return ts


def decode_levels(levels: Iterable[marketdata_pb2.PriceLevel]) -> tuple[Level, ...]:
    """A message's levels as ``Level``s (quantity 0: the level is gone)."""
    return tuple(Level(Decimal(lv.price), Decimal(lv.quantity), lv.order_count)
                 for lv in levels)


def _merge(side: dict[Decimal, Level], levels: Iterable[Level]) -> None:
    for level in levels:
        if level.quantity == 0:
            side.pop(level.price, None)
        else:
            side[level.price] = level
