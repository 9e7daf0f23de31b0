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


async def ensure_account(conn: asyncpg.Connection, name: str, api_key: str | None = None,
                         tier: str | None = None) -> int:
    """Create the account if needed (in ``tier`` if given, which must exist; an existing
    account moves to it); attach ``api_key`` to it if given. Returns its id."""
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

