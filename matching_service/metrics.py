"""The matching pod's metrics (see exchange_common.metrics for the endpoint).

Counted per batch, never per order: the loop adds a batch's figures after its commit.
Notional is counted in an instrument's own integer units (one tick of price times one
lot of quantity); ``exchange_instrument_info`` carries the tick and lot sizes as labels,
so that a reader can turn them into the quote asset exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchange_common import metrics
from exchange_common.metrics import BATCH_BUCKETS, Children, Registry, counter, gauge, histogram

if TYPE_CHECKING:
    from exchange_common.instruments import InstrumentSpec
    from matching_service.engine import Changes

# Seconds: a snapshot of a deep book takes hundreds of milliseconds.
SNAPSHOT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MatchingMetrics(metrics.CommonMetrics):
    def __init__(self, registry: Registry) -> None:
        super().__init__(registry, "matching")
        self.queue_depth = Children(gauge(
            registry, "exchange_matching_queue_depth",
            "Commands waiting for an instrument's writer loop", ("instrument",)))
        self.batch_commands = histogram(
            registry, "exchange_matching_batch_commands",
            "Commands per batch (one batch is one journal commit)", buckets=BATCH_BUCKETS)
        self.commit_seconds = histogram(
            registry, "exchange_journal_commit_seconds",
            "Seconds one batch's journal commit took (PostgreSQL round trip included)")
        self.commit_failures = Children(counter(
            registry, "exchange_journal_commit_failures",
            "Journal commits that failed (nothing acknowledged), by kind (database, fenced)",
            ("kind",)))
        for kind in ("database", "fenced"):
            self.commit_failures(kind)  # at 0 from the start: increase() sees the first one
        self.commands = Children(counter(
            registry, "exchange_matching_commands",
            "Commands executed, by instrument", ("instrument",)))
        self.trades = Children(counter(
            registry, "exchange_trades", "Trades committed, by instrument", ("instrument",)))
        self.notional = Children(counter(
            registry, "exchange_traded_notional_units",
            "Notional traded (price x quantity) in the instrument's units of one tick x one "
            "lot", ("instrument",)))
        self.snapshot_seconds = histogram(
            registry, "exchange_snapshot_seconds",
            "Seconds to encode and write one book snapshot", buckets=SNAPSHOT_BUCKETS)
        self.owner_epoch = Children(gauge(
            registry, "exchange_matching_owner_epoch",
            "The owner epoch of each instrument this pod owns (absent: not owned here)",
            ("instrument",)))
        self.without_owner = gauge(
            registry, "exchange_instruments_without_owner",
            "Instruments no matching pod holds the ownership lock of (every pod reports the "
            "same count)")
        self.info = Children(gauge(
            registry, "exchange_instrument_info",
            "1 for each instrument this pod owns, with its assets, tick and lot sizes",
            ("instrument", "base", "quote", "tick_size", "lot_size")))
        self.publish_lag = histogram(
            registry, "exchange_marketdata_publish_lag_seconds",
            "Seconds from a batch's commit to its publication in Redis")
        self.publish_backlog = Children(gauge(
            registry, "exchange_marketdata_publish_backlog",
            "Committed batches waiting to be published to Redis", ("instrument",)))
        self.publish_failures = counter(
            registry, "exchange_marketdata_publish_failures",
            "Redis publications that failed (the batches wait and are sent again)")
        self.publish_dropped = counter(
            registry, "exchange_marketdata_publish_dropped",
            "Batches dropped from a full publish backlog (market data resynchronizes)")

    def committed(self, symbol: str, commands: int, seconds: float, changes: Changes) -> None:
        self.batch_commands.observe(commands)
        self.commit_seconds.observe(seconds)
        self.commands(symbol).inc(commands)
        if changes.trades:
            self.trades(symbol).inc(len(changes.trades))
            self.notional(symbol).inc(sum(t.price * t.quantity for t in changes.trades))

    def owned(self, spec: InstrumentSpec, epoch: int) -> None:
        self.owner_epoch(spec.symbol).set(epoch)
        self.info(spec.symbol, spec.base_asset, spec.quote_asset, str(spec.tick_size),
                  str(spec.lot_size)).set(1)

    def released(self, spec: InstrumentSpec) -> None:
        for children, labels in ((self.owner_epoch, (spec.symbol,)),
                                 (self.info, (spec.symbol, spec.base_asset, spec.quote_asset,
                                              str(spec.tick_size), str(spec.lot_size))),
                                 (self.queue_depth, (spec.symbol,)),
                                 (self.publish_backlog, (spec.symbol,))):
            if children.cache.pop(labels, None) is not None:
                children.metric.remove(*labels)
