"""Identifiers that carry their instrument.

An order id (and a trade id) is ``instrument_id << 44 | sequence`` where
``sequence`` is the journal sequence number of the event that created it.
Sequences are unique per instrument, so ids are unique across the exchange
without any coordination, and the order service can route a cancel to the
owner of the instrument without a database lookup.
"""

from __future__ import annotations

SEQUENCE_BITS = 44
SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
MAX_INSTRUMENT_ID = (1 << (63 - SEQUENCE_BITS)) - 1


def make_id(instrument_id: int, sequence: int) -> int:
    return (instrument_id << SEQUENCE_BITS) | sequence


def instrument_of(id_: int) -> int:
    return id_ >> SEQUENCE_BITS


def sequence_of(id_: int) -> int:
    return id_ & SEQUENCE_MASK


def parse_id(text: str) -> int | None:
    """The id in a public string, or None when it cannot be one of ours."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    if value <= 0 or value >= 1 << 63:
        return None
    return value
