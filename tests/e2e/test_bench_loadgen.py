"""Smoke runs of the load generator (``python -m bench.loadgen``) so that it cannot rot.

Seconds each, at tiny rates: unary and order-entry stream against an exchange
the tool starts itself (embedded PostgreSQL and Redis, the three services),
and both modes against the echo floor. Each checks that the JSON result holds
its figures (latency percentiles, achieved rate, CPU per operation), that
there were no errors, and that every acknowledged order is in PostgreSQL.
These are not benchmarks: the figures are not judged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def loadgen(tmp_path: Path, *args: str, timeout: float = 90,
            env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--rate", "50", "--duration", "2",
         "--accounts", "5", "--out", str(tmp_path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = list(tmp_path.glob("*.json"))
    assert len(results) == 1, results
    data = json.loads(results[0].read_text())
    assert data["command"].startswith("python -m bench.loadgen --rate 50")
    assert "server CPU" in proc.stdout  # the summary table was printed
    return data


def check_run(run: dict, *, durable: bool) -> None:
    creates = run["creates"]
    assert run["error_count"] == 0, (run["errors"], run.get("error_examples"))
    assert creates["sent"] == 100 and creates["ok"] == 100, creates
    lat = creates["latency_ms"]
    for key in ("p50", "p90", "p95", "p99", "p99_9", "max"):
        assert lat[key] is not None and lat[key] > 0, lat
    assert lat["p50"] <= lat["p99"] <= lat["max"]
    assert run["rate_achieved"] > 0
    assert run["server_cpu_per_op_us"] > 0 and run["loadgen_cpu_per_op_us"] > 0
    assert run["cpu"][0]["operations"] > 0
    assert len(run["per_second"]) == 2
    if durable:
        d = run["durability"]
        assert d["checked"] and d["acknowledged"] == 100 and d["missing"] == 0, d


def test_unary_against_the_exchange(tmp_path: Path) -> None:
    data = loadgen(tmp_path, "--target", "exchange", "--mode", "unary", "--no-plot",
                   env={"EXCHANGE_COMMIT_MIN_INTERVAL": "0.004"})
    # The settings of the run are written down with it, credentials only as "<set>".
    assert data["environment"]["EXCHANGE_COMMIT_MIN_INTERVAL"] == "0.004"
    assert all(value in ("<set>", "") for name, value in data["environment"].items()
               if "URL" in name), data["environment"]
    (run,) = data["figures"]["runs"]
    assert (run["target"], run["mode"]) == ("exchange", "unary")
    check_run(run, durable=True)
    for name in ("order", "matching", "marketdata", "postgres", "redis", "loadgen"):
        assert name in run["cpu"][0]["cpu_seconds"]
    assert run["cpu"][0]["cpu_seconds"]["postgres"] > 0


def test_stream_against_the_exchange(tmp_path: Path) -> None:
    data = loadgen(tmp_path, "--target", "exchange", "--mode", "stream", "--batch", "3",
                   "--sessions", "2", "--no-plot")
    (run,) = data["figures"]["runs"]
    assert (run["target"], run["mode"], run["batch"]) == ("exchange", "stream", 3)
    check_run(run, durable=True)
    assert run["unmatched_answers"] == 0 and run["session_failures"] == 0
    assert 2 < run["commands_per_message"] <= 3


def test_echo_floor_both_modes_with_plot(tmp_path: Path) -> None:
    data = loadgen(tmp_path, "--target", "echo", "--mode", "unary,stream", "--batch", "1")
    runs = data["figures"]["runs"]
    assert [(r["target"], r["mode"]) for r in runs] == [("echo", "unary"), ("echo", "stream")]
    for run in runs:
        check_run(run, durable=False)
        assert "echo" in run["cpu"][0]["cpu_seconds"]
    plots = list(tmp_path.glob("*.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 10_000
