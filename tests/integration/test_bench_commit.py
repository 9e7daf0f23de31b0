"""Smoke run of the group-commit benchmark (bench/commit.py) at a tiny size, so it cannot rot."""

from __future__ import annotations

import pytest

from bench import commit

pytestmark = pytest.mark.integration


async def test_commit_benchmark_produces_its_figures(pg_admin_url: str) -> None:
    rows = await commit.run(pg_admin_url, [1, 50], orders=200, seed=3)
    assert [r["batch"] for r in rows] == [1, 50]
    assert [r["commits"] for r in rows] == [200, 4]
    for r in rows:
        assert r["orders"] == 200 and r["events"] >= 200
        assert r["wall_ms_per_commit"] > 0 and r["orders_per_second"] > 0
        # CPU clocks tick every 10 ms: a tiny run may read 0
        assert r["matching_cpu_us_per_order"] >= 0
        assert r["postgres_cpu_us_per_order"] >= 0
