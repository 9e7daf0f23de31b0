"""The benchmarks' one latency histogram: integer values in an HDR histogram.

Values are integers in one unit per histogram (microseconds for latencies measured
across processes, nanoseconds for the matching core's per-command times); a value is
clamped to [1, highest] so that a zero or an outlier never raises. Histograms travel
between processes as ``encode()`` bytes and are merged with ``add_encoded``/``merged``.
Percentiles come out in a unit of the caller's choice (``divisor``: 1000 turns
microseconds into milliseconds); only the reports hold them as floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hdrh.histogram import HdrHistogram

# Microseconds up to 10 minutes.
MAX_US = 600_000_000


class Histogram:
    """An HDR histogram of integers in [1, ``highest``], ``digits`` significant digits."""

    __slots__ = ("highest", "digits", "_h")

    def __init__(self, highest: int = MAX_US, digits: int = 3) -> None:
        self.highest = highest
        self.digits = digits
        self._h = HdrHistogram(1, highest, digits)

    def record(self, value: int) -> None:
        self._h.record_value(min(max(value, 1), self.highest))

    def reset(self) -> None:
        self._h.reset()

    def add(self, other: Histogram) -> None:
        self._h.add(other._h)

    def add_encoded(self, encoded: bytes) -> None:
        self._h.decode_and_add(encoded)

    def encode(self) -> bytes:
        out: bytes = self._h.encode()
        return out

    @classmethod
    def merged(cls, encoded: Iterable[bytes], highest: int = MAX_US,
               digits: int = 3) -> Histogram:
        h = cls(highest, digits)
        for e in encoded:
            h.add_encoded(e)
        return h

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    @property
    def max(self) -> int:
        return int(self._h.get_max_value())

    def value_at(self, percentile: float) -> int:
        return int(self._h.get_value_at_percentile(percentile))

    def percentiles(self, points: Sequence[tuple[str, float]], divisor: int = 1,
                    ndigits: int = 3, max_key: str | None = "max",
                    max_ndigits: int | None = None) -> dict[str, float | None]:
        """``{name: value at percentile / divisor}`` for each (name, percentile) of
        ``points``, and the maximum under ``max_key``; None for each when it is empty."""
        keys = [name for name, _ in points] + ([max_key] if max_key else [])
        if not self.count:
            return dict.fromkeys(keys)
        out: dict[str, float | None] = {
            name: round(self.value_at(p) / divisor, ndigits) for name, p in points}
        if max_key:
            out[max_key] = round(self.max / divisor,
                                 ndigits if max_ndigits is None else max_ndigits)
        return out
