"""The accounts the dev stack, the tests and the benchmarks make: the rate tier ``dev``, and
accounts with their API keys (in production, the admin API makes both)."""

from __future__ import annotations

import asyncpg

from exchange_common.keys import key_hash, prefix_of

# The rate tier of the accounts the dev stack makes (make run, the tests, the benchmarks):
# limits far above what one machine can send, so the old load test runs as it did, while
# the limiter still counts every call.
DEV_TIER = "dev"
DEV_TIER_LIMITS = {"orders_per_second": 1_000_000, "orders_burst": 1_000_000,
                   "cancels_per_second": 1_000_000, "cancels_burst": 1_000_000,
                   "queries_per_second": 1_000_000, "queries_burst": 1_000_000,
                   "max_open_orders": 10_000_000}


async def ensure_tier(conn: asyncpg.Connection, name: str, **limits: int) -> None:
    """Create or update rate tier ``name`` (columns of ``rate_tiers`` as keywords)."""
    columns = sorted(limits)
    await conn.execute(
        f"""INSERT INTO rate_tiers (name{"".join(", " + c for c in columns)})
            VALUES ($1{"".join(f", ${i + 2}" for i in range(len(columns)))})
            ON CONFLICT (name) DO UPDATE SET updated_at = now()
            {"".join(f", {c} = EXCLUDED.{c}" for c in columns)}""",
        name, *(limits[c] for c in columns))


# What the dev stack deposits for each of its accounts (the demo accounts, the tests',
# the load generator's), in whole units of each asset: so much that the old load test
# and the benchmarks never run out, and little enough that no balance outgrows 64 bits
# (at most DEV_FUNDING_MAX_UNITS smallest units of an asset per account).
DEV_FUNDING_BASE = 10**8
DEV_FUNDING_QUOTE = 10**12
DEV_FUNDING_MAX_UNITS = 10**18


async def fund_account(conn: asyncpg.Connection, account_id: int) -> None:
    """Deposit the dev funding of every asset into the account, once (a deposit per
    asset with the idempotency key ``dev-funding:<account>:<asset>``; run again, it
    moves nothing)."""
    async with conn.transaction():
        await conn.execute(
            """WITH amounts AS (
                   SELECT s.asset_id,
                          least($3::numeric, (CASE WHEN EXISTS (
                                    SELECT 1 FROM instruments i WHERE i.quote_asset = s.symbol)
                                THEN $2::numeric ELSE $1::numeric END)
                                * 10::numeric ^ s.decimals)::bigint AS amount
                     FROM assets s
               ), entries AS (
                   INSERT INTO ledger (account_id, asset_id, kind, available,
                                       idempotency_key, reference, actor)
                   SELECT $4::bigint, asset_id, 'deposit', amount,
                          'dev-funding:' || $4::bigint || ':' || asset_id, 'dev funding', 'dev'
                     FROM amounts ORDER BY asset_id
                   ON CONFLICT (idempotency_key) DO NOTHING
                   RETURNING asset_id, available
               )
               INSERT INTO balances AS b (account_id, asset_id, available)
               SELECT $4::bigint, asset_id, available FROM entries ORDER BY asset_id
               ON CONFLICT (account_id, asset_id)
                   DO UPDATE SET available = b.available + EXCLUDED.available""",
            DEV_FUNDING_BASE, DEV_FUNDING_QUOTE, DEV_FUNDING_MAX_UNITS, account_id)


async def ensure_account(conn: asyncpg.Connection, name: str, api_key: str | None = None,
                         tier: str | None = None) -> int:
    """Create the account if needed (in ``tier`` if given, which must exist; an existing
    account moves to it); attach ``api_key`` to it if given. An account of the dev tier
    gets the dev funding (``fund_account``). Returns its id."""
    account_id = await conn.fetchval(
        """INSERT INTO accounts (name, tier) VALUES ($1, coalesce($2, 'default'))
           ON CONFLICT (name) DO UPDATE SET tier = coalesce($2, accounts.tier)
           RETURNING account_id""",
        name, tier,
    )
    if api_key:
        await conn.execute(
            """INSERT INTO api_keys (key_sha256, account_id, label, prefix)
               VALUES ($1, $2, 'dev', $3)
               ON CONFLICT (key_sha256) DO NOTHING""",
            key_hash(api_key), account_id, prefix_of(api_key),
        )
    if tier == DEV_TIER:
        await fund_account(conn, account_id)
    return account_id


def parse_dev_keys(text: str) -> dict[str, str]:
    """``alice=KEY1,bob=KEY2`` -> {"alice": "KEY1", "bob": "KEY2"}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, key = part.partition("=")
        if not sep or not name or not key:
            raise ValueError(f"expected name=key, got {part!r}")
        out[name.strip()] = key.strip()
    return out

