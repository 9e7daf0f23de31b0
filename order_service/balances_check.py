"""The money invariants, checked at one committed point (docs/money.md,
``exchange admin check-balances``; tests call ``check_balances`` directly).

1. per asset, the sum of every balance (available + held, the fee account's included)
   equals what came in and went out: deposits - withdrawals + adjustments (``ledger``);
2. no available or held amount is negative;
3. per account and asset, ``held`` is what its open orders hold (``orders.held``, in the
   quote asset for a buy, the base for a sell; untriggered stops hold theirs too) plus
   its holds on their way to matching (``order_holds``);
4. per account and asset, the balance equals its ledger (order_service/ledger.py: the
   stored entries and those derived from orders, amendments and trades) plus the holds
   on their way to matching, for available and held alike;
5. per quote asset, the fee account's balance equals the fees paid in it (the sum of
   ``maker_fee + taker_fee``) plus the fee account's own transfers.

All in one REPEATABLE READ, read-only transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from exchange.common.v1 import common_pb2 as cpb
from exchange_common.db import OPEN_ORDERS_SQL
from exchange_common.decimals import amount_str
from exchange_common.instruments import load_instruments
from order_service import ledger

TRANSFER_KINDS = ("deposit", "withdrawal", "adjustment")

TOTALS_SQL = f"""
SELECT s.asset_id, s.symbol, s.decimals,
       coalesce((SELECT sum(b.available + b.held) FROM balances b
                  WHERE b.asset_id = s.asset_id), 0)::numeric AS balances,
       coalesce((SELECT sum(l.available) FROM ledger l
                  WHERE l.asset_id = s.asset_id
                    AND l.kind IN {TRANSFER_KINDS!r}), 0)::numeric AS transfers,
       coalesce((SELECT sum(t.maker_fee + t.taker_fee) FROM trades t
                   JOIN instruments i ON i.instrument_id = t.instrument_id
                  WHERE i.quote_asset = s.symbol), 0)::numeric AS fees
  FROM assets s ORDER BY s.symbol
"""

NEGATIVE_SQL = """
SELECT a.name, s.symbol, b.available, b.held, s.decimals
  FROM balances b JOIN accounts a ON a.account_id = b.account_id
  JOIN assets s ON s.asset_id = b.asset_id
 WHERE b.available < 0 OR b.held < 0
"""

# Per (account, asset): held, and what open orders and pending holds hold.
HELD_SQL = f"""
WITH needed AS (
    SELECT o.account_id, s.asset_id, sum(o.held) AS amount
      FROM orders o JOIN instruments i ON i.instrument_id = o.instrument_id
      JOIN assets s ON s.symbol = CASE WHEN o.side = {cpb.SIDE_BUY} THEN i.quote_asset
                                       ELSE i.base_asset END
     WHERE {OPEN_ORDERS_SQL}
     GROUP BY 1, 2
    UNION ALL
    SELECT account_id, asset_id, sum(amount) FROM order_holds GROUP BY 1, 2
), total AS (
    SELECT account_id, asset_id, sum(amount) AS amount FROM needed GROUP BY 1, 2
)
SELECT coalesce(b.account_id, t.account_id) AS account_id,
       coalesce(b.asset_id, t.asset_id) AS asset_id,
       coalesce(b.held, 0) AS held, coalesce(t.amount, 0)::numeric AS needed
  FROM balances b FULL JOIN total t
    ON t.account_id = b.account_id AND t.asset_id = b.asset_id
 WHERE coalesce(b.held, 0) <> coalesce(t.amount, 0)
"""

PENDING_SQL = """
SELECT account_id, asset_id, sum(amount)::bigint AS amount FROM order_holds GROUP BY 1, 2
"""

FEE_ACCOUNT_SQL = f"""
SELECT s.asset_id, coalesce(b.available + b.held, 0) AS balance,
       coalesce((SELECT sum(t.maker_fee + t.taker_fee) FROM trades t
                   JOIN instruments i ON i.instrument_id = t.instrument_id
                  WHERE i.quote_asset = s.symbol), 0)::numeric AS fees,
       coalesce((SELECT sum(l.available + l.held) FROM ledger l
                  WHERE l.account_id = $1 AND l.asset_id = s.asset_id
                    AND l.kind IN {TRANSFER_KINDS!r}), 0)::numeric AS transfers
  FROM assets s LEFT JOIN balances b ON b.account_id = $1 AND b.asset_id = s.asset_id
 WHERE EXISTS (SELECT 1 FROM instruments i WHERE i.quote_asset = s.symbol)
"""


@dataclass(frozen=True, slots=True)
class AssetTotal:
    symbol: str
    decimals: int
    balances: int
    transfers: int
    fees: int


@dataclass(slots=True)
class Report:
    problems: list[str] = field(default_factory=list)
    totals: list[AssetTotal] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_balances(conn: asyncpg.Connection) -> Report:
    """Check the invariants of the module docstring; a problem per line."""
    report = Report()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        assets = {r["asset_id"]: r for r in await conn.fetch(
            "SELECT asset_id, symbol, decimals FROM assets")}
        names = {r["account_id"]: r["name"] for r in await conn.fetch(
            "SELECT account_id, name FROM accounts")}

        def amount(asset_id: int, units: int) -> str:
            a = assets.get(asset_id)
            return (f"{amount_str(units, a['decimals'])} {a['symbol']}" if a is not None
                    else f"{units} units of asset {asset_id}")

        def who(account_id: int) -> str:
            return names.get(account_id, f"account {account_id}")

        # 1. the totals
        for r in await conn.fetch(TOTALS_SQL):
            total = AssetTotal(r["symbol"], r["decimals"], int(r["balances"]),
                               int(r["transfers"]), int(r["fees"]))
            report.totals.append(total)
            if total.balances != total.transfers:
                report.problems.append(
                    f"{total.symbol}: balances sum to {amount(r['asset_id'], total.balances)}"
                    f", transfers to {amount(r['asset_id'], total.transfers)}")
        # 2. nothing negative
        for r in await conn.fetch(NEGATIVE_SQL):
            report.problems.append(
                f"{r['name']} {r['symbol']}: negative balance (available "
                f"{amount_str(r['available'], r['decimals'])}, held "
                f"{amount_str(r['held'], r['decimals'])})")
        # 3. held = what open orders and pending holds hold
        for r in await conn.fetch(HELD_SQL):
            report.problems.append(
                f"{who(r['account_id'])} {assets[r['asset_id']]['symbol']}: held "
                f"{amount(r['asset_id'], r['held'])}, open orders and pending holds hold "
                f"{amount(r['asset_id'], int(r['needed']))}")
        # 4. every balance equals its ledger (and the holds still pending)
        fee_account = await ledger.fee_account_id(conn)
        money = ledger.MoneyInstruments.of(await load_instruments(conn), fee_account)
        expected = await ledger.sums(conn, money)
        for r in await conn.fetch(PENDING_SQL):
            key = (r["account_id"], r["asset_id"])
            available, held = expected.get(key, (0, 0))
            expected[key] = (available - r["amount"], held + r["amount"])
        balances = {(r["account_id"], r["asset_id"]): (r["available"], r["held"])
                    for r in await conn.fetch(
                        "SELECT account_id, asset_id, available, held FROM balances")}
        for key in sorted(set(expected) | set(balances)):
            want = expected.get(key, (0, 0))
            have = balances.get(key, (0, 0))
            if want != have:
                account_id, asset_id = key
                report.problems.append(
                    f"{who(account_id)} {assets[asset_id]['symbol']}: balance available "
                    f"{amount(asset_id, have[0])}, held {amount(asset_id, have[1])}; its "
                    f"ledger says available {amount(asset_id, want[0])}, held "
                    f"{amount(asset_id, want[1])}")
        # 5. the fee account holds the fees
        if fee_account:
            for r in await conn.fetch(FEE_ACCOUNT_SQL, fee_account):
                owed = int(r["fees"]) + int(r["transfers"])
                if r["balance"] != owed:
                    report.problems.append(
                        f"{who(fee_account)} {assets[r['asset_id']]['symbol']}: balance "
                        f"{amount(r['asset_id'], r['balance'])}, fees paid plus its transfers "
                        f"{amount(r['asset_id'], owed)}")
    return report
