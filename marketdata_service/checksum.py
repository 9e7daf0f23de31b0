"""The book checksum of StreamOrderBook (docs/marketdata.md has the definition and a
worked example).

CRC-32 (IEEE, ``zlib.crc32``) of one ASCII string: the best ``CHECKSUM_LEVELS`` asks
(lowest first), then the best ``CHECKSUM_LEVELS`` bids (highest first), of the book as the
subscriber holds it (so a subscriber with a depth below 10 checks its whole view); for each
level its price and then its quantity as sent on the wire, with the decimal point removed
and the leading zeros stripped. Kraken's definition, on this exchange's wire strings: a
client computes it from the strings it received, with no arithmetic.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

CHECKSUM_LEVELS = 10


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def checksum_strings(bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> int:
    """The checksum of (price, quantity) wire strings, each side best first and already
    cut to the levels that count."""
    parts = [_digits(p) + _digits(q) for p, q in asks]
    parts.extend(_digits(p) + _digits(q) for p, q in bids)
    return zlib.crc32("".join(parts).encode("ascii"))


def checksum_levels(price: Callable[[int], str], qty: Callable[[int], str],
                    bids: Iterable[tuple[int, int, int]],
                    asks: Iterable[tuple[int, int, int]]) -> int:
    """The checksum of integer levels (price ticks, lots, orders), each side best first
    and already cut; ``price`` and ``qty`` are the instrument's wire formatters."""
    return checksum_strings(((price(p), qty(q)) for p, q, _ in bids),
                            ((price(p), qty(q)) for p, q, _ in asks))


def checksum_depth(depth: int) -> int:
    """How many levels per side the checksum covers for a subscriber of ``depth``
    (0: all)."""
    return CHECKSUM_LEVELS if depth <= 0 else min(depth, CHECKSUM_LEVELS)
