"""Smoke runs of the capacity tools (issue 15) so that they cannot rot: the load generator
over several instruments and matching pods, ``python -m bench.capacity orders`` and
``fanout`` at tiny rates for seconds. They check that the orders reached every instrument
and every matching pod (each pod owned exactly its group, and its CPU was counted), not
how fast anything was: these are not benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def run(tmp_path: Path, module: str, *args: str, timeout: float = 240) -> dict:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = list(tmp_path.glob("*.json"))
    assert len(results) == 1, results
    return json.loads(results[0].read_text())


def test_loadgen_spreads_over_instruments_and_pods(tmp_path: Path) -> None:
    data = run(tmp_path, "bench.loadgen", "--target", "exchange", "--rate", "60",
               "--duration", "2", "--accounts", "4", "--instruments", "4",
               "--matching-pods", "2", "--no-plot", "--out", str(tmp_path))
    assert data["figures"]["settings"]["instruments"] == ["BTC-USD", "ETH-USD", "CAP3-USD",
                                                           "CAP4-USD"]
    (r,) = data["figures"]["runs"]
    assert r["error_count"] == 0, (r["errors"], r.get("error_examples"))
    assert r["creates"]["ok"] == 120
    per = {i["symbol"]: i for i in r["instruments"]}
    assert set(per) == {"BTC-USD", "ETH-USD", "CAP3-USD", "CAP4-USD"}
    for i in per.values():
        assert i["sent"] == i["ok"] == 30 and i["errors"] == 0, i
        assert i["latency_ms"]["p99"] is not None and i["latency_ms"]["count"] == 30
    d = r["durability"]
    assert d["missing"] == 0
    assert d["orders_per_instrument"] == {s: 30 for s in per}, d
    # Each pod owned its group, and only it.
    assert d["pod_instruments"] == {"matching": ["BTC-USD", "CAP3-USD"],
                                    "matching-1": ["ETH-USD", "CAP4-USD"]}
    assert d["owner_pod"] == {"BTC-USD": "matching", "CAP3-USD": "matching",
                              "ETH-USD": "matching-1", "CAP4-USD": "matching-1"}, d
    cpu = r["cpu"][0]["cpu_seconds"]
    assert cpu["matching"] > 0 and cpu["matching-1"] > 0, cpu
    assert {"order", "marketdata", "postgres", "redis", "loadgen", "other"} <= set(cpu)


def test_capacity_orders_smoke(tmp_path: Path) -> None:
    data = run(tmp_path, "bench.capacity", "orders", "--configs", "2x2", "--ramp-start", "40",
               "--ramp-step", "40", "--ramp-max", "80", "--step-seconds", "2", "--warmup", "1",
               "--confirm-seconds", "2", "--accounts", "4", "--out", str(tmp_path))
    assert data["command"].startswith("python -m bench.capacity orders --configs 2x2")
    (c,) = data["figures"]["configs"]
    assert (c["instruments"], c["pods"]) == (2, 2)
    assert [s["rate"] for s in c["ramp"]["steps"]] == [40, 80]
    assert c["confirmations"], c
    cap = c["capacity"]
    if cap is None:  # a very busy machine: the tiny rates did not hold; the run still did
        pytest.skip(f"no rate held on this machine: {c['confirmations']}")
    assert cap["orders_per_instrument"]["BTC-USD"] > 0
    assert cap["orders_per_instrument"]["ETH-USD"] > 0
    assert cap["owner_pod"] == {"BTC-USD": "matching", "ETH-USD": "matching-1"}
    cpu = cap["cpu"]
    assert cpu["process_us"]["matching"] > 0 and cpu["process_us"]["matching-1"] > 0
    assert cpu["service_us"]["matching"] == pytest.approx(
        cpu["process_us"]["matching"] + cpu["process_us"]["matching-1"], abs=0.2)
    assert cpu["total_us"] > 0 and cpu["other_cores"] is not None
    md = next(tmp_path.glob("*.md")).read_text()
    assert "| 2 instruments / 2 pods |" in md
    report = subprocess.run([sys.executable, "-m", "bench.capacity", "report",
                             str(next(tmp_path.glob("*.json")))], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert "monthly cost" in report.stdout and "| 50,000 |" in report.stdout


def test_capacity_fanout_smoke(tmp_path: Path) -> None:
    data = run(tmp_path, "bench.capacity", "fanout", "--md-workers", "2", "--subscribers",
               "3", "--rate", "40", "--duration", "2", "--out", str(tmp_path))
    (w,) = data["figures"]["workers"]
    assert w["md_workers"] == 2
    (r,) = w["runs"]
    assert r["subscribers"] == 3 and r["deltas_per_s"] > 0
    assert r["marketdata_cores"] > 0 and r["marketdata_us_per_message"] > 0
    assert not r["order_errors"], r["order_errors"]
    assert "| 2 | 3 |" in next(tmp_path.glob("*.md")).read_text()
