"""Smoke run of the market-data fan-out benchmark (bench/fanout.py), so that it cannot rot:
a few subscribers, a few orders per second, two seconds, without and with the slow
subscriber, each on its own exchange (real processes, embedded PostgreSQL and Redis)."""

from __future__ import annotations

import pytest

from bench import fanout

pytestmark = pytest.mark.e2e


async def test_fanout_smoke_run_has_its_figures(tmp_path):
    args = fanout.parser().parse_args(
        ["--subscribers", "5", "--rate", "50", "--duration", "2", "--accounts", "2",
         "--no-write"])
    runs = await fanout.main_async(args)
    assert [(r["subscribers"], r["slow_subscriber"]) for r in runs] == [(5, False), (5, True)]
    for r in runs:
        assert r["orders_sent"] == 100
        assert r["orders_answered"] == 100
        assert not r["order_errors"]
        assert r["deltas_received"] > 0
        lag = r["lag_ms"]
        assert lag["count"] == r["deltas_received"]
        assert 0 < lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"]
        assert r["lag_newest_stamp_ms"]["p99_ms"] is not None
        assert r["sequence_gaps"] == 0
        # Every subscriber's local book ends equal to GetOrderBook's.
        assert r["books_equal_to_final"] == 5
        assert r["unmatched_first_sequences"] == 0
        assert r["marketdata_cpu_cores"] is not None
        assert r["marketdata_cpu_us_per_message"] > 0
        assert r["machine_busy_cores"] >= 0 and r["other_cpu_cores"] >= 0
        assert {"marketdata", "order", "matching", "postgres"} <= set(r["cpu_cores"])
    assert "slow_subscriber_snapshots" in runs[1]
    assert runs[1]["slow_subscriber_messages"] >= 1
    table = fanout._table(runs)
    assert "lag p50" in table and len(table.splitlines()) == 4
    assert fanout.command_line(args).startswith(
        "python -m bench.fanout --subscribers 5 --rate 50 --duration 2")
