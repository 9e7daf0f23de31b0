"""The market-data service's metrics (see exchange_common.metrics for the endpoint).

Read off the feed once a second (subscriber counts, conflation), never counted per
message sent; with workers, each process reports its own subscribers and the endpoint
sums them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from exchange_common import metrics
from exchange_common.metrics import Children, Registry, counter, gauge, histogram

if TYPE_CHECKING:
    from marketdata_service.feed import MarketFeed


class MarketDataMetrics(metrics.CommonMetrics):
    def __init__(self, registry: Registry) -> None:
        super().__init__(registry, "marketdata")
        self.subscribers = Children(gauge(
            registry, "exchange_marketdata_subscribers",
            "Stream subscriptions served, by kind (book, trades, l3)", ("kind",)))
        self.subscriber_limit = gauge(
            registry, "exchange_marketdata_subscriber_limit",
            "Stream subscriptions one process serves at most (EXCHANGE_MAX_SUBSCRIBERS), "
            "summed over workers")
        self.conflated = counter(
            registry, "exchange_marketdata_conflated_updates",
            "Updates a subscriber that was behind did not get (it was sent a snapshot, or "
            "the trades it missed, instead of its backlog)")
        self.resyncs = Children(counter(
            registry, "exchange_marketdata_resyncs",
            "Snapshots (book) or catch-up messages (trades) sent instead of a backlog",
            ("kind",)))
        self.subscriber_lag = gauge(
            registry, "exchange_marketdata_subscriber_lag_seconds",
            "Age of the oldest update waiting in any subscriber's queue", mode="max")
        self.apply_lag = histogram(
            registry, "exchange_marketdata_apply_lag_seconds",
            "Seconds from a batch's commit in matching to market data applying it")
        self.rebuilds = counter(
            registry, "exchange_marketdata_rebuilds",
            "Instruments rebuilt from PostgreSQL (a gap in the Redis stream, or Redis lost)")

    def watch(self, feed: MarketFeed, max_subscribers: int) -> None:
        self.subscriber_limit.set(max_subscribers)
        seen = {"conflated": 0, "book": 0, "trades": 0, "rebuilds": 0}

        def grow(metric, key: str, total: int) -> None:
            # The feed keeps running totals (a rebuilt market starts again at 0).
            if total > seen[key]:
                metric.inc(total - seen[key])
            seen[key] = total

        def sample() -> None:
            markets = list(feed.markets.values())
            self.subscribers("book").set(sum(len(m.book_subscribers) for m in markets))
            self.subscribers("trades").set(sum(len(m.trade_subscribers) for m in markets))
            self.subscribers("l3").set(sum(len(m.l3_subscribers) for m in markets))
            grow(self.conflated, "conflated", sum(m.dropped for m in markets))
            grow(self.resyncs("book"), "book", sum(m.book_resyncs for m in markets))
            grow(self.resyncs("trades"), "trades", sum(m.trade_resyncs for m in markets))
            grow(self.rebuilds, "rebuilds", feed.rebuilds)
            now = time.monotonic()
            oldest = min((sub.oldest for m in markets
                          for sub in (*m.book_subscribers, *m.trade_subscribers,
                                      *m.l3_subscribers)
                          if sub.oldest is not None), default=now)
            self.subscriber_lag.set(now - oldest)
        self.registry.sample(sample)
