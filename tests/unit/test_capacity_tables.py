"""bench.capacity and the multi-instrument parts of bench.loadgen: the pure parts (the
configurations, the judging of a step, the cost table's arithmetic, the instruments and
their pods, the orders on each instrument's grid). No timing is judged."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bench import capacity
from bench.loadgen.targets import markets_of, pod_groups, pod_name
from bench.orders import BENCH_MARKETS, BTC_USD, ETH_USD, SEED_MIX, OrderMaker, rescale


def test_configs_are_instruments_by_pods():
    assert capacity.parse_configs(capacity.DEFAULT_CONFIGS) == [
        (1, 1), (2, 1), (4, 1), (2, 2), (4, 2), (4, 4)]
    for bad in ("2", "2x3", "5x1", "0x1", "ax1"):
        with pytest.raises(SystemExit):
            capacity.parse_configs(bad)


def test_instruments_and_their_pods():
    assert [m.symbol for m in markets_of("4")] == ["BTC-USD", "ETH-USD", "CAP3-USD",
                                                    "CAP4-USD"]
    assert markets_of("ETH-USD,BTC-USD") == [ETH_USD, BTC_USD]
    for bad in ("0", "5", "XRP-USD", "BTC-USD,BTC-USD"):
        with pytest.raises(SystemExit):
            markets_of(bad)
    assert pod_groups(["A", "B", "C", "D"], 2) == [["A", "C"], ["B", "D"]]
    assert pod_groups(["A", "B", "C", "D"], 4) == [["A"], ["B"], ["C"], ["D"]]
    with pytest.raises(SystemExit):
        pod_groups(["A", "B"], 3)
    assert [pod_name(i) for i in range(3)] == ["matching", "matching-1", "matching-2"]


def test_orders_are_on_each_instruments_grid():
    assert rescale(1234, 4, 3) == 123 and rescale(5, 4, 3) == 1 and rescale(12, 2, 4) == 1200
    for market in BENCH_MARKETS:
        maker = OrderMaker(SEED_MIX, 5)
        for i in range(300):
            o = maker.create(f"c-{i}", market)
            assert o.instrument == market.symbol
            whole, _, frac = o.quantity.partition(".")
            assert len(frac) == market.qty_decimals, o.quantity
            assert Decimal("0.01") <= Decimal(o.quantity) <= Decimal("0.5")
            if o.price:
                assert len(o.price.partition(".")[2]) == market.price_decimals
                assert Decimal("68000") <= Decimal(o.price) <= Decimal("72000")
    # BTC-USD's stream is the seed stream, whether or not the market is named.
    a, b = OrderMaker(SEED_MIX, 1), OrderMaker(SEED_MIX, 1)
    assert [a.create(f"c-{i}") for i in range(20)] == [b.create(f"c-{i}", BTC_USD)
                                                        for i in range(20)]


def test_a_step_is_judged_on_latency_errors_and_rate():
    ok = dict(rate=1000, achieved=990, p99=80.0, errors=1, scheduled=8000, bound_ms=100,
              max_error_fraction=0.001)
    assert capacity.judge(**ok) == (True, "ok")
    assert not capacity.judge(**{**ok, "p99": 101.0})[0]
    assert not capacity.judge(**{**ok, "errors": 9})[0]
    assert not capacity.judge(**{**ok, "achieved": 940})[0]
    assert not capacity.judge(**{**ok, "p99": None})[0]


def test_the_ramp_candidate_is_below_the_first_failing_step():
    def step(rate, p99, errors=0):
        return {"rate": rate, "achieved": rate, "p50": 1.0, "p99": p99, "max": p99,
                "errors": errors, "server_cpu_per_op_us": 500.0}

    ramp = {"steps": [step(250, 10), step(500, 20), step(750, 150), step(1000, 90)]}
    steps, best = capacity.judge_ramp(ramp, 8, 3, 100, 0.001)
    assert best == 500 and [s["pass"] for s in steps] == [True, True, False, True]
    _, best = capacity.judge_ramp({"steps": [step(250, 500)]}, 8, 3, 100, 0.001)
    assert best is None


def _figures():
    cpu = {"operations": 1000, "window_s": 30.0, "total_us": 800.0,
           "service_us": {"order": 400.0, "matching": 200.0, "marketdata": 50.0,
                          "postgres": 130.0, "redis": 20.0},
           "process_us": {"matching": 100.0, "matching-1": 100.0}, "loadgen_us": 300.0,
           "server_cores": 1.2, "other_cores": 0.05, "steal_cores": 0.0}
    cap = {"rate": 1500.0, "achieved": 1498.0, "p50": 12.0, "p99": 80.0, "p99_9": 95.0,
           "cpu": cpu, "instruments": [{"symbol": "BTC-USD", "rate_achieved": 749.0},
                                       {"symbol": "ETH-USD", "rate_achieved": 749.0}],
           "owner_pod": {"BTC-USD": "matching", "ETH-USD": "matching-1"}}
    settings = {"p99_bound_ms": 100.0, "mode": "unary", "batch": 1,
                "max_error_fraction": 0.001, "confirm_seconds": 30.0, "ramp_start": 250.0}
    return {"kind": "orders", "settings": settings, "configs": [
        {"config": "2x2", "name": "2 instruments / 2 pods", "instruments": 2, "pods": 2,
         "ramp": {"candidate": 1500.0, "max_reached": False}, "capacity": cap},
        {"config": "1x1", "name": "1 instrument / 1 pod", "instruments": 1, "pods": 1,
         "ramp": {"candidate": None}, "capacity": None}]}


def test_the_tables_and_the_cost():
    figures = _figures()
    table = capacity.orders_table(figures)
    assert "| 2 instruments / 2 pods | 1498 | 12.0 / 80.0 | 800 | 400 | 200 | 50 | 130 | 20 " \
           "| 300 | 0.05 |" in table
    assert "| 1 instrument / 1 pod | not held" in table
    assert "BTC-USD 749 (matching), ETH-USD 749 (matching-1)" in table
    cost = capacity.cost_table(figures, rates=[2000, 10000], utilisation=0.5,
                               node_vcpus=[16], price_per_hour=Decimal("0.1785"),
                               instance_vcpus=4, instance="test instance")
    # 10,000/s x 800 us / 0.5 = 16 cores: order 8, matching 4, md 1, pg 2.6 -> 3, redis 0.4
    # -> 1: 17 vCPU, 5 instances of 4 at 0.1785 x 730 = 130.305 each = 651.525 -> $652.
    assert "| 10,000 | 8.0 | 4.0 (4, 4) | 1.0 | 2.6 | 0.4 | 17 | 5 | $652 |" in cost
    assert "$32.58 per vCPU-month" in cost
    assert "| 16 | 10,000 |" in cost  # 16 x 0.5 x 1e6 / 800
    assert "2,500 orders/s per instrument" in cost  # 0.5 x 1e6 / 200


def test_report_writes_between_the_markers(tmp_path):
    import json

    result = tmp_path / "capacity-orders-x.json"
    result.write_text(json.dumps({"command": "python -m bench.capacity orders", "date": "d",
                                  "machine": {"cpus": 2}, "figures": _figures()}))
    doc = tmp_path / "RESULTS.md"
    doc.write_text(f"# x\n\nbefore\n{capacity.MARK_BEGIN}\nstale text\n"
                   f"{capacity.MARK_END}\nafter\n")
    assert capacity.main(["report", str(result), "--into", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{capacity.MARK_END}\nafter\n")
    assert "stale text" not in text and "monthly cost" in text and "#### Orders" in text
    doc.write_text("no markers")
    with pytest.raises(SystemExit):
        capacity.main(["report", str(result), "--into", str(doc)])


def test_fanout_counts_are_judged_and_tabled():
    def row(n, p99, gaps=0, snaps=0):
        return {"lag_ms": {"p50_ms": 1.0, "p99_ms": p99}, "sequence_gaps": gaps,
                "snapshots_to_normal_subscribers": snaps, "streams_ended_early": 0,
                "subscribers": n}

    assert capacity.fanout_pass(row(10, 50.0), 100) == (True, "ok")
    assert not capacity.fanout_pass(row(10, 150.0), 100)[0]
    assert capacity.fanout_pass(row(10, 50.0, gaps=1), 100) == (False, "1 sequence gaps")
    assert not capacity.fanout_pass(row(10, None), 100)[0]

    def run(n, ok):
        return {"subscribers": n, "pass": ok, "why": "ok" if ok else "lag P99 150 ms > 100 ms",
                "lag_ms": {"p50_ms": 2.0, "p99_ms": 50.0 if ok else 150.0},
                "deltas_per_s": 1000.0 * n, "marketdata_cores": 0.5,
                "marketdata_us_per_message": 25.0, "server_cores": 1.0,
                "client_cores": {"load client": 0.2, "subscriber clients": 0.3},
                "other_cores": 0.01}

    figures = {"settings": {"lag_bound_ms": 100.0, "rate": 2000.0, "duration": 20.0},
               "workers": [
                   {"md_workers": 1, "served": 500, "all_held": False,
                    "runs": [run(500, True), run(1000, False)]},
                   {"md_workers": 2, "served": 1000, "all_held": True,
                    "runs": [run(500, True), run(1000, True)]}]}
    table = capacity.fanout_table(figures)
    assert "| 1 | 1000 | 2.0 / 150.0 | 1000000 | 0.50 | 25.0 | 1.00 | 0.50 | 0.01 | no: " in table
    assert "- 1 market-data worker(s): 500 subscribers within the bound" in table
    assert "- 2 market-data worker(s): >= 1000 subscribers" in table


def test_report_takes_the_newest_results(tmp_path):
    for name in ("capacity-orders-20260101T000000Z.json", "capacity-orders-20260102T000000Z.json",
                 "capacity-fanout-20260101T000000Z.json", "loadgen-seed-20270101T000000Z.json"):
        (tmp_path / name).write_text("{}")
    assert [p.rsplit("/", 1)[1] for p in capacity.latest(tmp_path)] == [
        "capacity-orders-20260102T000000Z.json", "capacity-fanout-20260101T000000Z.json"]
