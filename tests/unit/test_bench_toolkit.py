"""bench's shared pieces: the histogram, the CPU accounting and the result writer."""

from __future__ import annotations

import json
import os

import psutil

from bench.cpu import CpuProbe, Group, machine_times, own_seconds
from bench.histogram import Histogram
from bench.results import public, write_result


def test_histogram_percentiles_merge_and_clamp():
    a, b = Histogram(highest=1_000_000), Histogram(highest=1_000_000)
    for us in range(1, 1001):
        (a if us % 2 else b).record(us)
    merged = Histogram.merged([a.encode(), b.encode()], highest=1_000_000)
    assert merged.count == 1000
    got = merged.percentiles((("p50", 50.0), ("p99", 99.0)), divisor=1000)
    assert got["p50"] is not None and abs(got["p50"] - 0.5) < 0.01
    assert got["p99"] is not None and abs(got["p99"] - 0.99) < 0.01
    assert got["max"] is not None and abs(got["max"] - 1.0) < 0.01
    merged.record(0)  # clamped into [1, highest]
    merged.record(10**12)
    assert merged.count == 1002 and merged.max <= 1_000_000 * 1.001
    assert Histogram().percentiles((("p50", 50.0),)) == {"p50": None, "max": None}


def test_cpu_busy_excludes_steal_and_other_is_the_rest():
    t = psutil.cpu_times()
    m = machine_times()
    assert m.busy <= sum(t) - t.idle + 1.0
    assert m.steal == getattr(t, "steal", 0.0) or m.steal >= 0
    probe = CpuProbe([Group("loadgen", [os.getpid()], server=False)])
    a = probe.sample()
    start = own_seconds()
    while own_seconds() - start < 0.05:
        pass
    b = probe.sample()
    usage = probe.usage(a, b)
    assert usage["loadgen"] >= 0.04
    assert usage["other"] >= 0.0
    assert probe.busy(a, b) >= 0.0 and probe.steal(a, b) >= 0.0
    assert probe.server_names() == []


def test_write_result_leaves_out_private_keys_and_records_the_plot(tmp_path):
    def plot(path):
        path.write_bytes(b"png")
        return path

    path = write_result("x", {"a": 1, "_hist": object(), "runs": [{"b": 2, "_c": 3}]},
                        "python -m bench.x", tmp_path, plot=plot)
    data = json.loads(path.read_text())
    assert data["figures"] == {"a": 1, "runs": [{"b": 2}], "plot": str(path.with_suffix(".png"))}
    assert data["command"] == "python -m bench.x" and data["benchmark"] == "x"
    assert public({"_x": 1, "y": {"_z": 2, "w": 3}}) == {"y": {"w": 3}}
