"""Figures from the services' Prometheus endpoints, without a Prometheus server.

``exchange top`` reads ``/metrics`` itself, for when there is no Prometheus or Grafana
to ask. It needs three things a Prometheus server would compute, and computes them the
same way, so that what it shows agrees with the dashboards when there are some:

- a scrape: the text exposition of one endpoint, parsed by ``prometheus_client``'s own
  parser, kept as sample name -> labels -> value (``_total``, ``_bucket``, ``_count``
  as exposed);
- a rate, as ``rate()`` over two samples: the increase of a counter between two scrapes
  over the seconds between them. A counter that went down was reset (the process
  restarted), so its whole value is the increase; a series that was not there before
  started at 0 (a labelled counter appears at its first increment);
- a percentile, as ``histogram_quantile()`` on the increase of each bucket between two
  scrapes: the bucket that holds the rank, and a linear interpolation inside it (the
  lowest bucket starts at 0; a rank in the ``+Inf`` bucket is the highest finite bound).

Several endpoints of one service (several matching pods) add up: rates and bucket
increases are summed over the endpoints' intervals, as ``sum(rate(...))`` would.

Sample values are float64 in the exposition and stay so here: they are counts and
seconds, never a price, a quantity or money.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def _matches(labels: Labels, match: Mapping[str, str]) -> bool:
    # An absent label is the empty string, as in PromQL.
    have = dict(labels)
    return all(have.get(name, "") == value for name, value in match.items())


@dataclass(frozen=True)
class Scrape:
    """One endpoint's samples at one moment: sample name -> labels -> value."""

    time: float  # time.monotonic() when the request went out
    samples: dict[str, dict[Labels, float]]

    @classmethod
    def parse(cls, text: str, time: float) -> Scrape:
        """The text exposition ``text`` (ValueError when it is not one)."""
        samples: dict[str, dict[Labels, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, {})[
                    tuple(sorted(sample.labels.items()))] = sample.value
        return cls(time, samples)

    def series(self, name: str, **match: str) -> Iterator[tuple[dict[str, str], float]]:
        """The samples called ``name`` whose labels include ``match``."""
        for labels, value in self.samples.get(name, {}).items():
            if _matches(labels, match):
                yield dict(labels), value

    def sum(self, name: str, **match: str) -> float | None:
        """The sum of the matching samples; None when there is none."""
        values = [value for _, value in self.series(name, **match)]
        return sum(values) if values else None

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        """The matching samples summed by the value of ``label``."""
        out: dict[str, float] = {}
        for labels, value in self.series(name, **match):
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out


@dataclass(frozen=True)
class Interval:
    """Two consecutive scrapes of one endpoint."""

    before: Scrape
    after: Scrape

    @property
    def seconds(self) -> float:
        return self.after.time - self.before.time

    def increases(self, name: str, **match: str) -> Iterator[tuple[dict[str, str], float]]:
        """How much each matching counter (or bucket) grew between the two scrapes."""
        old = self.before.samples.get(name, {})
        for labels, value in self.after.samples.get(name, {}).items():
            if not _matches(labels, match):
                continue
            previous = old.get(labels, 0.0)
            yield dict(labels), value - previous if value >= previous else value


def rate(intervals: Iterable[Interval], name: str, **match: str) -> float | None:
    """Per second, summed over the matching series of every interval; None without an
    interval (no endpoint answered twice in a row)."""
    total, seen = 0.0, False
    for interval in intervals:
        seen = True
        if interval.seconds > 0:
            total += sum(v for _, v in interval.increases(name, **match)) / interval.seconds
    return total if seen else None


def rates_by(intervals: Iterable[Interval], name: str, label: str,
             **match: str) -> dict[str, float]:
    """Per second, by the value of ``label``: every series seen in the later scrapes,
    those that did not move at 0."""
    out: dict[str, float] = {}
    for interval in intervals:
        for labels, grew in interval.increases(name, **match):
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + (grew / interval.seconds
                                            if interval.seconds > 0 else 0.0)
    return out


def bucket_increases(intervals: Iterable[Interval], name: str,
                     **match: str) -> dict[float, float]:
    """The increase of the histogram ``name``'s cumulative buckets (``name_bucket``) by
    upper bound, summed over the matching series of every interval."""
    out: dict[float, float] = {}
    for interval in intervals:
        for labels, grew in interval.increases(name + "_bucket", **match):
            bound = float(labels["le"])  # "+Inf" parses as inf
            out[bound] = out.get(bound, 0.0) + grew
    return out


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """``histogram_quantile(q, ...)`` of cumulative counts by upper bound (``+Inf``
    included), for 0 < q <= 1; None when nothing was observed."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return None
    counts = [buckets[b] for b in bounds]
    for i in range(1, len(counts)):  # buckets scraped mid-update may be off by a little
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    i = next(i for i, count in enumerate(counts) if count >= rank)
    if i == len(bounds) - 1:  # beyond the highest bound: that bound is all we know
        return bounds[-2] if len(bounds) > 1 else None
    if i == 0 and bounds[0] <= 0:
        return bounds[0]
    lower, below = (0.0, 0.0) if i == 0 else (bounds[i - 1], counts[i - 1])
    inside = counts[i] - below
    if inside <= 0:
        return lower
    return lower + (bounds[i] - lower) * (rank - below) / inside


def percentiles(intervals: Iterable[Interval], name: str, qs: Iterable[float],
                **match: str) -> list[float | None]:
    """``quantile`` of each of ``qs`` over the histogram's increase in ``intervals``."""
    buckets = bucket_increases(intervals, name, **match)
    return [quantile(q, buckets) for q in qs]


def mean_per_event(intervals: Iterable[Interval], name: str, **match: str) -> float | None:
    """``increase(name_sum) / increase(name_count)``: e.g. commands per commit; None
    when nothing was observed."""
    intervals = list(intervals)
    count = increase(intervals, name + "_count", **match)
    if not count:
        return None
    return increase(intervals, name + "_sum", **match) / count


def increase(intervals: Iterable[Interval], name: str, **match: str) -> float:
    """How much the matching series grew, summed over ``intervals`` (not per second)."""
    return sum(v for interval in intervals for _, v in interval.increases(name, **match))
