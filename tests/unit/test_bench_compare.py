"""``python -m bench compare``: two result files side by side, regressions marked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.compare import main, report

ROOT = Path(__file__).resolve().parents[2]


def loadgen_result(path: Path, p99: float, cpu: float, achieved: float, other: float = 0.0,
                   label: str = "exchange unary") -> Path:
    run = {"label": label, "rate_target": 2000.0, "rate_achieved": achieved,
           "error_count": 0, "server_cpu_per_op_us": cpu, "loadgen_cpu_per_op_us": 200.0,
           "creates": {"latency_ms": {"p50": 10.0, "p90": 20.0, "p99": p99, "p99_9": 90.0,
                                      "max": 100.0}},
           "cpu": [{"window": "steady", "cpu_cores": {"order": 0.7, "other": other}}]}
    path.write_text(json.dumps({"benchmark": "loadgen-seed", "command": "python -m bench...",
                                "date": "2026-12-04T00:00:00+00:00",
                                "figures": {"runs": [run]}}))
    return path


def test_loadgen_runs_are_compared_by_label_and_regressions_marked(tmp_path: Path) -> None:
    a = loadgen_result(tmp_path / "a.json", p99=50.0, cpu=600.0, achieved=2000.0)
    b = loadgen_result(tmp_path / "b.json", p99=80.0, cpu=590.0, achieved=1990.0)
    text, worse = report(a, b, 0.10)
    lines = {line.split("  ")[0].strip(): line for line in text.splitlines()}
    assert "1.60x" in lines["exchange unary: latency_ms.p99"]
    assert lines["exchange unary: latency_ms.p99"].endswith("worse")
    assert not lines["exchange unary: server_cpu_per_op_us"].endswith("worse")  # better
    assert not lines["exchange unary: rate_achieved"].endswith("worse")  # within 10%
    assert worse == 1
    assert main([str(a), str(b)]) == 0
    assert main([str(a), str(b), "--check"]) == 1
    assert main([str(a), str(b), "--check", "--threshold", "0.7"]) == 0
    # Fewer orders carried is worse; so is a noisy machine noted.
    c = loadgen_result(tmp_path / "c.json", p99=50.0, cpu=600.0, achieved=1500.0, other=0.5)
    text, worse = report(a, c, 0.10)
    assert worse == 1 and "rate_achieved" in [ln for ln in text.splitlines()
                                               if ln.endswith("worse")][0]
    assert "not comparable" in text


def test_other_results_are_compared_figure_by_figure(tmp_path: Path) -> None:
    def write(name: str, ops: float, p99: float) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"benchmark": "core", "figures": {
            "orders": 1000, "depths": {"0": {"project": {"ops_per_s": ops, "p99_us": p99}}}}}))
        return path

    text, worse = report(write("a.json", 900_000, 2.0), write("b.json", 700_000, 2.1), 0.10)
    assert worse == 1  # fewer operations per second; the p99 is within 10%
    assert "depths.0.project.ops_per_s" in text and "orders " not in text


def test_the_command_line_on_result_files_of_the_repository() -> None:
    files = sorted((ROOT / "bench" / "results").glob("loadgen-seed-*.json"))[-2:]
    proc = subprocess.run([sys.executable, "-m", "bench", "compare", *map(str, files)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "B/A" in proc.stdout and "latency_ms.p99" in proc.stdout


def test_a_file_that_is_not_a_result_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "bench", "compare", str(bad), str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "not a result file" in proc.stderr
