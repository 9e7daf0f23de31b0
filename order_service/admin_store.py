"""The admin API's reads and writes in PostgreSQL.

Every call is audited; every write runs in one transaction with its audit row (``admin_audit``: who,
what, on which target, the row before and after as JSON), so a change is never
made without its audit entry, nor audited without being made. The triggers of
migration 0003 send the change notification in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from exchange_common import db
from exchange_common.changes import CHANNEL as CHANGES_CHANNEL
from exchange_common.changes import PODS_TABLE, ChangeListener
from exchange_common.config import spec_includes
from exchange_common.decimals import amount_str
from exchange_common.errors import AlreadyExists, FailedPrecondition, NotFound
from exchange_common.keys import ADMIN_KEY_KIND, API_KEY_KIND, key_hash, new_key

ACCOUNT_SELECT = "SELECT account_id, name, tier, disabled_at, created_at FROM accounts"
API_KEY_SELECT = """
SELECT k.key_id, k.prefix, k.label, k.created_at, k.revoked_at, k.account_id,
       a.name AS account
  FROM api_keys k JOIN accounts a ON a.account_id = k.account_id
"""
ADMIN_KEY_COLUMNS = "key_id, prefix, name, created_by, created_at, revoked_at"
ADMIN_KEY_SELECT = f"SELECT {ADMIN_KEY_COLUMNS} FROM admin_keys"
INSTRUMENT_SELECT = """
SELECT i.*, s.owner_address, coalesce(s.owner_epoch, 0) AS owner_epoch,
       coalesce(s.last_sequence, 0) AS last_sequence, s.owner_name, s.assigned_to
  FROM instruments i LEFT JOIN instrument_state s ON s.instrument_id = i.instrument_id
"""
# The matching pods (migration 0009): live while their owner session is connected.
MATCHING_PODS_SELECT = """
SELECT p.name, p.address, p.home, p.may_own, p.started_at, a.pid IS NOT NULL AS live,
       CASE WHEN a.pid IS NULL AND p.reserved_until > now() THEN p.reserved_until END
           AS reserved_until,
       CASE WHEN a.pid IS NULL THEN ARRAY[]::text[] ELSE ARRAY(
           SELECT i.symbol FROM instrument_state s JOIN instruments i USING (instrument_id)
            WHERE s.owner_name = p.name ORDER BY i.symbol) END AS owned
  FROM matching_pods p
  LEFT JOIN pg_stat_activity a ON a.pid = p.backend_pid AND a.backend_start = p.backend_start
"""
# How often MoveInstrument looks whether the target owns the instrument yet (seconds).
MOVE_POLL = 0.02
TIER_COLUMNS = ("orders_per_second", "orders_burst", "cancels_per_second", "cancels_burst",
                "queries_per_second", "queries_burst", "max_open_orders")
INSTRUMENT_LIMITS = ("min_quantity", "max_quantity", "min_notional", "price_band_bps",
                     "maker_fee_bps", "taker_fee_bps")
LEDGER_COLUMNS = ("entry_id, account_id, asset_id, kind, available, held, idempotency_key, "
                  "reference, actor, created_at")
# instruments.instrument_id is below this (ids carry it in their top bits).
MAX_INSTRUMENT_ID = 524287


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes an admin call, for the audit log."""

    name: str
    prefix: str
    peer: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.prefix})"


def _json(row: asyncpg.Record | dict | None, omit: tuple[str, ...] = ()) -> str | None:
    if row is None:
        return None
    return json.dumps({k: v for k, v in dict(row).items() if k not in omit},
                      default=_plain, sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


class AdminStore:
    def __init__(self, pool: asyncpg.Pool, changes: ChangeListener | None = None) -> None:
        self.pool = pool
        self.changes = changes

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction; once committed, wait until every listening process has applied
        the changes it notified (every admin write changes a notified table), so that the
        caller's next call, to any process, sees them."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                txid = await conn.fetchval("SELECT txid_current()")
                yield conn
            if self.changes is not None:
                await self.changes.wait_applied(conn, txid)

    @contextlib.asynccontextmanager
    async def _money(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction for a write of tables nobody caches (balances, ledger): nothing
        to wait for once committed."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                yield conn

    @staticmethod
    async def _audit(conn: asyncpg.Connection | asyncpg.Pool, actor: Actor, action: str,
                     target: str, before: str | None, after: str | None) -> None:
        await conn.execute(
            """INSERT INTO admin_audit (actor, action, target, before, after, peer)
               VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6)""",
            actor.label, action, target, before, after, actor.peer)

    async def audit_read(self, actor: Actor, action: str, target: str) -> None:
        """A call that changed nothing is audited too (who read what, when)."""
        await self._audit(self.pool, actor, action, target, None, None)

    # -- admin keys -------------------------------------------------------------

    async def admin_for_key(self, key: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT name, prefix FROM admin_keys WHERE key_sha256 = $1 AND revoked_at IS NULL",
            key_hash(key))

    async def create_admin_key(self, actor: Actor, name: str) -> tuple[asyncpg.Record, str]:
        secret, prefix = new_key(ADMIN_KEY_KIND)
        async with self._write() as conn:
            row = await conn.fetchrow(
                f"""INSERT INTO admin_keys (key_sha256, prefix, name, created_by)
                    VALUES ($1, $2, $3, $4)
                    RETURNING {ADMIN_KEY_COLUMNS}""",
                key_hash(secret), prefix, name, actor.label)
            await self._audit(conn, actor, "CreateAdminKey", f"admin_key:{prefix}", None,
                              _json(row))
        return row, secret

    async def list_admin_keys(self, include_revoked: bool) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"""{ADMIN_KEY_SELECT} WHERE $1 OR revoked_at IS NULL ORDER BY key_id""",
            include_revoked)

    async def revoke_admin_key(self, actor: Actor, prefix: str) -> asyncpg.Record:
        async with self._write() as conn:
            before = await conn.fetchrow(
                f"{ADMIN_KEY_SELECT} WHERE prefix = $1 AND revoked_at IS NULL FOR UPDATE",
                prefix)
            if before is None:
                raise NotFound(f"no active admin key {prefix}", reason="ADMIN_KEY_NOT_FOUND")
            if prefix == actor.prefix:
                raise FailedPrecondition("an admin key cannot revoke itself",
                                         reason="ADMIN_KEY_IS_CALLER")
            after = await conn.fetchrow(
                f"""UPDATE admin_keys SET revoked_at = now() WHERE key_id = $1
                    RETURNING {ADMIN_KEY_COLUMNS}""",
                before["key_id"])
            await self._audit(conn, actor, "RevokeAdminKey", f"admin_key:{prefix}",
                              _json(before), _json(after))
        return after

    # -- accounts -----------------------------------------------------------------

    async def account(self, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"{ACCOUNT_SELECT} WHERE name = $1", name)

    async def list_accounts(self, after_id: int, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"{ACCOUNT_SELECT} WHERE account_id > $1 ORDER BY account_id LIMIT $2",
            after_id, limit)

    async def _tier_exists(self, conn: asyncpg.Connection, tier: str) -> None:
        if not await conn.fetchval("SELECT true FROM rate_tiers WHERE name = $1", tier):
            raise NotFound(f"no rate tier {tier!r}", reason="TIER_NOT_FOUND")

    async def create_account(self, actor: Actor, name: str, tier: str) -> asyncpg.Record:
        async with self._write() as conn:
            await self._tier_exists(conn, tier)
            row = await conn.fetchrow(
                """INSERT INTO accounts (name, tier) VALUES ($1, $2)
                   ON CONFLICT (name) DO NOTHING
                   RETURNING account_id, name, tier, disabled_at, created_at""", name, tier)
            if row is None:
                raise AlreadyExists(f"account {name!r} exists", reason="ACCOUNT_EXISTS")
            await self._audit(conn, actor, "CreateAccount", f"account:{name}", None,
                              _json(row))
        return row

    async def update_account(self, actor: Actor, action: str, name: str, *,
                             enabled: bool | None = None,
                             tier: str | None = None) -> asyncpg.Record:
        async with self._write() as conn:
            before = await conn.fetchrow(f"{ACCOUNT_SELECT} WHERE name = $1 FOR UPDATE", name)
            if before is None:
                raise NotFound(f"no account {name!r}", reason="ACCOUNT_NOT_FOUND")
            if tier is not None:
                await self._tier_exists(conn, tier)
            after = await conn.fetchrow(
                """UPDATE accounts
                      SET tier = coalesce($2, tier),
                          disabled_at = CASE WHEN $3::boolean IS NULL THEN disabled_at
                                             WHEN $3 THEN NULL
                                             ELSE coalesce(disabled_at, now()) END
                    WHERE account_id = $1
                   RETURNING account_id, name, tier, disabled_at, created_at""",
                before["account_id"], tier, enabled)
            await self._audit(conn, actor, action, f"account:{name}", _json(before),
                              _json(after))
        return after

    # -- API keys -----------------------------------------------------------------

    async def create_api_key(self, actor: Actor, account: str,
                             label: str) -> tuple[asyncpg.Record, str]:
        secret, prefix = new_key(API_KEY_KIND)
        async with self._write() as conn:
            account_id = await conn.fetchval("SELECT account_id FROM accounts WHERE name = $1",
                                             account)
            if account_id is None:
                raise NotFound(f"no account {account!r}", reason="ACCOUNT_NOT_FOUND")
            key_id = await conn.fetchval(
                """INSERT INTO api_keys (key_sha256, account_id, label, prefix)
                   VALUES ($1, $2, $3, $4) RETURNING key_id""",
                key_hash(secret), account_id, label, prefix)
            row = await conn.fetchrow(f"{API_KEY_SELECT} WHERE k.key_id = $1", key_id)
            await self._audit(conn, actor, "CreateApiKey", f"api_key:{prefix}", None,
                              _json(row))
        return row, secret

    async def list_api_keys(self, account: str, prefix: str, include_revoked: bool,
                            after_id: int, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"""{API_KEY_SELECT}
                 WHERE ($1 = '' OR a.name = $1) AND ($2 = '' OR starts_with(k.prefix, $2))
                   AND ($3 OR k.revoked_at IS NULL) AND k.key_id > $4
                 ORDER BY k.key_id LIMIT $5""",
            account, prefix, include_revoked, after_id, limit)

    async def revoke_api_key(self, actor: Actor, prefix: str) -> asyncpg.Record:
        async with self._write() as conn:
            before = await conn.fetchrow(
                f"{API_KEY_SELECT} WHERE k.prefix = $1 AND k.revoked_at IS NULL FOR UPDATE",
                prefix)
            if before is None:
                raise NotFound(f"no active API key {prefix}", reason="API_KEY_NOT_FOUND")
            await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1",
                               before["key_id"])
            after = await conn.fetchrow(f"{API_KEY_SELECT} WHERE k.key_id = $1",
                                        before["key_id"])
            await self._audit(conn, actor, "RevokeApiKey", f"api_key:{prefix}",
                              _json(before), _json(after))
        return after

    # -- rate tiers ---------------------------------------------------------------

    async def list_tiers(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT name, {', '.join(TIER_COLUMNS)} FROM rate_tiers ORDER BY name")

    async def set_tier(self, actor: Actor, name: str, limits: dict[str, int]) -> asyncpg.Record:
        columns = ", ".join(TIER_COLUMNS)
        async with self._write() as conn:
            before = await conn.fetchrow(
                f"SELECT name, {columns} FROM rate_tiers WHERE name = $1 FOR UPDATE", name)
            after = await conn.fetchrow(
                f"""INSERT INTO rate_tiers (name, {columns})
                    VALUES ($1, {', '.join(f'${i + 2}' for i in range(len(TIER_COLUMNS)))})
                    ON CONFLICT (name) DO UPDATE SET updated_at = now(),
                    {', '.join(f'{c} = EXCLUDED.{c}' for c in TIER_COLUMNS)}
                    RETURNING name, {columns}""",
                name, *(limits[c] for c in TIER_COLUMNS))
            await self._audit(conn, actor, "SetRateTier", f"tier:{name}", _json(before),
                              _json(after))
        return after

    # -- instruments --------------------------------------------------------------

    async def instruments(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(f"{INSTRUMENT_SELECT} ORDER BY i.instrument_id")

    async def instrument(self, conn: asyncpg.Connection | asyncpg.Pool,
                         symbol: str) -> asyncpg.Record:
        row = await conn.fetchrow(f"{INSTRUMENT_SELECT} WHERE i.symbol = $1", symbol)
        if row is None:
            raise NotFound(f"no instrument {symbol!r}", reason="INSTRUMENT_NOT_FOUND")
        return row

    async def create_instrument(self, actor: Actor, values: dict[str, Any]) -> asyncpg.Record:
        async with self._write() as conn:
            # One creator at a time: the next free id is read and used atomically.
            await conn.execute("LOCK TABLE instruments IN SHARE ROW EXCLUSIVE MODE")
            if await conn.fetchval("SELECT true FROM instruments WHERE symbol = $1",
                                   values["symbol"]):
                raise AlreadyExists(f"instrument {values['symbol']} exists",
                                    reason="INSTRUMENT_EXISTS")
            instrument_id = values["instrument_id"] or await conn.fetchval(
                "SELECT coalesce(max(instrument_id), 0) + 1 FROM instruments")
            if instrument_id > MAX_INSTRUMENT_ID:
                raise FailedPrecondition("no instrument id left", reason="INSTRUMENT_ID_RANGE")
            if await conn.fetchval("SELECT true FROM instruments WHERE instrument_id = $1",
                                   instrument_id):
                raise AlreadyExists(f"instrument id {instrument_id} is taken",
                                    reason="INSTRUMENT_ID_TAKEN")
            await conn.execute(
                """INSERT INTO instruments (instrument_id, symbol, base_asset, quote_asset,
                       tick_size, lot_size, min_quantity, max_quantity, min_notional,
                       price_band_bps, status)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
                instrument_id, values["symbol"], values["base_asset"], values["quote_asset"],
                values["tick_size"], values["lot_size"], values["min_quantity"],
                values["max_quantity"], values["min_notional"], values["price_band_bps"],
                values["status"])
            await conn.execute(
                "INSERT INTO instrument_state (instrument_id) VALUES ($1) ON CONFLICT DO NOTHING",
                instrument_id)
            await db.ensure_assets(conn)  # its assets, if they are new
            row = await self.instrument(conn, values["symbol"])
            await self._audit(conn, actor, "CreateInstrument",
                              f"instrument:{values['symbol']}", None, _json(row))
        return row

    async def update_instrument(self, actor: Actor, action: str, symbol: str,
                                changes: dict[str, Any]) -> asyncpg.Record:
        """Set the columns in ``changes`` (limits, or status)."""
        async with self._write() as conn:
            await conn.execute("SELECT 1 FROM instruments WHERE symbol = $1 FOR UPDATE", symbol)
            before = await self.instrument(conn, symbol)
            if changes:
                names = sorted(changes)
                await conn.execute(
                    f"""UPDATE instruments SET updated_at = now(),
                        {', '.join(f'{c} = ${i + 2}' for i, c in enumerate(names))}
                        WHERE symbol = $1""",
                    symbol, *(changes[c] for c in names))
            after = await self.instrument(conn, symbol)
            await self._audit(conn, actor, action, f"instrument:{symbol}", _json(before),
                              _json(after))
        return after

    # -- matching pods --------------------------------------------------------------

    async def matching_pods(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(f"{MATCHING_PODS_SELECT} ORDER BY p.name")

    async def assign_instrument(self, actor: Actor, symbol: str,
                                to: str) -> tuple[asyncpg.Record, asyncpg.Record]:
        """Assign an instrument to matching pod ``to`` (live, allowed to own it) and
        wake the pods (the owner hands it over: matching_service/placement.py).
        Returns the instrument before and after."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await self.instrument(conn, symbol)
            await conn.execute(
                """INSERT INTO instrument_state (instrument_id) VALUES ($1)
                   ON CONFLICT DO NOTHING""", before["instrument_id"])
            await conn.execute("SELECT 1 FROM instrument_state WHERE instrument_id = $1 "
                               "FOR UPDATE", before["instrument_id"])
            pod = await conn.fetchrow(f"{MATCHING_PODS_SELECT} WHERE p.name = $1", to)
            if pod is None:
                raise FailedPrecondition(f"no matching pod named {to!r} ever registered",
                                         reason="MATCHING_POD_UNKNOWN")
            if not pod["live"]:
                raise FailedPrecondition(f"matching pod {to!r} is not running",
                                         reason="MATCHING_POD_NOT_LIVE")
            if not spec_includes(pod["may_own"], symbol):
                raise FailedPrecondition(
                    f"matching pod {to!r} may not own {symbol} (its "
                    f"EXCHANGE_MATCHING_INSTRUMENTS is {pod['may_own']!r})",
                    reason="MATCHING_POD_MAY_NOT_OWN")
            await conn.execute(
                "UPDATE instrument_state SET assigned_to = $2 WHERE instrument_id = $1",
                before["instrument_id"], to)
            await conn.execute("SELECT pg_notify($1, $2)", CHANGES_CHANNEL, PODS_TABLE)
            after = await self.instrument(conn, symbol)
            await self._audit(conn, actor, "MoveInstrument", f"instrument:{symbol}",
                              _json(before), _json(after))
        return before, after

    async def wait_owned(self, symbol: str, to: str, above_epoch: int,
                         timeout: float) -> asyncpg.Record | None:
        """The instrument once pod ``to`` took it with an epoch above ``above_epoch`` (or
        owns it already, when it did before); None after ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with self.pool.acquire() as conn:
            while True:
                row = await self.instrument(conn, symbol)
                if row["owner_name"] == to and row["owner_epoch"] > above_epoch:
                    return row
                if asyncio.get_running_loop().time() >= deadline:
                    return None
                await asyncio.sleep(MOVE_POLL)

    # -- money ----------------------------------------------------------------------

    async def assets(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT asset_id, symbol, decimals FROM assets ORDER BY symbol")

    async def asset(self, symbol: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT asset_id, symbol, decimals FROM assets WHERE symbol = $1", symbol)
        if row is None:
            raise NotFound(f"no asset {symbol!r}", reason="ASSET_NOT_FOUND")
        return row

    async def _account_id(self, conn: asyncpg.Connection | asyncpg.Pool, name: str) -> int:
        account_id = await conn.fetchval("SELECT account_id FROM accounts WHERE name = $1",
                                         name)
        if account_id is None:
            raise NotFound(f"no account {name!r}", reason="ACCOUNT_NOT_FOUND")
        return account_id

    async def balances(self, account: str) -> list[asyncpg.Record]:
        account_id = await self._account_id(self.pool, account)
        return await self.pool.fetch(
            """SELECT s.symbol, s.decimals, b.available, b.held
                 FROM balances b JOIN assets s ON s.asset_id = b.asset_id
                WHERE b.account_id = $1 ORDER BY s.symbol""", account_id)

    async def transfer(self, actor: Actor, action: str, kind: str, account: str,
                       asset: asyncpg.Record, amount: int, key: str,
                       reference: str) -> tuple[asyncpg.Record, bool, asyncpg.Record]:
        """Move ``amount`` (signed: the change of available) of ``asset`` in or out of
        ``account`` as a ledger entry of ``kind`` under idempotency ``key``: the entry,
        whether it was there already (nothing moved), and the balance after.

        The balance row is made if missing and locked first, then the entry and the
        change are written in the same transaction with the audit row. A key used
        already returns its entry if it says the same, else ALREADY_EXISTS; a change that
        would make available negative is FAILED_PRECONDITION (INSUFFICIENT_FUNDS)."""
        symbol, decimals = asset["symbol"], asset["decimals"]
        target = f"balance:{account}:{symbol}"
        async with self._money() as conn:
            account_id = await self._account_id(conn, account)
            await conn.execute(
                """INSERT INTO balances (account_id, asset_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING""", account_id, asset["asset_id"])
            before = await conn.fetchrow(
                """SELECT available, held FROM balances
                    WHERE account_id = $1 AND asset_id = $2 FOR UPDATE""",
                account_id, asset["asset_id"])
            wanted = (account_id, asset["asset_id"], kind, amount, reference)
            entry = await conn.fetchrow(
                f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE idempotency_key = $1", key)
            if entry is None:
                if before["available"] + amount < 0:
                    raise FailedPrecondition(
                        f"insufficient funds: {amount_str(-amount, decimals)} {symbol} "
                        f"needed, {amount_str(before['available'], decimals)} {symbol} is "
                        "available", reason="INSUFFICIENT_FUNDS",
                        metadata={"asset": symbol, "needed": amount_str(-amount, decimals),
                                  "available": amount_str(before["available"], decimals)})
                entry = await conn.fetchrow(
                    f"""INSERT INTO ledger (account_id, asset_id, kind, available,
                                            idempotency_key, reference, actor)
                        VALUES ($1, $2, $3, $4, $6, $5, $7)
                        ON CONFLICT (idempotency_key) DO NOTHING
                        RETURNING {LEDGER_COLUMNS}""",
                    *wanted, key, actor.label)
                if entry is not None:
                    try:
                        after = await conn.fetchrow(
                            """UPDATE balances SET available = available + $3
                                WHERE account_id = $1 AND asset_id = $2
                               RETURNING available, held""",
                            account_id, asset["asset_id"], amount)
                    except asyncpg.NumericValueOutOfRangeError:
                        raise FailedPrecondition(
                            f"the {symbol} balance would exceed what a balance can hold",
                            reason="BALANCE_OUT_OF_RANGE") from None
                    await self._audit(conn, actor, action, target,
                                      _json(before), _json({**dict(after),
                                                            "entry_id": entry["entry_id"]}))
                    return entry, False, after
                # the same key, written meanwhile by a transfer of another balance
                entry = await conn.fetchrow(
                    f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE idempotency_key = $1", key)
            same = (entry["account_id"], entry["asset_id"], entry["kind"], entry["available"],
                    entry["reference"]) == wanted
            if not same:
                raise AlreadyExists(
                    f"idempotency key {key[:40]!r} was used by ledger entry "
                    f"{entry['entry_id']} with other contents", reason="IDEMPOTENCY_KEY_REUSED",
                    metadata={"entry_id": f"ledger:{entry['entry_id']}"})
            await self._audit(conn, actor, action, target, None, None)
            return entry, True, before

    async def set_account_fees(self, actor: Actor, account: str, symbol: str,
                               fees: tuple[int, int] | None) -> None:
        """The account's fees on the instrument (None: remove the override)."""
        async with self._write() as conn:
            account_id = await self._account_id(conn, account)
            instrument = await self.instrument(conn, symbol)
            before = await conn.fetchrow(
                """SELECT maker_fee_bps, taker_fee_bps FROM account_fees
                    WHERE account_id = $1 AND instrument_id = $2 FOR UPDATE""",
                account_id, instrument["instrument_id"])
            if fees is None:
                await conn.execute(
                    "DELETE FROM account_fees WHERE account_id = $1 AND instrument_id = $2",
                    account_id, instrument["instrument_id"])
                after = None
            else:
                after = await conn.fetchrow(
                    """INSERT INTO account_fees (account_id, instrument_id, maker_fee_bps,
                                                 taker_fee_bps)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (account_id, instrument_id) DO UPDATE
                          SET maker_fee_bps = EXCLUDED.maker_fee_bps,
                              taker_fee_bps = EXCLUDED.taker_fee_bps, updated_at = now()
                       RETURNING maker_fee_bps, taker_fee_bps""",
                    account_id, instrument["instrument_id"], *fees)
            await self._audit(conn, actor, "SetAccountFees", f"fees:{account}:{symbol}",
                              _json(before), _json(after))

    # -- audit ----------------------------------------------------------------------

    async def audit_entries(self, target_prefix: str, before_id: int,
                            limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT audit_id, actor, action, target, before::text AS before,
                      after::text AS after, peer, created_at
                 FROM admin_audit
                WHERE ($1 = '' OR starts_with(target, $1)) AND audit_id < $2
                ORDER BY audit_id DESC LIMIT $3""",
            target_prefix, before_id, limit)
