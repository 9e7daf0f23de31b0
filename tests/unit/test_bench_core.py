"""Smoke run of the matching-core benchmark (bench/core.py) at tiny sizes, so it cannot rot;
the baseline is the copy in bench/, so it runs in any clone."""

from __future__ import annotations

import pytest

from bench import core


@pytest.mark.parametrize("extra", [[], ["--prefill", "inside", "--cancels", "0.2"]],
                         ids=["seed-mix", "inside-with-cancels"])
def test_core_benchmark_produces_its_figures(extra: list[str], capsys) -> None:
    figures = core.main(["--orders", "1500", "--depths", "0,300", "--repeat", "1",
                         "--batch", "50", "--no-write", *extra])
    for depth in ("0", "300"):
        by = figures["depths"][depth]
        for name in ("project", "baseline"):
            f = by[name]
            assert f["ops_per_s"] > 0 and f["peak_mb"] > 0
            assert 0 < f["p50_us"] <= f["p99_us"] <= f["p99.9_us"]
            assert f["trades"][0] > 0  # the stream trades
        # same stream, same matching: the cross-check passed and both made these trades
        assert by["project"]["trades"] == by["baseline"]["trades"]
        assert by["project"]["drain_us_per_command"] > 0
        assert by["project_over_baseline"] > 0
    assert figures["depths"]["300"]["project"]["resting_before"] == 600
    assert figures["depths"]["300"]["project"]["bytes_per_resting_order"] > 0
    assert figures["floor"]["ops_per_s"] > 0
    assert figures["engine_build"] == core.engine_build()
    assert figures["project_deep_over_empty"] > 0
    assert set(figures["targets"]) == {"project_ge_1_5x_baseline", "deep_ge_0_8x_empty",
                                       "memory_per_order_below_baseline"}
    printed = capsys.readouterr().out
    assert "python -m bench.core --orders 1500" in printed and "project/baseline" in printed


def test_streams_are_seeded_and_shaped_as_the_seed_mix() -> None:
    stream = core.make_stream(20_000, seed=5, cancels=0.0)
    assert stream == core.make_stream(20_000, seed=5, cancels=0.0)
    limits = [c for c in stream if c[0] == core.LIMIT]
    assert 0.67 < len(limits) / len(stream) < 0.73
    assert all(core.MID - core.SPAN <= c[2] <= core.MID + core.SPAN for c in limits)
    assert all(core.LOTS[0] <= c[3] <= core.LOTS[1] for c in stream)
    with_cancels = core.make_stream(20_000, seed=5, cancels=0.1)
    cancels = [c for c in with_cancels if c[0] == core.CANCEL]
    assert 0.08 < len(cancels) / len(with_cancels) < 0.12
    assert all(with_cancels[c[5]][0] == core.LIMIT and with_cancels[c[5]][4] == c[4]
               for c in cancels)
    for placement in ("outside", "inside"):
        prefill = core.make_prefill(100, 1, placement)
        assert max(p for s, p, _, _ in prefill if s == 0) < core.MID
        assert min(p for s, p, _, _ in prefill if s == 1) > core.MID
