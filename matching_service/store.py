"""The matching pod's PostgreSQL storage: ownership, book recovery, group commit.

Every batch is committed in one statement that first advances
``instrument_state.last_sequence`` under a fence: the row must still carry this pod's
``owner_epoch`` and the sequence the batch follows. Every insert and update of the
statement acts only when the fence matched, so an old owner that was paused while
another took over cannot write anything.

The rows are the engine's records (``JournalEvent``, ``OrderRow``, ``Trade``) and the
SQL is generated from their fields (matching_service/rows.py), with the instrument id
(and the journal's owner epoch) that the store adds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg

from exchange_common.changes import CHANNEL as CHANGES_CHANNEL
from exchange_common.changes import PODS_TABLE
from exchange_common.ids import make_id
from exchange_common.instruments import InstrumentSpec, load_instruments
from matching_service.engine import (
    TRADING,
    Changes,
    JournalEvent,
    OrderBook,
    OrderRow,
    Terms,
    Trade,
)
from matching_service.placement import HANDOVER_TIMEOUT, InstrumentPlacement, Placement, Pod
from matching_service.recovery import (
    ReplayMismatch,
    collector_paused,
    decode_snapshot,
    replay,
)
from matching_service.rows import Table
from matching_service.updates import OrderUpdateRow, accounts, build, needs_before

log = logging.getLogger(__name__)


class Committed(NamedTuple):
    """What a commit did: how many of the order path's holds it took over, and each
    account's latest order-update sequence after it ('<account>:<sequence>,...', the
    message the loop publishes on exchange_common.streams.ORDER_UPDATES_CHANNEL; '' when
    the batch made no update)."""

    holds_used: int
    latest_updates: str


@dataclass(frozen=True)
class Statements:
    """The tables the store writes, and its SQL, generated once per store from the
    records and the tables' columns in the database."""

    journal: Table
    orders: Table
    trades: Table
    updates: Table
    commit: str
    journal_after: str

    @classmethod
    async def load(cls, conn: asyncpg.Connection) -> Statements:
        journal = await Table.load(conn, "journal", JournalEvent,
                                   added=("instrument_id", "owner_epoch"))
        orders = await Table.load(conn, "orders", OrderRow, added=("instrument_id",))
        trades = await Table.load(conn, "trades", Trade, added=("instrument_id",))
        updates = await Table.load(conn, "order_updates", OrderUpdateRow)

        def insert(table: Table, n: int) -> str:
            return (f"INSERT INTO {table.name} ({table.column_list(columns=table.written)})"
                    f"\n    SELECT {table.column_list('r.', table.written)}"
                    f" FROM unnest(${n}::{table.name}[]) AS r")

        updated = ", ".join(f"{c} = u.{c}" for c in orders.columns if c != "order_id")
        # $1 instrument, $2 owner epoch, $3 the batch's last sequence, $4 the one before
        # its first; then the rows of the events, new orders, changed orders, trades;
        # then the money: $9-$12 the balance changes (account, asset, available, held;
        # sorted), $13-$14 the holds taken over (account, hold key), $15 the reference
        # price. The balance rows are locked in (account, asset) order before any is
        # changed, so that two pods' commits cannot deadlock (docs/money.md).
        # Then the order updates (matching_service/updates.py): $16-$17 the accounts
        # (sorted) and how many updates each, $18 the rows numbered per account from 1,
        # $19 each row's account's place in $16: each account's counter row is locked
        # (made when missing) in account order after the balances, advanced by its
        # count, and the rows numbered from where it was (by position in arrays, not a
        # join: the pool plans joins as nested loops). The statement answers each
        # account's latest (``latest``), which the loop publishes to Redis: not a
        # pg_notify, which would take a database-wide lock at every commit and so
        # serialize the commits of all instruments and pods.
        update_columns = updates.column_list(columns=updates.written)
        update_values = ", ".join(
            "b.lasts[p.i] - ($17::bigint[])[p.i] + r.sequence" if c == "sequence"
            else f"r.{c}" for c in updates.written)
        commit = f"""
WITH fence AS (
    UPDATE instrument_state SET last_sequence = $3, updated_at = now(),
                                reference_price = coalesce($15, reference_price)
     WHERE instrument_id = $1 AND owner_epoch = $2 AND last_sequence = $4
    RETURNING 1
), money_locked AS MATERIALIZED (
    SELECT b.account_id FROM balances b
     WHERE (b.account_id, b.asset_id) IN (SELECT * FROM unnest($9::bigint[], $10::smallint[]))
       AND EXISTS (SELECT 1 FROM fence)
     ORDER BY b.account_id, b.asset_id FOR UPDATE
), settled AS (
    UPDATE balances b SET available = b.available + d.available, held = b.held + d.held
      FROM unnest($9::bigint[], $10::smallint[], $11::bigint[], $12::bigint[])
               AS d(account_id, asset_id, available, held)
     WHERE b.account_id = d.account_id AND b.asset_id = d.asset_id
       AND (SELECT count(*) FROM money_locked) > 0
    RETURNING 1
), holds_used AS (
    DELETE FROM order_holds h
     USING unnest($13::bigint[], $14::text[]) AS k(account_id, hold_key)
     WHERE h.account_id = k.account_id AND h.hold_key = k.hold_key
       AND EXISTS (SELECT 1 FROM fence)
    RETURNING 1
), journal_rows AS (
    {insert(journal, 5)}
     WHERE EXISTS (SELECT 1 FROM fence)
), new_orders AS (
    {insert(orders, 6)}
     WHERE EXISTS (SELECT 1 FROM fence)
), changed_orders AS (
    UPDATE orders o SET {updated}
      FROM unnest($7::orders[]) AS u
     WHERE o.order_id = u.order_id AND EXISTS (SELECT 1 FROM fence)
), trade_rows AS (
    {insert(trades, 8)}
     WHERE EXISTS (SELECT 1 FROM fence)
), counters AS (
    INSERT INTO account_update_sequences AS s (account_id, last_sequence)
    SELECT k.account_id, k.n FROM unnest($16::bigint[], $17::bigint[]) AS k(account_id, n)
     WHERE EXISTS (SELECT 1 FROM fence) AND (SELECT count(*) FROM money_locked) >= 0
     ORDER BY k.account_id
    ON CONFLICT (account_id) DO UPDATE SET last_sequence = s.last_sequence + EXCLUDED.last_sequence
    RETURNING s.account_id, s.last_sequence
), bases AS (
    SELECT array_agg(c.last_sequence ORDER BY c.account_id) AS lasts FROM counters c
), update_rows AS (
    INSERT INTO order_updates ({update_columns})
    SELECT {update_values}
      FROM unnest($18::order_updates[]) WITH ORDINALITY AS r
     CROSS JOIN LATERAL (SELECT ($19::integer[])[r.ordinality] AS i) p
     CROSS JOIN bases b
     WHERE b.lasts IS NOT NULL
)
SELECT (SELECT count(*) FROM fence) AS fenced, (SELECT count(*) FROM settled) AS settled,
       (SELECT string_agg(c.account_id || ':' || c.last_sequence, ',') FROM counters c)
           AS latest,
       (SELECT CASE WHEN n = cardinality($13::bigint[]) OR NOT EXISTS (SELECT 1 FROM fence)
                    THEN n
                    -- a hold the batch takes over is gone (released after a refusal of
                    -- another copy of the command, or swept): fail the whole statement,
                    -- which undoes it all, rather than place an order without its money
                    ELSE n / (n - n) END
          FROM (SELECT count(*) AS n FROM holds_used) h) AS holds_used
"""
        journal_after = f"""SELECT {journal.column_list()} FROM journal
     WHERE instrument_id = $1 AND sequence > $2 AND sequence <= $3 ORDER BY sequence"""
        return cls(journal, orders, trades, updates, commit, journal_after)


# What a statement raises when a table it writes changed after the row types were read.
SCHEMA_CHANGED = (asyncpg.DatatypeMismatchError, asyncpg.InvalidCachedStatementError)


def terms_of(spec: InstrumentSpec) -> Terms | None:
    """The engine's money terms of an instrument (None when its assets are unknown, or
    a lot or a tick times a lot is not a whole number of their units)."""
    if not spec.has_money:
        return None
    return Terms(spec.base_asset_id, spec.quote_asset_id, spec.lot_units,
                 spec.tick_lot_units, spec.fee_account_id)


class PodNameTaken(Exception):
    """Another live matching pod registered the same name."""


class FencedOut(Exception):
    """Another pod owns the instrument now (or our sequence is stale)."""


@dataclass
class Ownership:
    instrument_id: int
    epoch: int


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._statements: Statements | None = None

    async def statements(self, conn: asyncpg.Connection) -> Statements:
        """The store's SQL (made at the first use, which reads the catalog)."""
        if self._statements is None:
            self._statements = await Statements.load(conn)
        return self._statements

    async def instruments(self) -> list[InstrumentSpec]:
        return await load_instruments(self.pool)

    async def take_ownership(self, lock_conn: asyncpg.Connection, instrument_id: int,
                             address: str, name: str) -> Ownership | None:
        """Try the instrument's advisory lock on ``lock_conn`` (held for as long as
        that session lives); on success bump the owner epoch, which fences out
        every earlier owner, record the owner (address, pod name; ownership_history)
        and end a pending hand-over."""
        got = await lock_conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", instrument_id)
        if not got:
            return None
        epoch = await lock_conn.fetchval(
            """WITH taken AS (
                   INSERT INTO instrument_state (instrument_id, owner_address, owner_epoch,
                                                 owner_name)
                   VALUES ($1, $2, 1, $3)
                   ON CONFLICT (instrument_id) DO UPDATE
                       SET owner_epoch = instrument_state.owner_epoch + 1,
                           owner_address = EXCLUDED.owner_address,
                           owner_name = EXCLUDED.owner_name, updated_at = now(),
                           handover_to = NULL, handover_until = NULL
                   RETURNING owner_epoch
               ), history AS (
                   INSERT INTO ownership_history (instrument_id, owner_epoch, owner_name,
                                                  owner_address)
                   SELECT $1, owner_epoch, $3, $2 FROM taken
               )
               SELECT owner_epoch FROM taken""",
            instrument_id, address, name,
        )
        return Ownership(instrument_id, epoch)

    # -- placement: the pod registry, hand-overs (placement.py) -----------------

    async def register_pod(self, lock_conn: asyncpg.Connection, name: str, address: str,
                           home: str, may_own: str) -> None:
        """Register this pod under ``name`` on its owner session (``lock_conn``), which
        makes it live while that session lives; ends a reservation it left. Raises
        PodNameTaken when another live session holds the name."""
        async with lock_conn.transaction():
            # One registration of a name at a time (a key space apart from the
            # instruments' locks, which have one bigint key).
            await lock_conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('matching_pods'), hashtext($1))", name)
            other = await lock_conn.fetchval(
                """SELECT backend_pid FROM live_matching_pods
                    WHERE name = $1 AND backend_pid <> pg_backend_pid()""", name)
            if other is not None:
                raise PodNameTaken(f"another live matching pod is named {name!r} "
                                   "(EXCHANGE_MATCHING_NAME must differ per pod)")
            await lock_conn.execute(
                """INSERT INTO matching_pods AS p (name, address, home, may_own, backend_pid,
                                                   backend_start)
                   SELECT $1, $2, $3, $4, pid, backend_start FROM pg_stat_activity
                    WHERE pid = pg_backend_pid()
                   ON CONFLICT (name) DO UPDATE
                       SET address = EXCLUDED.address, home = EXCLUDED.home,
                           may_own = EXCLUDED.may_own, backend_pid = EXCLUDED.backend_pid,
                           backend_start = EXCLUDED.backend_start, started_at = now(),
                           reserved_until = NULL""",
                name, address, home, may_own)
            await lock_conn.execute("SELECT pg_notify($1, $2)", CHANGES_CHANNEL, PODS_TABLE)

    async def placement(self) -> Placement:
        """The pods and the instruments' ownership columns, as they are now."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                 readonly=True):
            pods = await conn.fetch(
                """SELECT p.name, p.address, p.home, p.may_own, a.pid IS NOT NULL AS live,
                          a.pid IS NULL AND coalesce(p.reserved_until > now(), false)
                              AS reserved
                     FROM matching_pods p
                     LEFT JOIN pg_stat_activity a
                       ON a.pid = p.backend_pid AND a.backend_start = p.backend_start""")
            rows = await conn.fetch(
                """SELECT i.instrument_id, i.symbol, s.owner_name,
                          coalesce(s.owner_epoch, 0) AS owner_epoch, s.assigned_to,
                          CASE WHEN s.handover_until > now() THEN s.handover_to END
                              AS handover_to
                     FROM instruments i
                     LEFT JOIN instrument_state s ON s.instrument_id = i.instrument_id""")
        return Placement({r["name"]: Pod(**dict(r)) for r in pods},
                         {r["instrument_id"]: InstrumentPlacement(**dict(r)) for r in rows})

    async def begin_handover(self, lock_conn: asyncpg.Connection, instrument_id: int,
                             epoch: int, to: str) -> bool:
        """Mark the instrument as being handed over to pod ``to`` (only it may take the
        instrument for HANDOVER_TIMEOUT). False when this owner was fenced out already."""
        done = await lock_conn.fetchval(
            """UPDATE instrument_state
                  SET handover_to = $3, handover_until = now() + make_interval(secs => $4)
                WHERE instrument_id = $1 AND owner_epoch = $2 RETURNING 1""",
            instrument_id, epoch, to, HANDOVER_TIMEOUT)
        return done is not None

    async def release(self, lock_conn: asyncpg.Connection,
                      instrument_ids: Iterable[int] | None = None) -> None:
        """Unlock instruments (None: all) on the owner session, then wake the other pods
        (a notification on the changes channel), so that the one to take them does at once."""
        if instrument_ids is None:
            await lock_conn.execute("SELECT pg_advisory_unlock_all()")
        else:
            for instrument_id in instrument_ids:
                await lock_conn.execute("SELECT pg_advisory_unlock($1::bigint)", instrument_id)
        await lock_conn.execute("SELECT pg_notify($1, $2)", CHANGES_CHANNEL, PODS_TABLE)

    async def deregister(self, lock_conn: asyncpg.Connection, name: str,
                         grace: float) -> None:
        """A clean stop: this pod is not live from now on; with ``grace`` > 0 its home
        instruments are kept for its next incarnation for that many seconds."""
        await lock_conn.execute(
            """UPDATE matching_pods
                  SET backend_pid = NULL, backend_start = NULL,
                      reserved_until = CASE WHEN $2 > 0
                                            THEN now() + make_interval(secs => $2) END
                WHERE name = $1""", name, grace)

    async def instruments_without_owner(self) -> int:
        """How many instruments no session holds the ownership lock of (the lock's key
        is the instrument id: PostgreSQL shows a bigint key as two 32-bit halves)."""
        return await self.pool.fetchval(
            """SELECT count(*) FROM instruments i
                WHERE NOT EXISTS (
                    SELECT 1 FROM pg_locks l
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                       AND l.database = (SELECT oid FROM pg_database
                                          WHERE datname = current_database())
                       AND l.classid::bigint = (i.instrument_id::bigint >> 32)
                       AND l.objid::bigint = (i.instrument_id::bigint & 4294967295))""")

    async def still_owner(self, instrument_id: int, epoch: int) -> bool:
        current = await self.pool.fetchval(
            "SELECT owner_epoch FROM instrument_state WHERE instrument_id = $1", instrument_id)
        return current == epoch

    async def load_book(self, instrument_id: int, terms: Terms | None = None) -> OrderBook:
        """The book as committed: the latest snapshot, then the journal after it
        re-executed (see recovery.py), keeping money on ``terms`` (None: a book without
        money). Raises ReplayMismatch if they disagree."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                 readonly=True):
            last = await conn.fetchval(
                "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1",
                instrument_id) or 0
            snap = await conn.fetchrow(
                """SELECT sequence, data FROM book_snapshots
                    WHERE instrument_id = $1 AND sequence <= $2
                    ORDER BY sequence DESC LIMIT 1""", instrument_id, last)
            start = snap["sequence"] if snap else 0
            sql = await self.statements(conn)
            rows = await conn.fetch(sql.journal_after, instrument_id, start, last)
            # The last trade's price at the snapshot (whether a stop placed after it was
            # accepted depends on it), and at the end.
            last_price = await conn.fetchval(
                """SELECT price FROM trades WHERE instrument_id = $1 AND trade_id <= $2
                    ORDER BY trade_id DESC LIMIT 1""", instrument_id, make_id(instrument_id, last))
            snapshot_price = None if not start else last_price if start == last else \
                await conn.fetchval(
                    """SELECT price FROM trades WHERE instrument_id = $1 AND trade_id <= $2
                        ORDER BY trade_id DESC LIMIT 1""", instrument_id,
                    make_id(instrument_id, start))
        with collector_paused():
            _, orders, status = decode_snapshot(snap["data"]) if snap else (0, [], TRADING)
            book = OrderBook(instrument_id, last_sequence=start, terms=terms)
            book.snapshot_sequence = start
            book.status = status
            book.last_price = snapshot_price
            book.restore(orders)
            replay(book, sql.journal.from_rows(rows))
        book.last_price = last_price
        if book.sequence != last:
            raise ReplayMismatch(f"instrument {instrument_id}: journal ends at {book.sequence}, "
                                 f"committed sequence is {last}")
        return book

    async def write_snapshot(self, instrument_id: int, sequence: int, orders: int,
                             data: bytes, keep: int = 2) -> None:
        """Store a snapshot and drop all but the ``keep`` newest."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO book_snapshots (instrument_id, sequence, orders, data)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
                instrument_id, sequence, orders, data)
            await conn.execute(
                """DELETE FROM book_snapshots WHERE instrument_id = $1 AND sequence < (
                       SELECT min(sequence) FROM (
                           SELECT sequence FROM book_snapshots WHERE instrument_id = $1
                            ORDER BY sequence DESC LIMIT $2) newest)""", instrument_id, keep)

    async def commit(self, instrument_id: int, epoch: int, changes: Changes,
                     terms: Terms | None = None) -> Committed:
        """Write one batch atomically, fenced by epoch and sequence, in one statement
        (one round trip): every insert and update is a CTE that acts only when the fence
        matched, and one statement is atomic by itself. Raises FencedOut when it did
        not: then nothing was written. Returns how many of the order path's holds it took
        over (``changes.holds_used``) and each account's latest order update
        (``Committed``). ``terms``: the book's money terms (what an order
        holds after each of its updates follows from them: updates.py)."""
        if changes.last_sequence < changes.first_sequence and not changes.money[0]:
            return Committed(0, "")
        # A new order's id carries a sequence of the batch: a new row; the others are
        # resting orders that changed.
        first_id = make_id(instrument_id, changes.first_sequence)
        new = [o for o in changes.orders if o.order_id >= first_id]
        changed = [o for o in changes.orders if o.order_id < first_id]
        async with self.pool.acquire() as conn:
            before = None
            amended = needs_before(instrument_id, changes)
            if amended:
                before = {r["order_id"]: (r["price"], r["quantity"]) for r in await conn.fetch(
                    "SELECT order_id, price, quantity FROM orders WHERE order_id = ANY($1)",
                    amended)}
            updates = build(changes, terms, before)
            update_accounts, update_counts, update_places = accounts(updates)
            for attempt in (1, 2):
                sql = await self.statements(conn)
                try:
                    done = await conn.fetchrow(
                        sql.commit, instrument_id, epoch, changes.last_sequence,
                        changes.first_sequence - 1,
                        sql.journal.rows(changes.events, instrument_id=instrument_id,
                                         owner_epoch=epoch),
                        sql.orders.rows(new, instrument_id=instrument_id),
                        sql.orders.rows(changed, instrument_id=instrument_id),
                        sql.trades.rows(changes.trades, instrument_id=instrument_id),
                        *changes.money, *changes.holds_used, changes.reference_price,
                        update_accounts, update_counts,
                        sql.updates.rows(updates),
                        update_places)
                    break
                except asyncpg.DivisionByZeroError:
                    # The statement's guard: a hold a command of the batch brought is no
                    # longer there. Nothing was written; the loop answers the batch's
                    # callers UNAVAILABLE and reloads the book.
                    log.error("instrument %d: a hold the batch at sequence %d takes over is "
                              "gone; nothing committed", instrument_id,
                              changes.last_sequence)
                    raise
                except SCHEMA_CHANGED:
                    # A migration changed a table since the rows' shape was read (a
                    # column added while this pod runs): the statement wrote nothing;
                    # read the tables again and retry once.
                    if attempt == 2:
                        raise
                    self._statements = None
                    await conn.reload_schema_state()
        if not done["fenced"]:
            raise FencedOut(f"instrument {instrument_id}: epoch {epoch} no longer owns it")
        if done["settled"] != len(changes.money[0]):
            # A balance row the batch changes does not exist: the order path makes the
            # rows of both assets of every order it holds for, so this is a bug.
            log.error("instrument %d: %d of %d balance rows settled at sequence %d",
                      instrument_id, done["settled"], len(changes.money[0]),
                      changes.last_sequence)
        return Committed(done["holds_used"], done["latest"] or "")
