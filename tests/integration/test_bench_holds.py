"""A short run of the money benchmark (bench/holds.py) on the test server: its statements
still work, and what they did is what the design says (holds refused exactly when the
funds are short, settlement moves money without making or losing any)."""

from __future__ import annotations

import pytest

from bench import holds

pytestmark = pytest.mark.integration


async def test_holds_benchmark_keeps_the_money_right(pg_admin_url: str) -> None:
    # Few accounts, a fifth of them poor, a maker rebate: refusals, fills of every kind
    # (price improvement, partial fills, expiries) and negative fees all happen.
    args = holds.parser().parse_args(
        ["--runs", "plain,money,ledger,hot", "--seconds", "0.5", "--accounts", "20",
         "--hot", "4", "--poor-every", "5", "--warmup", "0.2", "--maker-bps", "-2",
         "--taker-bps", "10"])
    rows = {r["run"]: r for r in await holds.run(pg_admin_url, args)}
    assert rows["plain"]["refused"] == 0
    for name in ("money", "ledger", "hot"):
        r = rows[name]
        assert r["orders"] > 0 and r["trades"] > 0, r
        assert r["granted"] > 0 and r["refused"] > 0, r  # the poor accounts run short
        assert r["deadlocks"] == 0, r
        # per asset, the balances (fee account included) sum to the deposits; nothing
        # negative; each account's held is what its open orders still need
        assert r["sums_equal_deposits"] is True, r
        assert r["negative_balances"] == 0 and r["held_mismatches"] == 0, r
        assert r["pending_holds"] == 0, r
    for name in ("money", "ledger"):
        # one pod: every grant and refusal, and every balance, as the model says
        assert rows[name]["grant_mismatches"] == 0, rows[name]
        assert rows[name]["balance_mismatches"] == 0, rows[name]
