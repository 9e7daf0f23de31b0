"""The engine's records as SQL: column lists and rows, generated from a record's fields.

A record (``OrderRow``, ``Trade``, ``JournalEvent``) is a class whose constructor's
parameters are its fields, in order (with literal defaults, if any: compiled classes
give their signature from them); each field is the column of the same name, except that
a field ``x_ns`` (integer nanoseconds since the epoch) is the ``timestamptz`` column
``x_at`` (a nullable one holds NULL for 0: "none", e.g. an order's ``expire_at``). The
columns and their types are the table's own (read from the catalog by
``Table.load``): they are written once, in the migrations.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Any

import asyncpg

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
TIME_SUFFIX, TIME_COLUMN_SUFFIX = "_ns", "_at"


def fields(record: type) -> tuple[str, ...]:
    """A record's fields: the parameters of its constructor, in order."""
    return tuple(inspect.signature(record).parameters)


def column(field: str) -> str:
    """The column a field is stored in."""
    if field.endswith(TIME_SUFFIX):
        return field.removesuffix(TIME_SUFFIX) + TIME_COLUMN_SUFFIX
    return field


@functools.lru_cache(maxsize=64)
def ts(ns: int) -> dt.datetime:
    """Nanoseconds to a timestamptz (PostgreSQL keeps microseconds; cached: the rows
    of a batch share a few times)."""
    return EPOCH + dt.timedelta(microseconds=ns // 1000)


def ts_or_null(ns: int) -> dt.datetime | None:
    """``ts`` for a nullable column: 0 (none) is NULL."""
    return ts(ns) if ns else None


@functools.lru_cache(maxsize=64)
def ns_of(value: dt.datetime | None) -> int:
    """A timestamptz to nanoseconds since the epoch, NULL to 0 (cached: the rows of a
    batch share a few times)."""
    if value is None:
        return 0
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass(frozen=True)
class Table:
    """A table written from (or read into) one kind of record.

    Rows go to PostgreSQL as one array of the table's own row type per statement
    (``unnest($n::table[])``): asyncpg then encodes each value with its column's codec
    directly, where an array per column would cost it a Python-level type check per
    value. The caller adds the columns that are not the record's (``added``); any other
    column of the table (one a migration added for a later version of the record) is
    left out of ``written`` and takes its default."""

    name: str
    record: type
    fields: tuple[str, ...]
    # The record's columns, in the record's order.
    columns: tuple[str, ...]
    # Every column of the table, in the table's order, and those a row sets.
    table_columns: tuple[str, ...]
    written: tuple[str, ...]
    # The record's time columns that may be NULL (0 in the record).
    nullable: frozenset[str] = frozenset()

    @classmethod
    async def load(cls, conn: asyncpg.Connection, name: str, record: type,
                   added: tuple[str, ...] = ()) -> Table:
        """The table ``name`` for ``record``, whose other columns are ``added`` by the
        caller, with its columns from the catalog. Raises LookupError if a field or an
        added column is not in the table."""
        catalog = await conn.fetch(
            """SELECT attname, attnotnull FROM pg_attribute
                WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
                ORDER BY attnum""", name)
        table_columns = tuple(r[0] for r in catalog)
        names = fields(record)
        columns = tuple(column(f) for f in names)
        missing = sorted(set(columns + added) - set(table_columns))
        if missing:
            raise LookupError(f"table {name} has no column {missing} ({record.__name__})")
        written = tuple(c for c in table_columns if c in columns or c in added)
        times = {column(f) for f in names if f.endswith(TIME_SUFFIX)}
        nullable = frozenset(r[0] for r in catalog if r[0] in times and not r[1])
        return cls(name, record, names, columns, table_columns, written, nullable)

    def column_list(self, prefix: str = "", columns: Iterable[str] | None = None) -> str:
        """``a, b, c`` (each with ``prefix``, e.g. "t."), the record's columns by
        default."""
        return ", ".join(prefix + c for c in (self.columns if columns is None else columns))

    def rows(self, records: Sequence[Any], **added: Any) -> list[tuple[Any, ...]]:
        """The table's rows (tuples of its columns in its order) of ``records``, with
        the ``added`` columns' values (None for the columns not written); times as
        timestamptz."""
        n = len(records)
        by_column: dict[str, Iterable[Any]] = {c: repeat(None, n) for c in self.table_columns}
        by_column.update((name, repeat(value, n)) for name, value in added.items())
        for f, c in zip(self.fields, self.columns, strict=True):
            values = map(attrgetter(f), records)
            if f.endswith(TIME_SUFFIX):
                by_column[c] = map(ts_or_null if c in self.nullable else ts, values)
            else:
                by_column[c] = values
        return list(zip(*(by_column[c] for c in self.table_columns), strict=True))

    def from_rows(self, rows: Iterable[Sequence[Any]]) -> list[Any]:
        """Records from rows that SELECT ``column_list()``."""
        make = self.record
        times = [i for i, f in enumerate(self.fields) if f.endswith(TIME_SUFFIX)]
        out = []
        for row in rows:
            values = list(row)
            for i in times:
                values[i] = ns_of(values[i])
            out.append(make(*values))
        return out
