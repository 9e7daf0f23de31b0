"""``exchange balances``, ``exchange ledger`` and the money commands of ``exchange
admin`` against the running stack: an operator funds a trader, who trades and reads
their balances and ledger; check-balances holds, and fails once a balance is corrupted."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from e2e_helpers import run, run_json

from exchange_dev.stack import Stack


async def admin(stack: Stack, *args: str) -> Any:
    proc = await run(stack, "admin", *args, "--json", "--admin-key", stack.admin_key)
    assert proc.returncode == 0, f"exchange admin {' '.join(args)}: {proc.stderr}"
    return json.loads(proc.stdout)


async def test_an_operator_funds_a_trader_who_reads_balances_and_ledger(
        module_stack: Stack) -> None:
    stack = module_stack
    await admin(stack, "account", "create", "hana")
    secret = (await admin(stack, "key", "create", "hana"))["secret"]
    made = await admin(stack, "deposit", "hana", "USD", "1000", "--key", "hana-1",
                       "--reference", "wire 7")
    assert made["duplicate"] is False and made["balance"]["available"] == "1000.000000"
    again = await admin(stack, "deposit", "hana", "USD", "1000", "--key", "hana-1",
                        "--reference", "wire 7")
    assert again["duplicate"] is True and again["entry_id"] == made["entry_id"]
    assert (await admin(stack, "withdraw", "hana", "USD", "100", "--key", "hana-2")
            )["balance"]["available"] == "900.000000"
    assert (await admin(stack, "adjust", "hana", "USD", "-0.5", "--key", "hana-3")
            )["balance"]["available"] == "899.500000"
    short = await run(stack, "admin", "withdraw", "hana", "USD", "5000", "--key", "hana-4",
                      "--admin-key", stack.admin_key)
    assert short.returncode == 1
    assert "FAILED_PRECONDITION (INSUFFICIENT_FUNDS)" in short.stderr, short.stderr
    reused = await run(stack, "admin", "deposit", "hana", "USD", "1", "--key", "hana-1",
                       "--admin-key", stack.admin_key)
    assert reused.returncode == 1 and "ALREADY_EXISTS" in reused.stderr, reused.stderr

    placed = await run(stack, "order", "create", "BTC-USD", "buy", "0.01", "--price", "60000",
                       key=secret)
    assert placed.returncode == 0, placed.stderr
    balances = await run_json(stack, "balances", key=secret)
    # 0.01 BTC at 60,000 with a 10 bps fee reserve: 600.600000 held (and the BTC row the
    # order would receive into)
    assert balances["balances"] == [
        {"asset": "BTC", "available": "0.00000000", "held": "0.00000000",
         "total": "0.00000000"},
        {"asset": "USD", "available": "298.900000", "held": "600.600000",
         "total": "899.500000"}]
    assert [b["asset"] for b in (await run_json(stack, "balances", "BTC", key=secret)
                                 )["balances"]] == ["BTC"]
    ledger = await run_json(stack, "ledger", "--asset", "USD", "--limit", "3", key=secret)
    assert [(e["kind"], e["available"]) for e in ledger["entries"]] == [
        ("LEDGER_ENTRY_KIND_HOLD", "-600.600000"),
        ("LEDGER_ENTRY_KIND_ADJUSTMENT", "-0.500000"),
        ("LEDGER_ENTRY_KIND_WITHDRAWAL", "-100.000000")]
    table = await run(stack, "ledger", key=secret)
    assert table.returncode == 0 and "deposit" in table.stdout and "wire 7" in table.stdout
    table = await run(stack, "balances", key=secret)
    assert "600.600000" in table.stdout and "Available" in table.stdout

    shown = await admin(stack, "balances", "hana")
    assert shown["balances"][1]["held"] == "600.600000"
    assets = await admin(stack, "assets")
    assert {"symbol": "USD", "decimals": 6} in assets["assets"]
    await admin(stack, "fees", "hana", "BTC-USD", "--maker-bps", "-1", "--taker-bps", "3")
    await admin(stack, "fees", "hana", "BTC-USD", "--clear")
    bad = await run(stack, "admin", "fees", "hana", "BTC-USD", "--maker-bps", "-5",
                    "--taker-bps", "3", "--admin-key", stack.admin_key)
    assert bad.returncode == 1 and "INVALID_ARGUMENT (FEE_INVALID)" in bad.stderr, bad.stderr
    updated = await admin(stack, "instrument", "update", "BTC-USD", "--maker-fee-bps", "8",
                          "--taker-fee-bps", "12")
    assert (updated["instrument"]["maker_fee_bps"], updated["instrument"]["taker_fee_bps"]) \
        == (8, 12)
    await admin(stack, "instrument", "update", "BTC-USD", "--maker-fee-bps", "10",
                "--taker-fee-bps", "10")
    audit = await admin(stack, "audit", "--target", "balance:hana", "--limit", "10")
    assert [e["action"] for e in audit["entries"]] == ["Adjust", "Withdraw", "Deposit",
                                                       "Deposit"]


async def test_check_balances_exits_non_zero_when_a_check_fails(module_stack: Stack) -> None:
    stack = module_stack
    report = await admin(stack, "check-balances")
    assert report["ok"] is True and report["problems"] == []
    assert any(t["asset"] == "USD" for t in report["totals"])
    table = await run(stack, "admin", "check-balances", "--admin-key", stack.admin_key)
    assert table.returncode == 0 and "ok: every balance check holds" in table.stdout
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute("UPDATE balances SET held = held + 1 WHERE account_id = "
                           "(SELECT account_id FROM accounts WHERE name = 'alice') "
                           "AND asset_id = (SELECT asset_id FROM assets WHERE symbol = 'BTC')")
        failed = await run(stack, "admin", "check-balances", "--admin-key", stack.admin_key)
        assert failed.returncode == 1
        assert "problem: alice BTC: held" in failed.stdout, failed.stdout
        assert "balance check(s) failed" in failed.stderr
    finally:
        await conn.execute("UPDATE balances SET held = held - 1 WHERE account_id = "
                           "(SELECT account_id FROM accounts WHERE name = 'alice') "
                           "AND asset_id = (SELECT asset_id FROM assets WHERE symbol = 'BTC')")
        await conn.close()
    assert (await admin(stack, "check-balances"))["ok"] is True
