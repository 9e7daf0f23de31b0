"""The engine's records as SQL: column lists, ``unnest`` arrays and typed casts, all
generated from a record's fields.

A record (``OrderRow``, ``Trade``, ``JournalEvent``) is a class whose constructor's
parameters are its fields, in order; each field is the column of the same name, except
that a field ``x_ns`` (integer nanoseconds since the epoch) is the ``timestamptz``
column ``x_at``. The PostgreSQL type of each column is read from the database's catalog
(``Table.load``), so the types are written once, in the migrations.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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


def ns_of(value: dt.datetime) -> int:
    """A timestamptz to nanoseconds since the epoch."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass(frozen=True)
class Table:
    """A table written from (or read into) one kind of record."""

    name: str
    record: type
    fields: tuple[str, ...]
    columns: tuple[str, ...]
    # The PostgreSQL type of each column, as the catalog names it (e.g. "smallint").
    types: tuple[str, ...]

    @classmethod
    async def load(cls, conn: asyncpg.Connection, name: str, record: type) -> Table:
        """The table ``name`` for ``record``, with its column types from the catalog.
        Raises LookupError if a field has no column."""
        found = dict(await conn.fetch(
            """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
                WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped""", name))
        names = fields(record)
        columns = tuple(column(f) for f in names)
        missing = [c for c in columns if c not in found]
        if missing:
            raise LookupError(f"{record.__name__}: table {name} has no column {missing}")
        return cls(name, record, names, columns, tuple(found[c] for c in columns))

    def column_list(self, prefix: str = "") -> str:
        """``a, b, c`` (each with ``prefix``, e.g. "t.")."""
        return ", ".join(prefix + c for c in self.columns)

    def unnest(self, first: int, alias: str) -> str:
        """``unnest($first::type[], ...) AS alias(columns)``: the rows of the arrays
        ``arrays()`` makes, passed as parameters ``first`` on."""
        arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(self.types))
        return f"unnest({arrays}) AS {alias}({self.column_list()})"

    def arrays(self, records: Sequence[Any]) -> list[list[Any]]:
        """One list per column of the values of ``records`` (times as timestamptz)."""
        out = []
        for f in self.fields:
            values = list(map(attrgetter(f), records))
            out.append(list(map(ts, values)) if f.endswith(TIME_SUFFIX) else values)
        return out

    def from_rows(self, rows: Iterable[Sequence[Any]]) -> list[Any]:
        """Records from rows that SELECT ``column_list()``."""
        convert: list[Callable[[Any], Any] | None] = [
            ns_of if f.endswith(TIME_SUFFIX) else None for f in self.fields]
        make = self.record
        return [make(*[v if c is None else c(v) for c, v in zip(convert, row, strict=True)])
                for row in rows]
