"""bench.queue_compare's summary: what a queue in front adds to an order, per sync setting
and batch size (the series minus the commit alone; the benchmark itself is smoke-run in
tests/integration/test_bench_queue_compare.py when a NATS server is there)."""

from __future__ import annotations

from bench.queue_compare import added


def _row(target: str, batch: int, p50: float | None, p99: float | None, sync: str = ""):
    return {"target": target, "batch": batch, "sync": sync,
            "message_ms": {"p50": p50, "p99": p99}}


def test_added_is_the_series_minus_the_commit_alone_at_each_batch_size():
    rows = [_row("postgres", 1, 1.0, 3.0), _row("postgres", 10, 2.0, 5.0),
            _row("nats (sync default)", 1, 0.25, 0.5, "default"),
            _row("nats+postgres (sync default)", 1, 1.25, 3.5, "default"),
            _row("nats+postgres (sync default)", 10, 2.5, 4.0, "default"),
            _row("nats+postgres (sync always)", 10, 3.0, 6.0, "always")]
    assert added(rows) == [
        {"sync": "default", "batch": 1, "added_ms": {"p50": 0.25, "p99": 0.5}},
        {"sync": "default", "batch": 10, "added_ms": {"p50": 0.5, "p99": -1.0}},
        {"sync": "always", "batch": 10, "added_ms": {"p50": 1.0, "p99": 1.0}}]


def test_without_the_commit_alone_or_a_percentile_nothing_is_made_up():
    assert added([_row("nats+postgres (sync default)", 1, 1.0, 2.0, "default")]) == []
    rows = [_row("postgres", 1, 1.0, None), _row("nats+postgres (sync x)", 1, 2.0, 3.0, "x")]
    assert added(rows) == [{"sync": "x", "batch": 1, "added_ms": {"p50": 1.0}}]
