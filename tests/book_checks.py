"""A StreamOrderBook subscriber's book in tests: the client library's LocalOrderBook, plus
the checks of the stream that the library takes on trust.

Importable from every test directory (pytest puts ``tests/``, where the shared conftest
lives, on ``sys.path``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange_client.book import LocalOrderBook

Levels = list[tuple[str, str, int]]


def apply(book: LocalOrderBook, message: md_pb2.StreamOrderBookResponse) -> str:
    """Apply one stream message to ``book`` and return its kind ("snapshot", "delta" or
    "heartbeat").

    A delta that does not follow on, or a heartbeat at another sequence, raises
    ``SequenceGap``, and a checksum that does not match ``ChecksumMismatch`` (the
    library's checks); before that, a delta must cover at least one sequence and a removed
    level's quantity must be spelled "0"."""
    kind = message.WhichOneof("update")
    assert kind in ("snapshot", "delta", "heartbeat"), message
    if kind == "delta":
        delta = message.delta
        assert delta.sequence >= delta.first_sequence, (delta.first_sequence, delta.sequence)
        for level in (*delta.bids, *delta.asks):
            assert level.quantity == "0" or Decimal(level.quantity) != 0, level
    book.apply(message)
    return kind


def levels(side: Any) -> Levels:
    """(price, quantity, order count) of repeated PriceLevel, as sent."""
    return [(lv.price, lv.quantity, lv.order_count) for lv in side]


def book_view(book: LocalOrderBook | md_pb2.GetOrderBookResponse | md_pb2.OrderBookSnapshot
              ) -> tuple[int, Levels, Levels]:
    """Sequence, bids and asks (best first, as sent) of a local book or a server's book,
    for comparing the two with ``==``."""
    msg = book.to_snapshot() if isinstance(book, LocalOrderBook) else book
    return msg.sequence, levels(msg.bids), levels(msg.asks)
