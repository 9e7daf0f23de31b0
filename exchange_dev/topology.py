"""The matching topology of ``make run SHARDS=N STANDBYS=M`` (``exchange-dev --shards N
--standbys M [--groups ...]``), wired the way the Helm chart wires its StatefulSet
(``deploy/k8s/templates/matching/_matching.tpl``).

- Pod N (``matching-N``) owns instrument group N: ``EXCHANGE_MATCHING_INSTRUMENTS`` and
  ``EXCHANGE_MATCHING_HOME`` are its group.
- The pods after the groups are standbys: they may own every grouped instrument
  (``EXCHANGE_MATCHING_INSTRUMENTS`` = all of them) and own none by preference
  (``EXCHANGE_MATCHING_HOME`` empty), so one takes over a dead pod's group.
- With one shard (no groups) pod 0 owns ``*`` and the standbys may own ``*``, as the chart
  does with no ``matching.instrumentGroups``.

The groups, unless given (``--groups "BTC-USD;ETH-USD,SOL-USD"``: groups split by ``;``,
symbols by ``,``), are every instrument in the database dealt round-robin in instrument-id
order: the first to ``matching-0``, the second to ``matching-1``, ... When there are
fewer instruments than shards, the dev instruments of ``DEV_INSTRUMENTS`` are created (in
that order) until every shard has one; a run without shards never creates them.

``Topology()`` (one shard, no standbys, no groups) is the single matching process of a
plain ``make run``, which this module leaves alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

from exchange_common import db

MAX_SHARDS = 10
MAX_STANDBYS = 8

# Instruments made for a sharded run when the database has fewer than the shards:
# (symbol, base, quote, tick size, lot size, min quantity, max quantity, min notional).
DEV_INSTRUMENTS: tuple[tuple[str, str, str, str, str, str, str, str], ...] = (
    ("SOL-USD", "SOL", "USD", "0.01", "0.01", "0.01", "100000", "1"),
    ("XRP-USD", "XRP", "USD", "0.0001", "1", "1", "10000000", "1"),
    ("ADA-USD", "ADA", "USD", "0.0001", "1", "1", "10000000", "1"),
    ("LTC-USD", "LTC", "USD", "0.01", "0.001", "0.001", "100000", "1"),
    ("DOT-USD", "DOT", "USD", "0.001", "0.1", "0.1", "1000000", "1"),
    ("LINK-USD", "LINK", "USD", "0.001", "0.1", "0.1", "1000000", "1"),
    ("AVAX-USD", "AVAX", "USD", "0.01", "0.01", "0.01", "1000000", "1"),
    ("DOGE-USD", "DOGE", "USD", "0.00001", "1", "1", "100000000", "1"),
)
# The seeded instruments plus these always cover MAX_SHARDS.
assert len(db.DEFAULT_INSTRUMENTS) + len(DEV_INSTRUMENTS) >= MAX_SHARDS


def parse_groups(text: str) -> list[list[str]]:
    """``"BTC-USD;ETH-USD,SOL-USD"`` -> ``[["BTC-USD"], ["ETH-USD", "SOL-USD"]]``.
    Raises ValueError (naming what is wrong) on an empty group or an instrument named
    twice."""
    groups: list[list[str]] = []
    seen: dict[str, int] = {}
    for i, part in enumerate(text.split(";")):
        symbols = [s.strip() for s in part.split(",") if s.strip()]
        if not symbols:
            raise ValueError(f"group {i} is empty (groups are split by ';', instruments by "
                             "',', e.g. \"BTC-USD;ETH-USD,SOL-USD\")")
        for symbol in symbols:
            if symbol in seen:
                raise ValueError(f"{symbol} is in groups {seen[symbol]} and {i}; an "
                                 "instrument has one owner")
            seen[symbol] = i
        groups.append(symbols)
    if len(groups) > MAX_SHARDS:
        raise ValueError(f"{len(groups)} groups; at most {MAX_SHARDS}")
    return groups


def deal(symbols: list[str], shards: int) -> list[list[str]]:
    """``symbols`` dealt round-robin over ``shards`` groups (the n-th to group n mod
    shards)."""
    return [symbols[i::shards] for i in range(shards)]


@dataclass(frozen=True)
class Pod:
    """One matching process: its name (``matching-N``), its role (``"group N"`` or
    ``"standby"``), what it owns by preference (its home, ``EXCHANGE_MATCHING_HOME``) and
    what it may own (``EXCHANGE_MATCHING_INSTRUMENTS``)."""

    name: str
    role: str
    home: str
    may_own: str

    @property
    def env(self) -> dict[str, str]:
        return {"EXCHANGE_MATCHING_NAME": self.name,
                "EXCHANGE_MATCHING_HOME": self.home,
                "EXCHANGE_MATCHING_INSTRUMENTS": self.may_own}


@dataclass(frozen=True)
class Topology:
    """How many group pods (``shards``) and standbys, and the groups when given."""

    shards: int = 1
    standbys: int = 0
    groups: list[list[str]] | None = field(default=None)

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1 to {MAX_SHARDS}, got {self.shards}")
        if not 0 <= self.standbys <= MAX_STANDBYS:
            raise ValueError(f"standbys must be 0 to {MAX_STANDBYS}, got {self.standbys}")
        if self.groups is not None and len(self.groups) != self.shards:
            raise ValueError(f"{len(self.groups)} groups given for {self.shards} shards")

    @classmethod
    def of(cls, shards: int | None, standbys: int | None, groups: str | None) -> Topology:
        """From the options (None: not given): ``groups`` sets the shards, and a
        ``shards`` given with it must agree."""
        parsed = parse_groups(groups) if groups else None
        if parsed is not None and shards is not None and shards != len(parsed):
            raise ValueError(f"--shards {shards} but --groups names {len(parsed)} groups")
        return cls(shards=len(parsed) if parsed is not None else (shards or 1),
                   standbys=standbys or 0, groups=parsed)

    @property
    def is_default(self) -> bool:
        """One matching process owning every instrument: plain ``make run``."""
        return self.shards == 1 and self.standbys == 0 and self.groups is None

    @property
    def pod_count(self) -> int:
        return self.shards + self.standbys

    def group_lists(self, symbols: list[str]) -> list[list[str]] | None:
        """The groups (None: one pod owning ``*``) for the instruments ``symbols`` (in
        instrument-id order). Raises ValueError when a given group names an instrument
        that does not exist, or when there are fewer instruments than shards."""
        if self.groups is not None:
            unknown = [s for g in self.groups for s in g if s not in symbols]
            if unknown:
                raise ValueError(f"--groups names instruments that do not exist: "
                                 f"{', '.join(unknown)} (there are {', '.join(symbols)})")
            return self.groups
        if self.shards == 1:
            return None
        if len(symbols) < self.shards:
            raise ValueError(f"{self.shards} shards need {self.shards} instruments; there "
                             f"are {len(symbols)}")
        return deal(symbols, self.shards)

    def pods(self, symbols: list[str]) -> list[Pod]:
        """The matching pods, in start order (groups first, as a StatefulSet's ordinals)."""
        groups = self.group_lists(symbols)
        if groups is None:
            pods = [Pod("matching-0", "group 0 (all)", "*", "*")]
            return pods + [Pod(f"matching-{1 + i}", "standby", "", "*")
                           for i in range(self.standbys)]
        pods = [Pod(f"matching-{i}", f"group {i}", ",".join(g), ",".join(g))
                for i, g in enumerate(groups)]
        everything = ",".join(s for g in groups for s in g)
        return pods + [Pod(f"matching-{len(groups) + i}", "standby", "", everything)
                       for i in range(self.standbys)]

    async def prepare(self, conn: asyncpg.Connection) -> tuple[list[Pod], list[str]]:
        """Create dev instruments if the shards need more (``DEV_INSTRUMENTS``), then the
        pods for the instruments in the database. Returns the pods and the names of the
        instruments created."""
        created: list[str] = []
        if self.groups is None and self.shards > 1:
            symbols = await instrument_symbols(conn)
            for row in DEV_INSTRUMENTS:
                if len(symbols) >= self.shards:
                    break
                if row[0] not in symbols and await create_instrument(conn, row):
                    created.append(row[0])
                    symbols.append(row[0])
        return self.pods(await instrument_symbols(conn)), created


async def instrument_symbols(conn: asyncpg.Connection) -> list[str]:
    """Every instrument's symbol, in instrument-id order."""
    return [r["symbol"] for r in
            await conn.fetch("SELECT symbol FROM instruments ORDER BY instrument_id")]


async def create_instrument(conn: asyncpg.Connection,
                            row: tuple[str, str, str, str, str, str, str, str]) -> bool:
    """Create one instrument of ``DEV_INSTRUMENTS`` (the next free id) with its state row
    and assets; False when its symbol exists already."""
    symbol, base, quote, tick, lot, min_q, max_q, min_n = row
    async with conn.transaction():
        made = await conn.fetchval(
            """INSERT INTO instruments (instrument_id, symbol, base_asset, quote_asset,
                   tick_size, lot_size, min_quantity, max_quantity, min_notional)
               SELECT coalesce(max(instrument_id), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8
                 FROM instruments
               ON CONFLICT (symbol) DO NOTHING
               RETURNING instrument_id""",
            symbol, base, quote, Decimal(tick), Decimal(lot), Decimal(min_q), Decimal(max_q),
            Decimal(min_n))
        if made is None:
            return False
        await conn.execute(
            "INSERT INTO instrument_state (instrument_id) VALUES ($1) ON CONFLICT DO NOTHING",
            made)
        await db.ensure_assets(conn)
    return True
