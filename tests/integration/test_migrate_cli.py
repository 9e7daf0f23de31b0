"""`exchange-migrate` as a process: migrations, seed data, the instruments file and the
bootstrap admin key."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg

from exchange_common.keys import key_hash

MIGRATE = [sys.executable, "-c", "from exchange_common.db import migrate_main; migrate_main()"]


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *MIGRATE, *args, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_bootstrap_admin_key_from_env_or_file(database_url: str, tmp_path: Path) -> None:
    key = "bootstrap-admin-key-0123456789"
    code, out = await run("--database-url", database_url,
                          env={"EXCHANGE_BOOTSTRAP_ADMIN_KEY": key})
    assert code == 0, out
    assert "admin key exa_" in out and "nothing (up to date)" in out
    # Again from a file (the chart mounts it from a Secret): nothing changes.
    path = tmp_path / "admin-key"
    path.write_text(key + "\n")
    code, out = await run("--database-url", database_url, "--bootstrap-admin-key-file",
                          str(path))
    assert code == 0, out
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT name, prefix FROM admin_keys WHERE key_sha256 = $1",
                                key_hash(key))
    finally:
        await conn.close()
    assert [r["name"] for r in rows] == ["bootstrap"]
    assert rows[0]["prefix"] in out

    code, out = await run("--database-url", database_url,
                          env={"EXCHANGE_BOOTSTRAP_ADMIN_KEY": "short"})
    assert code == 2 and "EXCHANGE_BOOTSTRAP_ADMIN_KEY" in out
    assert "at least 16 characters" in out and "Traceback" not in out
    path.write_text("short\n")
    code, out = await run("--database-url", database_url, "--bootstrap-admin-key-file",
                          str(path))
    assert code == 2 and f"{path}: the bootstrap admin key must have at least 16" in out


SOL = {"symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tickSize": "0.001",
       "lotSize": "0.01", "minQuantity": "0.01", "maxQuantity": "100000",
       "minNotional": "5", "priceBandBps": 500, "makerFeeBps": -2, "takerFeeBps": 7}


async def _instruments(url: str) -> dict[str, dict]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT i.*, s.instrument_id IS NOT NULL AS has_state
                 FROM instruments i LEFT JOIN instrument_state s USING (instrument_id)""")
        assets = {r["symbol"] for r in await conn.fetch("SELECT symbol FROM assets")}
        audit = await conn.fetch("SELECT actor, action, target FROM admin_audit")
    finally:
        await conn.close()
    out = {r["symbol"]: dict(r) for r in rows}
    out["_assets"] = {"symbols": assets}
    out["_audit"] = {"rows": [tuple(r) for r in audit]}
    return out


async def test_instruments_file_creates_the_missing_ones_only(database_url: str,
                                                            tmp_path: Path) -> None:
    """The chart's `instruments`: SOL-USD is created with its rules (and its asset, and an
    audit row); BTC-USD, seeded before, keeps its own rules whatever the file says; ETH-USD
    named alone must exist, and does. A second run changes nothing."""
    path = tmp_path / "instruments.json"
    btc_other = {**SOL, "symbol": "BTC-USD", "base": "BTC", "tickSize": "5"}
    path.write_text(json.dumps([SOL, btc_other, {"symbol": "ETH-USD"}]))
    code, out = await run("--database-url", database_url, "--instruments", str(path))
    assert code == 0, out
    assert "instruments created: SOL-USD; existing, left as they are: BTC-USD, ETH-USD" in out
    got = await _instruments(database_url)
    sol = got["SOL-USD"]
    assert (sol["base_asset"], sol["quote_asset"]) == ("SOL", "USD")
    assert (sol["tick_size"], sol["lot_size"]) == (Decimal("0.001"), Decimal("0.01"))
    assert (sol["min_quantity"], sol["max_quantity"]) == (Decimal("0.01"), Decimal("100000"))
    assert sol["min_notional"] == Decimal("5") and sol["price_band_bps"] == 500
    assert (sol["maker_fee_bps"], sol["taker_fee_bps"]) == (-2, 7)
    assert sol["status"] == "trading" and sol["has_state"]
    assert sol["instrument_id"] == max(r["instrument_id"] for k, r in got.items()
                                       if not k.startswith("_"))
    assert "SOL" in got["_assets"]["symbols"]
    assert got["_audit"]["rows"] == [("exchange-migrate", "CreateInstrument",
                                      "instrument:SOL-USD")]
    assert got["BTC-USD"]["tick_size"] == Decimal("0.01")  # the seed's, not the file's

    code, out = await run("--database-url", database_url, "--instruments", str(path))
    assert code == 0, out
    assert "instruments created: none" in out
    assert await _instruments(database_url) == got


async def test_instruments_file_naming_a_missing_instrument_creates_nothing(
        database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "instruments.json"
    path.write_text(json.dumps([SOL, {"symbol": "XRP-USD"}]))
    before = await _instruments(database_url)
    code, out = await run("--database-url", database_url, "--instruments", str(path))
    assert code == 1, out
    assert "XRP-USD: named without rules, and no such instrument exists" in out
    assert "Traceback" not in out
    assert await _instruments(database_url) == before


async def test_a_bad_instruments_file_is_refused_before_anything(database_url: str,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "instruments.json"
    path.write_text(json.dumps([{**SOL, "tickSize": 0.001}]))
    code, out = await run("--database-url", database_url, "--instruments", str(path))
    assert code == 2, out
    assert (f"--instruments {path}: instruments[0] (SOL-USD): tickSize must be a decimal "
            "string") in out
    assert "Traceback" not in out
    conn = await asyncpg.connect(database_url)
    try:
        assert not await conn.fetchval("SELECT count(*) FROM instruments WHERE symbol = "
                                       "'SOL-USD'")
    finally:
        await conn.close()
    code, out = await run("--database-url", database_url, "--instruments",
                          str(tmp_path / "absent.json"))
    assert code == 2 and "absent.json: [Errno 2]" in out
