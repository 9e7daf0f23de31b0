"""PostgreSQL access shared by the services: pools, migrations, seed data."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
from collections.abc import Sequence
from decimal import Decimal
from importlib.resources import files

import asyncpg

from exchange.common.v1 import common_pb2 as cpb
from exchange_common import instrument_file
from exchange_common.config import MigrateSettings, load
from exchange_common.instrument_file import InstrumentFile, InstrumentFileError, NewInstrument
from exchange_common.instruments import FEE_ACCOUNT
from exchange_common.keys import ADMIN_KEY_KIND, check_given_admin_key, key_hash, prefix_of

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x45584D49  # advisory lock key: one migrator at a time
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


# For the pools of the order service and the matching pods, whose statements are all
# meant to be index lookups and index range scans. asyncpg prepares every statement and
# PostgreSQL caches a generic plan after a few executions: planned while a table was
# still small (a fresh database), such a plan hash-joins a scan of all of `orders` and
# keeps doing so as the table grows, until autovacuum's next ANALYZE (a minute or more)
# invalidates it. Seen in the load generator: the client_order_id look-up cost
# PostgreSQL over a millisecond per query after 40,000 orders (auto_explain). With
# sequential scans, hash joins and merge joins off, joins are nested loops over index
# lookups whatever the statistics say, and a scan without an index still works.
# And always the generic plan (plan_cache_mode): the statements that carry money (the order
# path's hold, the matching commit) are a dozen CTEs each, and planning them again for
# every execution, as PostgreSQL does while it finds a custom plan cheaper, cost about
# 0.3 ms of PostgreSQL's CPU per hold statement (0.79 against 1.06 ms a statement,
# measured on 100,000 orders); with the settings above the generic plan is the same plan.
OLTP_SETTINGS = {"enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off",
                 "plan_cache_mode": "force_generic_plan"}

# The resting orders (on the book), by name: NEW and PARTIALLY_FILLED (the partial index
# orders_open of migration 0001 is on this predicate).
RESTING_ORDERS_SQL = (f"state IN ({cpb.ORDER_STATE_NEW}, "
                      f"{cpb.ORDER_STATE_PARTIALLY_FILLED})")
# The open orders: the resting ones and the stops waiting for their trigger (UNTRIGGERED:
# off the book, cancellable, holding their funds). The partial index orders_account_open
# of migration 0008 is on this predicate (an account's open orders: CancelAllOrders).
OPEN_ORDERS_SQL = (f"state IN ({cpb.ORDER_STATE_NEW}, {cpb.ORDER_STATE_PARTIALLY_FILLED}, "
                   f"{cpb.ORDER_STATE_UNTRIGGERED})")


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10, **kwargs) -> asyncpg.Pool:
    # Fail fast when the database is away: callers turn that into UNAVAILABLE.
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("command_timeout", 10)
    # Nothing here sets session state (SET, LISTEN, advisory locks: the matching
    # pod's locks live on a connection of their own), so releasing a connection
    # needs no reset query: one round trip fewer per query. asyncpg still rolls
    # back a transaction left open.
    kwargs.setdefault("reset", _no_reset)
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, **kwargs)
    assert pool is not None
    return pool


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped, in order."""
    out = []
    for entry in files("exchange_common.migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text()))
    out.sort()
    return out


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied; return their names."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(name)
            log.info("applied migration %s", name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


# (id, symbol, base, quote, tick, lot, min qty, max qty, min notional)
DEFAULT_INSTRUMENTS = [
    (1, "BTC-USD", "BTC", "USD", "0.01", "0.0001", "0.0001", "1000", "1"),
    (2, "ETH-USD", "ETH", "USD", "0.01", "0.001", "0.001", "10000", "1"),
]


async def seed_instruments(conn: asyncpg.Connection,
                           rows: Sequence[tuple[int, str, str, str, str, str, str, str, str]]
                           = DEFAULT_INSTRUMENTS) -> None:
    """The instruments of ``rows`` (id, symbol, base, quote, tick, lot, min and max quantity,
    min notional; default: the seeded BTC-USD and ETH-USD) where their id is free, their
    state rows and assets."""
    for row in rows:
        iid, symbol, base, quote, tick, lot, min_q, max_q, min_n = row
        await conn.execute(
            """INSERT INTO instruments (instrument_id, symbol, base_asset, quote_asset, tick_size,
                   lot_size, min_quantity, max_quantity, min_notional)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (instrument_id) DO NOTHING""",
            iid, symbol, base, quote, Decimal(tick), Decimal(lot), Decimal(min_q), Decimal(max_q),
            Decimal(min_n),
        )
    await conn.execute(
        """INSERT INTO instrument_state (instrument_id)
           SELECT instrument_id FROM instruments ON CONFLICT DO NOTHING"""
    )
    await ensure_assets(conn)


# Decimal places of the assets named by instruments, when an instrument brings a new one:
# what its instruments need (a lot a whole number of base units, a tick times a lot a
# whole number of quote units), at least 8 for a base asset and 2 for a quote (BTC, ETH
# 8, USD 6, as migration 0004 made them).
ENSURE_ASSETS_SQL = """
INSERT INTO assets (asset_id, symbol, decimals)
SELECT (SELECT coalesce(max(asset_id), 0) FROM assets) + row_number() OVER (ORDER BY symbol),
       symbol, decimals FROM (
    SELECT symbol, max(need) AS decimals FROM (
        SELECT base_asset AS symbol, greatest(8, scale(lot_size)) AS need FROM instruments
        UNION ALL
        SELECT quote_asset, greatest(CASE quote_asset WHEN 'USD' THEN 6 ELSE 2 END,
                                     scale(tick_size) + scale(lot_size))
          FROM instruments
    ) needs
     WHERE symbol NOT IN (SELECT symbol FROM assets)
     GROUP BY symbol
) a
ON CONFLICT (symbol) DO NOTHING
"""


async def ensure_assets(conn: asyncpg.Connection) -> None:
    """Make the assets the instruments name that ``assets`` lacks, and the fee
    account's balance row of every asset (settlement credits it)."""
    await conn.execute(ENSURE_ASSETS_SQL)
    await conn.execute(
        """INSERT INTO balances (account_id, asset_id)
           SELECT a.account_id, s.asset_id FROM accounts a CROSS JOIN assets s
            WHERE a.name = $1 ORDER BY 1, 2
           ON CONFLICT DO NOTHING""", FEE_ACCOUNT)


# An instrument of an instruments file (exchange_common/instrument_file.py): its id, then
# the fields of NewInstrument.
_NEW_INSTRUMENT_SQL = (
    f"INSERT INTO instruments (instrument_id, {', '.join(NewInstrument._fields)}) VALUES "
    f"($1, {', '.join(f'${i + 2}' for i in range(len(NewInstrument._fields)))})")
# instruments_instrument_id_check (migration 0001): ids 1-524287.
MAX_INSTRUMENT_ID = 524_287


async def create_instruments(conn: asyncpg.Connection, wanted: InstrumentFile) -> list[str]:
    """Create the instruments of ``wanted.new`` whose symbol does not exist, in one
    transaction; leave the others as they are. InstrumentFileError (and nothing created)
    when a symbol of ``wanted.existing`` does not exist. Returns the symbols created."""
    created: list[str] = []
    async with conn.transaction():
        # One creator at a time (this, the admin API): the next free id is read and used
        # atomically.
        await conn.execute("LOCK TABLE instruments IN SHARE ROW EXCLUSIVE MODE")
        have = {r["symbol"] for r in await conn.fetch("SELECT symbol FROM instruments")}
        absent = [s for s in wanted.existing if s not in have]
        if absent:
            raise InstrumentFileError(
                f"{', '.join(absent)}: named without rules, and no such instrument exists "
                "(give its rules in the file, or create it with the admin API first)")
        for spec in wanted.new:
            if spec.symbol in have:
                continue
            instrument_id = await conn.fetchval(
                "SELECT coalesce(max(instrument_id), 0) + 1 FROM instruments")
            if instrument_id > MAX_INSTRUMENT_ID:
                raise InstrumentFileError("no instrument id left")
            await conn.execute(_NEW_INSTRUMENT_SQL, instrument_id, *spec)
            await conn.execute("INSERT INTO instrument_state (instrument_id) VALUES ($1) "
                               "ON CONFLICT DO NOTHING", instrument_id)
            after = {k: str(v) for k, v in spec._asdict().items()}
            await conn.execute(
                """INSERT INTO admin_audit (actor, action, target, after)
                   VALUES ($1, 'CreateInstrument', $2, $3::jsonb)""",
                "exchange-migrate", f"instrument:{spec.symbol}",
                json.dumps({"instrument_id": instrument_id, **after}, sort_keys=True))
            created.append(spec.symbol)
        if created:
            await ensure_assets(conn)  # their assets, if new
    return created


async def ensure_admin_key(conn: asyncpg.Connection, key: str, name: str = "bootstrap") -> str:
    """Make ``key`` an admin key named ``name`` unless it is one already (a revoked one
    stays revoked). Returns its prefix."""
    prefix = prefix_of(key, ADMIN_KEY_KIND)
    await conn.execute(
        """INSERT INTO admin_keys (key_sha256, prefix, name) VALUES ($1, $2, $3)
           ON CONFLICT (key_sha256) DO NOTHING""",
        key_hash(key), prefix, name)
    return prefix


async def _migrate_cli(url: str, admin_key: str | None,
                       instruments: InstrumentFile | None) -> None:
    conn = await asyncpg.connect(url)
    try:
        names = await migrate(conn)
        await seed_instruments(conn)
        if instruments is not None:
            try:
                created = await create_instruments(conn, instruments)
            except InstrumentFileError as err:
                raise SystemExit(f"exchange-migrate: --instruments: {err}") from None
            kept = [s.symbol for s in instruments.new if s.symbol not in created]
            print("instruments created: " + (", ".join(created) or "none")
                  + (f"; existing, left as they are: {', '.join(kept + instruments.existing)}"
                     if kept or instruments.existing else ""))
        if admin_key:
            prefix = await ensure_admin_key(conn, admin_key)
            print(f"admin key {prefix} (bootstrap) is in place")
    finally:
        await conn.close()
    print("applied: " + (", ".join(names) if names else "nothing (up to date)"))


def migrate_main() -> None:
    """`exchange-migrate`: apply migrations, seed the default instruments, create the
    instruments of --instruments that are missing (the chart's `instruments`) and, when
    given, make the first admin key (EXCHANGE_BOOTSTRAP_ADMIN_KEY, or
    --bootstrap-admin-key-file: the chart's migrate Job takes it from a Secret)."""
    parser = argparse.ArgumentParser(description=migrate_main.__doc__)
    parser.add_argument("--database-url", help="PostgreSQL URL (env EXCHANGE_DATABASE_URL)")
    parser.add_argument("--bootstrap-admin-key-file", metavar="PATH",
                        help="a file holding an admin key to create (if not there yet)")
    parser.add_argument("--instruments", metavar="PATH",
                        help="a JSON file of instruments to create when missing (existing "
                             "ones are never changed; see exchange_common/instrument_file.py)")
    args = parser.parse_args()
    settings = load(MigrateSettings)
    url = args.database_url or settings.database_url
    if not url:
        parser.error("set EXCHANGE_DATABASE_URL or pass --database-url")
    admin_key = settings.bootstrap_admin_key
    if args.bootstrap_admin_key_file:
        try:
            with open(args.bootstrap_admin_key_file) as f:
                admin_key = check_given_admin_key(f.read().strip())
        except (OSError, ValueError) as err:
            parser.error(f"{args.bootstrap_admin_key_file}: {err}")
    instruments = None
    if args.instruments:
        try:
            with open(args.instruments) as f:
                instruments = instrument_file.parse(f.read())
        except (OSError, InstrumentFileError) as err:
            parser.error(f"--instruments {args.instruments}: {err}")
    asyncio.run(_migrate_cli(url, admin_key or None, instruments))
