"""The matching pod's PostgreSQL storage: ownership, book recovery, group commit.

Every batch is committed in one transaction that first advances
``instrument_state.last_sequence`` under a fence: the row must still carry
this pod's ``owner_epoch`` and the sequence the batch follows. An old owner
that was paused while another took over therefore cannot write anything.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import asyncpg

from exchange_common.ids import make_id
from exchange_common.instruments import InstrumentSpec, load_instruments
from matching_service.engine import TRADING, Changes, OrderBook
from matching_service.recovery import ReplayMismatch, decode_snapshot, replay

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

ORDER_COLUMNS = (
    "order_id", "instrument_id", "account_id", "client_order_id", "side", "order_type",
    "time_in_force", "post_only", "price", "quantity", "filled", "filled_notional", "state",
    "reason", "priority", "last_sequence", "created_at", "updated_at",
)
TRADE_COLUMNS = (
    "trade_id", "instrument_id", "sequence", "price", "quantity", "taker_side", "maker_order_id",
    "taker_order_id", "maker_account_id", "taker_account_id", "created_at",
)
JOURNAL_COLUMNS = (
    "instrument_id", "sequence", "kind", "order_id", "other_order_id", "price", "quantity",
    "account_id", "side", "order_type", "time_in_force", "post_only", "client_order_id",
    "owner_epoch", "created_at",
)
# Batches with at most this many events are committed as one statement.
ONE_STATEMENT_EVENTS = 400

ONE_STATEMENT_COMMIT = """
WITH fence AS (
    UPDATE instrument_state SET last_sequence = $3, updated_at = now()
     WHERE instrument_id = $1 AND owner_epoch = $2 AND last_sequence = $4
    RETURNING 1
), journal_rows AS (
    INSERT INTO journal (instrument_id, sequence, kind, order_id, other_order_id, price,
                         quantity, account_id, side, order_type, time_in_force, post_only,
                         client_order_id, owner_epoch, created_at)
    SELECT $1, j.sequence, j.kind, j.order_id, j.other_order_id, j.price, j.quantity,
           j.account_id, j.side, j.order_type, j.time_in_force, j.post_only,
           j.client_order_id, $2, j.created_at
      FROM unnest($5::bigint[], $6::smallint[], $7::bigint[], $8::bigint[], $9::bigint[],
                  $10::bigint[], $11::bigint[], $12::smallint[], $13::smallint[],
                  $14::smallint[], $15::boolean[], $16::text[], $17::timestamptz[])
           AS j(sequence, kind, order_id, other_order_id, price, quantity, account_id, side,
                order_type, time_in_force, post_only, client_order_id, created_at)
     WHERE EXISTS (SELECT 1 FROM fence)
), new_orders AS (
    INSERT INTO orders (order_id, instrument_id, account_id, client_order_id, side,
                        order_type, time_in_force, post_only, price, quantity, filled,
                        filled_notional, state, reason, priority, last_sequence, created_at,
                        updated_at)
    SELECT n.order_id, $1, n.account_id, n.client_order_id, n.side, n.order_type,
           n.time_in_force, n.post_only, n.price, n.quantity, n.filled, n.filled_notional,
           n.state, n.reason, n.priority, n.last_sequence, n.created_at, n.updated_at
      FROM unnest($18::bigint[], $19::bigint[], $20::text[], $21::smallint[], $22::smallint[],
                  $23::smallint[], $24::boolean[], $25::bigint[], $26::bigint[],
                  $27::bigint[], $28::numeric[], $29::smallint[], $30::text[], $31::bigint[],
                  $32::bigint[], $33::timestamptz[], $34::timestamptz[])
           AS n(order_id, account_id, client_order_id, side, order_type, time_in_force,
                post_only, price, quantity, filled, filled_notional, state, reason, priority,
                last_sequence, created_at, updated_at)
     WHERE EXISTS (SELECT 1 FROM fence)
), changed_orders AS (
    UPDATE orders o SET price = u.price, quantity = u.quantity, filled = u.filled,
           filled_notional = u.filled_notional, state = u.state, reason = u.reason,
           priority = u.priority, last_sequence = u.last_sequence, updated_at = u.updated_at
      FROM unnest($35::bigint[], $36::bigint[], $37::bigint[], $38::bigint[], $39::numeric[],
                  $40::smallint[], $41::text[], $42::bigint[], $43::bigint[],
                  $44::timestamptz[])
           AS u(order_id, price, quantity, filled, filled_notional, state, reason, priority,
                last_sequence, updated_at)
     WHERE o.order_id = u.order_id AND EXISTS (SELECT 1 FROM fence)
), trade_rows AS (
    INSERT INTO trades (trade_id, instrument_id, sequence, price, quantity, taker_side,
                        maker_order_id, taker_order_id, maker_account_id, taker_account_id,
                        created_at)
    SELECT t.trade_id, $1, t.sequence, t.price, t.quantity, t.taker_side, t.maker_order_id,
           t.taker_order_id, t.maker_account_id, t.taker_account_id, t.created_at
      FROM unnest($45::bigint[], $46::bigint[], $47::bigint[], $48::bigint[],
                  $49::smallint[], $50::bigint[], $51::bigint[], $52::bigint[],
                  $53::bigint[], $54::timestamptz[])
           AS t(trade_id, sequence, price, quantity, taker_side, maker_order_id,
                taker_order_id, maker_account_id, taker_account_id, created_at)
     WHERE EXISTS (SELECT 1 FROM fence)
)
SELECT count(*) FROM fence
"""

UPDATE_ORDERS = """
    UPDATE orders o SET price = u.price, quantity = u.quantity, filled = u.filled,
           filled_notional = u.filled_notional, state = u.state, reason = u.reason,
           priority = u.priority, last_sequence = u.last_sequence, updated_at = u.updated_at
      FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::numeric[],
                  $6::smallint[], $7::text[], $8::bigint[], $9::bigint[], $10::timestamptz[])
           AS u(order_id, price, quantity, filled, filled_notional, state, reason, priority,
                last_sequence, updated_at)
     WHERE o.order_id = u.order_id
"""


class FencedOut(Exception):
    """Another pod owns the instrument now (or our sequence is stale)."""


@functools.lru_cache(maxsize=64)
def ts(ns: int) -> dt.datetime:
    """Nanoseconds to a datetime (cached: the rows of a batch share a few times)."""
    return EPOCH + dt.timedelta(microseconds=ns // 1000)


def ns_of(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass
class Ownership:
    instrument_id: int
    epoch: int


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def instruments(self) -> list[InstrumentSpec]:
        return await load_instruments(self.pool)

    async def take_ownership(self, lock_conn: asyncpg.Connection, instrument_id: int,
                             address: str) -> Ownership | None:
        """Try the instrument's advisory lock on ``lock_conn`` (held for as long as
        that session lives); on success bump the owner epoch, which fences out
        every earlier owner."""
        got = await lock_conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", instrument_id)
        if not got:
            return None
        epoch = await lock_conn.fetchval(
            """INSERT INTO instrument_state (instrument_id, owner_address, owner_epoch)
               VALUES ($1, $2, 1)
               ON CONFLICT (instrument_id) DO UPDATE
                   SET owner_epoch = instrument_state.owner_epoch + 1,
                       owner_address = EXCLUDED.owner_address, updated_at = now()
               RETURNING owner_epoch""",
            instrument_id, address,
        )
        return Ownership(instrument_id, epoch)

    async def still_owner(self, instrument_id: int, epoch: int) -> bool:
        current = await self.pool.fetchval(
            "SELECT owner_epoch FROM instrument_state WHERE instrument_id = $1", instrument_id)
        return current == epoch

    async def load_book(self, instrument_id: int) -> OrderBook:
        """The book as committed: the latest snapshot, then the journal after it
        re-executed (see recovery.py). Raises ReplayMismatch if they disagree."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                 readonly=True):
            last = await conn.fetchval(
                "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1",
                instrument_id) or 0
            snap = await conn.fetchrow(
                """SELECT sequence, data FROM book_snapshots
                    WHERE instrument_id = $1 AND sequence <= $2
                    ORDER BY sequence DESC LIMIT 1""", instrument_id, last)
            start, orders, status = (decode_snapshot(snap["data"]) if snap
                                     else (0, [], TRADING))
            rows = await conn.fetch(
                """SELECT sequence, kind, order_id, other_order_id, price, quantity, account_id,
                          side, order_type, time_in_force, post_only, client_order_id,
                          created_at
                     FROM journal WHERE instrument_id = $1 AND sequence > $2 AND sequence <= $3
                    ORDER BY sequence""", instrument_id, start, last)
            last_price = await conn.fetchval(
                """SELECT price FROM trades WHERE instrument_id = $1 AND trade_id <= $2
                    ORDER BY trade_id DESC LIMIT 1""", instrument_id, make_id(instrument_id, last))
        book = OrderBook(instrument_id, last_sequence=start)
        book.snapshot_sequence = start
        book.status = status
        book.restore(orders)
        replay(book, ((*r[:12], ns_of(r[12])) for r in rows))
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

    async def commit(self, instrument_id: int, epoch: int, changes: Changes) -> None:
        """Write one batch atomically, fenced by epoch and sequence: a small batch as
        one statement (one round trip), a large one with COPY in a transaction."""
        if changes.last_sequence < changes.first_sequence:
            return
        if len(changes.events) <= ONE_STATEMENT_EVENTS:
            await self._commit_one_statement(instrument_id, epoch, changes)
            return
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                """UPDATE instrument_state SET last_sequence = $3, updated_at = now()
                   WHERE instrument_id = $1 AND owner_epoch = $2 AND last_sequence = $4""",
                instrument_id, epoch, changes.last_sequence, changes.first_sequence - 1,
            )
            if status != "UPDATE 1":
                raise FencedOut(f"instrument {instrument_id}: epoch {epoch} no longer owns it")
            await conn.copy_records_to_table(
                "journal", columns=JOURNAL_COLUMNS,
                records=_journal_records(instrument_id, epoch, changes),
            )
            new, old = _split_orders(instrument_id, changes)
            if new:
                await conn.copy_records_to_table(
                    "orders", columns=ORDER_COLUMNS,
                    records=[(o[0], instrument_id, *o[1:15], ts(o[15]), ts(o[16]))
                             for o in new])
            if old:
                columns = list(zip(*old, strict=True))
                await conn.execute(
                    UPDATE_ORDERS, columns[0], columns[7], columns[8], columns[9], columns[10],
                    columns[11], columns[12], columns[13], columns[14],
                    [ts(ns) for ns in columns[16]])
            if changes.trades:
                await conn.copy_records_to_table(
                    "trades", columns=TRADE_COLUMNS,
                    records=[(t[0], instrument_id, t[1], t[2], t[3], t[4], t[5], t[6], t[7],
                              t[8], ts(t[9])) for t in changes.trades],
                )

    async def _commit_one_statement(self, instrument_id: int, epoch: int,
                                    changes: Changes) -> None:
        """The whole batch in one statement: every insert and update is a CTE that only
        acts when the fence matched, and one statement is atomic by itself."""
        ev = list(zip(*changes.events, strict=True)) or [()] * 13
        new, old = _split_orders(instrument_id, changes)
        no = list(zip(*new, strict=True)) or [()] * 17
        oo = list(zip(*old, strict=True)) or [()] * 17
        tr = list(zip(*(t[:10] for t in changes.trades), strict=True)) or [()] * 10
        fenced = await self.pool.fetchval(
            ONE_STATEMENT_COMMIT, instrument_id, epoch, changes.last_sequence,
            changes.first_sequence - 1,
            # journal
            *ev[:12], [ts(t) for t in ev[12]],
            # new orders
            *no[:15], [ts(t) for t in no[15]], [ts(t) for t in no[16]],
            # changed resting orders
            oo[0], oo[7], oo[8], oo[9], oo[10], oo[11], oo[12], oo[13], oo[14],
            [ts(t) for t in oo[16]],
            # trades
            *tr[:9], [ts(t) for t in tr[9]],
        )
        if not fenced:
            raise FencedOut(f"instrument {instrument_id}: epoch {epoch} no longer owns it")


def _split_orders(instrument_id: int, changes: Changes) -> tuple[list[tuple], list[tuple]]:
    """(orders created in this batch, resting orders that changed): a new order's id
    carries a sequence of the batch, so it is a new row; the others only change state."""
    first_id = make_id(instrument_id, changes.first_sequence)
    new = [o for o in changes.orders if o[0] >= first_id]
    old = [o for o in changes.orders if o[0] < first_id]
    return new, old


def _journal_records(instrument_id: int, epoch: int, changes: Changes) -> list[tuple]:
    return [(instrument_id, *e[:12], epoch, ts(e[12])) for e in changes.events]
