"""``exchange admin ...`` against the running stack: an operator onboards a trader,
halts a market, revokes the key, and reads it all back in the audit log."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from e2e_helpers import run

from exchange_dev.stack import Stack


async def admin(stack: Stack, *args: str) -> Any:
    proc = await run(stack, "admin", *args, "--json", "--admin-key", stack.admin_key)
    assert proc.returncode == 0, f"exchange admin {' '.join(args)}: {proc.stderr}"
    return json.loads(proc.stdout)


async def order(stack: Stack, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await run(stack, "order", "create", "BTC-USD", *args, key=key)


async def test_an_operator_onboards_halts_and_revokes(stack: Stack) -> None:
    created = await admin(stack, "account", "create", "gina")
    assert created["account"]["name"] == "gina" and created["account"]["tier"] == "default"
    made = await admin(stack, "key", "create", "gina", "--label", "laptop")
    secret, prefix = made["secret"], made["key"]["prefix"]
    await admin(stack, "deposit", "gina", "USD", "1000", "--key", "gina-funding")

    placed = await order(stack, secret, "buy", "0.01", "--price", "60000")
    assert placed.returncode == 0, placed.stderr
    tiers = await admin(stack, "tier", "set", "desk", "--orders-per-second", "10",
                        "--orders-burst", "20")
    assert tiers["tier"]["orders_per_second"] == 10 and tiers["tier"]["orders_burst"] == 20
    assert (await admin(stack, "account", "tier", "gina", "desk"))["account"]["tier"] == "desk"

    halted = await admin(stack, "instrument", "status", "BTC-USD", "halted")
    assert halted["instrument"]["status"] == "INSTRUMENT_STATUS_HALTED"
    refused = await order(stack, secret, "buy", "0.01", "--price", "60000")
    assert refused.returncode == 1
    assert "FAILED_PRECONDITION (INSTRUMENT_HALTED)" in refused.stderr
    await admin(stack, "instrument", "status", "BTC-USD", "trading")

    listed = await admin(stack, "key", "list", "--account", "gina")
    assert [k["prefix"] for k in listed["keys"]] == [prefix]
    await admin(stack, "key", "revoke", prefix)
    refused = await order(stack, secret, "buy", "0.01", "--price", "60000")
    assert refused.returncode == 1
    assert "UNAUTHENTICATED (API_KEY_INVALID)" in refused.stderr

    audit = await admin(stack, "audit", "--limit", "10")
    # Reads are audited too (tier set reads the tier first, to keep what is not given).
    assert [e["action"] for e in audit["entries"]] == [
        "RevokeApiKey", "ListApiKeys", "SetInstrumentStatus", "SetInstrumentStatus",
        "SetAccountTier", "SetRateTier", "ListRateTiers", "Deposit", "CreateApiKey",
        "CreateAccount"]
    again = await admin(stack, "audit", "--limit", "1")
    assert [e["action"] for e in again["entries"]] == ["ListAuditEntries"]
    # People get tables; the secret is printed once, when made.
    proc = await run(stack, "admin", "admin-key", "create", "ops-hal", "--admin-key",
                     stack.admin_key)
    assert proc.returncode == 0 and "secret (shown once" in proc.stdout and "exa_" in proc.stdout
    proc = await run(stack, "admin", "account", "list")
    assert proc.returncode == 1 and "no admin key" in proc.stderr
