"""Rates and percentiles from two scrapes (exchange_client._prometheus), as Prometheus
computes them, on the text a real ``prometheus_client`` registry exposes.

Every scrape here is ``generate_latest`` of a registry the test fills, parsed as ``exchange
top`` parses an endpoint's answer; the expected figures are worked out by hand from what
the test observed (``histogram_quantile``: the bucket holding the rank, linear inside it).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from exchange_client._prometheus import (
    Interval,
    Scrape,
    bucket_increases,
    increase,
    mean_per_event,
    percentiles,
    quantile,
    rate,
    rates_by,
)

BUCKETS = (0.01, 0.02, 0.05, 0.1)


def scrape(registry: CollectorRegistry, at: float) -> Scrape:
    return Scrape.parse(generate_latest(registry).decode(), at)


def test_a_scrape_holds_every_sample_as_exposed() -> None:
    registry = CollectorRegistry()
    orders = Counter("t_orders", "d", ["instrument"], registry=registry)
    orders.labels("BTC-USD").inc(3)
    orders.labels("ETH-USD").inc(2)
    Gauge("t_depth", "d", registry=registry).set(7)
    Histogram("t_seconds", "d", ["method"], registry=registry,
              buckets=BUCKETS).labels("CreateOrder").observe(0.015)

    s = scrape(registry, 5.0)
    assert s.time == 5.0
    assert s.sum("t_orders_total", instrument="BTC-USD") == 3
    assert s.sum("t_orders_total") == 5
    assert s.by("t_orders_total", "instrument") == {"BTC-USD": 3, "ETH-USD": 2}
    assert s.sum("t_depth") == 7
    assert s.sum("t_missing") is None
    assert s.sum("t_seconds_count", method="CreateOrder") == 1
    assert dict((labels["le"], v) for labels, v in s.series("t_seconds_bucket")) == {
        "0.01": 0, "0.02": 1, "0.05": 1, "0.1": 1, "+Inf": 1}
    # An absent label matches the empty string, as in PromQL.
    assert s.sum("t_depth", instrument="") == 7


def test_rates_are_the_increase_over_the_seconds_between_two_scrapes() -> None:
    registry = CollectorRegistry()
    orders = Counter("t_orders", "d", ["instrument"], registry=registry)
    orders.labels("BTC-USD").inc(10)
    before = scrape(registry, 100.0)
    orders.labels("BTC-USD").inc(6)
    orders.labels("ETH-USD").inc(4)  # a series that first appears in the later scrape
    after = scrape(registry, 102.0)

    window = [Interval(before, after)]
    assert window[0].seconds == 2.0
    assert rate(window, "t_orders_total", instrument="BTC-USD") == 3.0
    assert rate(window, "t_orders_total") == 5.0
    assert rates_by(window, "t_orders_total", "instrument") == {"BTC-USD": 3.0, "ETH-USD": 2.0}
    assert increase(window, "t_orders_total") == 10.0
    assert rate([Interval(after, scrape(registry, 103.0))], "t_orders_total") == 0.0
    assert rate([], "t_orders_total") is None  # no endpoint answered twice


def test_a_counter_that_went_down_was_reset_and_counts_whole() -> None:
    old = CollectorRegistry()
    Counter("t_orders", "d", registry=old).inc(50)
    restarted = CollectorRegistry()  # the process restarted and counted 4 since
    Counter("t_orders", "d", registry=restarted).inc(4)
    window = [Interval(scrape(old, 0.0), scrape(restarted, 1.0))]
    assert rate(window, "t_orders_total") == 4.0


def test_several_endpoints_add_up() -> None:
    pods = [CollectorRegistry() for _ in range(2)]
    counters = [Counter("t_commits", "d", registry=r) for r in pods]
    befores = [scrape(r, 0.0) for r in pods]
    counters[0].inc(2)
    counters[1].inc(8)
    # Each pod's own interval: one scraped 1 s later, the other 2 s later.
    window = [Interval(befores[0], scrape(pods[0], 1.0)),
              Interval(befores[1], scrape(pods[1], 2.0))]
    assert rate(window, "t_commits_total") == 2.0 + 4.0


def test_percentiles_interpolate_inside_the_bucket_of_the_rank() -> None:
    registry = CollectorRegistry()
    latency = Histogram("t_seconds", "d", ["method"], registry=registry, buckets=BUCKETS)
    create = latency.labels("CreateOrder")
    for _ in range(100):  # before the first scrape: not part of the interval
        create.observe(3.0)
    before = scrape(registry, 0.0)
    for value in [0.005] * 10 + [0.015] * 10:
        create.observe(value)
    latency.labels("CancelOrder").observe(0.07)
    after = scrape(registry, 1.0)
    window = [Interval(before, after)]

    assert bucket_increases(window, "t_seconds", method="CreateOrder") == {
        0.01: 10, 0.02: 20, 0.05: 20, 0.1: 20, math.inf: 20}
    # 20 observations: rank 10 is the top of the first bucket (0 to 0.01), rank 15 half
    # way through the second (0.01 to 0.02), rank 19.8 at 98% of it.
    p50, p75, p99 = percentiles(window, "t_seconds", (0.5, 0.75, 0.99), method="CreateOrder")
    assert p50 == pytest.approx(0.01)
    assert p75 == pytest.approx(0.015)
    assert p99 == pytest.approx(0.0198)
    # Both methods: 21 observations, the 21st in 0.05..0.1.
    (p99_all,) = percentiles(window, "t_seconds", (0.99,))
    assert p99_all == pytest.approx(0.05 + 0.05 * (0.99 * 21 - 20) / 1)


def test_a_rank_beyond_the_highest_bound_is_that_bound() -> None:
    registry = CollectorRegistry()
    latency = Histogram("t_seconds", "d", registry=registry, buckets=BUCKETS)
    before = scrape(registry, 0.0)
    for value in [0.005] * 3 + [7.0]:
        latency.observe(value)
    window = [Interval(before, scrape(registry, 1.0))]
    assert percentiles(window, "t_seconds", (0.99,)) == [0.1]


def test_no_observation_is_no_percentile() -> None:
    registry = CollectorRegistry()
    Histogram("t_seconds", "d", registry=registry, buckets=BUCKETS)
    window = [Interval(scrape(registry, 0.0), scrape(registry, 1.0))]
    assert percentiles(window, "t_seconds", (0.5, 0.99)) == [None, None]
    assert mean_per_event(window, "t_seconds") is None
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {0.1: 3.0}) is None  # no +Inf bucket: not a histogram


def test_mean_per_event_is_sum_over_count_of_the_interval() -> None:
    registry = CollectorRegistry()
    batch = Histogram("t_batch", "d", registry=registry, buckets=(1, 10, 100))
    batch.observe(1000)  # before the interval
    before = scrape(registry, 0.0)
    for commands in (1, 5, 9):
        batch.observe(commands)
    window = [Interval(before, scrape(registry, 1.0))]
    assert mean_per_event(window, "t_batch") == 5.0


@given(st.lists(st.floats(min_value=0.0001, max_value=0.2), min_size=1, max_size=200),
       st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]))
def test_the_estimate_is_in_the_bucket_of_the_true_quantile(values: list[float],
                                                           q: float) -> None:
    """The ceil(q*n)-th smallest observation lies in the bucket that holds the rank, so
    the estimate and the truth share a bucket (or both are beyond the last bound)."""
    registry = CollectorRegistry()
    latency = Histogram("t_seconds", "d", registry=registry, buckets=BUCKETS)
    before = scrape(registry, 0.0)
    for value in values:
        latency.observe(value)
    (estimate,) = percentiles([Interval(before, scrape(registry, 1.0))], "t_seconds", (q,))
    truth = sorted(values)[math.ceil(q * len(values)) - 1]
    bounds = (0.0, *BUCKETS)
    assert estimate is not None
    if truth > BUCKETS[-1]:
        assert estimate == BUCKETS[-1]
        return
    upper = next(b for b in BUCKETS if truth <= b)
    lower = bounds[bounds.index(upper) - 1]
    assert lower <= estimate <= upper
