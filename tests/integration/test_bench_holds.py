"""A short run of the money benchmark (bench/holds.py) on the test server: it still runs
the real hold and commit statements, and what they did is what the design says (holds
refused exactly when the funds are short, settlement moves money without making or
losing any)."""

from __future__ import annotations

import pytest

from bench import holds

pytestmark = pytest.mark.integration


async def test_holds_benchmark_keeps_the_money_right(pg_admin_url: str) -> None:
    # Few accounts, a fifth of them poor, a maker rebate: refusals, fills of every kind
    # (price improvement, partial fills, expiries) and negative fees all happen.
    args = holds.parser().parse_args(
        ["--runs", "plain,money,pods,hot,unsorted", "--seconds", "0.5", "--accounts", "20",
         "--hot", "4", "--poor-every", "5", "--warmup", "0.2", "--maker-bps", "-2",
         "--taker-bps", "10"])
    rows = {r["run"]: r for r in await holds.run(pg_admin_url, args)}
    assert rows["plain"]["refused"] == 0
    for name in ("money", "pods", "hot"):
        r = rows[name]
        assert r["orders"] > 0 and r["trades"] > 0, r
        assert r["granted"] > 0 and r["refused"] > 0, r  # the poor accounts run short
        assert r["deadlocks"] == 0 and r["check_violations"] == 0, r
        # per asset, the balances (fee account included) sum to the deposits; nothing
        # negative; each account's held is what its open orders still need
        assert r["sums_equal_deposits"] is True, r
        assert r["negative_balances"] == 0 and r["held_mismatches"] == 0, r
        assert r["pending_holds"] == 0, r
    # the statements with their locks in random order run (a deadlock, or a hold refused
    # by the CHECK, may or may not come in so short a run; when none did, the money is
    # right all the same)
    r = rows["unsorted"]
    assert r["orders"] > 0, r
    if not r["deadlocks"] and not r["check_violations"]:
        assert r["sums_equal_deposits"] is True and r["negative_balances"] == 0, r
        assert r["held_mismatches"] == 0 and r["pending_holds"] == 0, r
    # one pod: every grant and refusal (and what each order held), and every balance, as
    # the model says
    assert rows["money"]["grant_mismatches"] == 0, rows["money"]
    assert rows["money"]["balance_mismatches"] == 0, rows["money"]
