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

Integrity: each snapshot and delta carries ``checksum``, a CRC-32 of the top levels
after the message (docs/marketdata.md); :meth:`LocalOrderBook.apply` recomputes it from
the levels it holds and raises :class:`ChecksumMismatch` when they differ, and a
heartbeat whose sequence is not the book's is a gap. Either way the watcher resubscribes.

:class:`LocalL3Book` keeps the order-by-order book of StreamOrderBookL3 the same way
(sequences checked; a change to an order it does not hold is a gap).

Pure logic: no gRPC, no I/O.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

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


class ChecksumMismatch(Exception):
    """The book after a message does not have the checksum the server sent: resubscribe."""

    def __init__(self, sequence: int, expected: int, actual: int) -> None:
        self.sequence = sequence
        self.expected = expected
        self.actual = actual
        super().__init__(f"checksum mismatch at sequence {sequence}: the server sent "
                         f"{expected}, the local book has {actual}")


#: Levels per side the checksum covers (fewer when the subscriber keeps fewer).
CHECKSUM_LEVELS = 10


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def book_checksum(bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> int:
    """CRC-32 of the best 10 asks then the best 10 bids, each side best first, each level
    its price then its quantity as the server wrote them, the point removed and the
    leading zeros stripped (docs/marketdata.md)."""
    text = "".join(_digits(p) + _digits(q) for p, q in asks)
    text += "".join(_digits(p) + _digits(q) for p, q in bids)
    return zlib.crc32(text.encode("ascii"))


class LocalOrderBook:
    """Bids and asks by price, the sequence they reflect, and counters.

    ``sequence`` is None until the first snapshot. ``resubscribes`` counts
    the gaps and checksum mismatches the watcher recovered from
    (``checksum_mismatches`` the latter). ``verify`` (default on): check each
    message's checksum.
    """

    def __init__(self, instrument: str = "", *, verify: bool = True) -> None:
        self.instrument = instrument
        self.verify = verify
        self.checksum_mismatches = 0
        self.heartbeats = 0
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
            self._check(update.snapshot.checksum)
        elif kind == "delta":
            self.apply_delta(update.delta)
            self._check(update.delta.checksum)
        elif kind == "heartbeat":
            self.heartbeats += 1
            if update.heartbeat.sequence != self.sequence:
                raise SequenceGap(self.sequence, update.heartbeat.sequence)

    def checksum(self) -> int:
        """The checksum of the levels held (what the server sends after each message)."""
        return book_checksum(
            ((f"{lv.price:f}", f"{lv.quantity:f}") for lv in self.bids(CHECKSUM_LEVELS)),
            ((f"{lv.price:f}", f"{lv.quantity:f}") for lv in self.asks(CHECKSUM_LEVELS)))

    def _check(self, expected: int) -> None:
        if not self.verify:
            return
        actual = self.checksum()
        if actual != expected:
            self.checksum_mismatches += 1
            raise ChecksumMismatch(self.sequence or 0, expected, actual)

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


@dataclass(frozen=True, slots=True)
class L3Order:
    """One resting order as the public sees it."""

    order_id: str
    side: int  # exchange.common.v1.Side
    price: Decimal
    quantity: Decimal
    priority: int


class LocalL3Book:
    """The order-by-order book kept from StreamOrderBookL3: orders by id, the sequence.

    A delta that does not follow on, a heartbeat at another sequence, or a change to an
    order the book does not hold raises :class:`SequenceGap` (resubscribe).
    """

    def __init__(self, instrument: str = "") -> None:
        self.instrument = instrument
        self.sequence: int | None = None
        self.orders: dict[str, L3Order] = {}
        self.snapshots = 0
        self.deltas = 0
        self.heartbeats = 0
        self.resubscribes = 0

    @property
    def ready(self) -> bool:
        return self.sequence is not None

    def apply(self, update: marketdata_pb2.StreamOrderBookL3Response) -> None:
        if update.instrument and not self.instrument:
            self.instrument = update.instrument
        kind = update.WhichOneof("update")
        if kind == "snapshot":
            snap = update.snapshot
            self.orders = {o.order_id: _l3(o) for o in (*snap.bids, *snap.asks)}
            self.sequence = snap.sequence
            self.snapshots += 1
        elif kind == "delta":
            delta = update.delta
            expected = None if self.sequence is None else self.sequence + 1
            if expected is None or delta.first_sequence != expected:
                raise SequenceGap(expected, delta.first_sequence)
            orders = dict(self.orders)
            for change in delta.changes:
                order_id = change.order.order_id
                if change.kind == marketdata_pb2.L3_CHANGE_KIND_ADD:
                    orders[order_id] = _l3(change.order)
                elif order_id not in orders:
                    raise SequenceGap(expected, delta.first_sequence)
                elif change.kind == marketdata_pb2.L3_CHANGE_KIND_CHANGE:
                    orders[order_id] = _l3(change.order)
                else:
                    del orders[order_id]
            self.orders = orders
            self.sequence = delta.sequence
            self.deltas += 1
        elif kind == "heartbeat":
            self.heartbeats += 1
            if update.heartbeat.sequence != self.sequence:
                raise SequenceGap(self.sequence, update.heartbeat.sequence)

    def side(self, side: int) -> list[L3Order]:
        """One side's orders: best price first, each price in time priority."""
        best_first = side == 1
        return sorted((o for o in self.orders.values() if o.side == side),
                      key=lambda o: (-o.price if best_first else o.price, o.priority))

    def bids(self) -> list[L3Order]:
        return self.side(1)

    def asks(self) -> list[L3Order]:
        return self.side(2)

    def levels(self, side: int) -> list[Level]:
        """The aggregated (L2) levels of one side, best first."""
        out: dict[Decimal, Level] = {}
        for o in self.side(side):
            lv = out.get(o.price)
            out[o.price] = Level(o.price, o.quantity + (lv.quantity if lv else 0),
                                 (lv.order_count if lv else 0) + 1)
        return list(out.values())

    def __repr__(self) -> str:
        return (f"LocalL3Book({self.instrument!r}, sequence={self.sequence}, "
                f"orders={len(self.orders)})")


def _l3(o: marketdata_pb2.L3Order) -> L3Order:
    return L3Order(o.order_id, o.side, Decimal(o.price), Decimal(o.quantity), o.priority)


# The books a follower keeps (``watch_order_book``, ``watch_order_book_l3``).
Followed = TypeVar("Followed", LocalOrderBook, LocalL3Book)


def resubscribe_delay(book: LocalOrderBook | LocalL3Book, failures: int,
                      gap: SequenceGap | ChecksumMismatch, max_resubscribes: int | None
                      ) -> float:
    """A follower (``watch_order_book``, ``watch_order_book_l3``) lost the thread for the
    ``failures``-th time in a row: count the resubscription on ``book``, re-raise ``gap``
    past ``max_resubscribes``, else the seconds to wait before subscribing again (none the
    first time, then 0.1, 0.2, ... up to 2 s)."""
    book.resubscribes += 1
    if max_resubscribes is not None and failures > max_resubscribes:
        raise gap
    return min(0.05 * 2 ** (failures - 2), 2.0) if failures > 1 else 0.0
