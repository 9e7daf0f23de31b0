"""The PostgreSQL a database benchmark runs on: ``EXCHANGE_DATABASE_URL`` when it is set,
else an embedded server of its own in a new temporary directory, stopped afterwards."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from exchange_dev.embedded import EmbeddedPostgres


@contextmanager
def database_url(prefix: str, name: str = "postgres") -> Iterator[str]:
    """The URL to use; on the embedded server, of database ``name`` (created if needed).
    A URL from the environment is used as it is."""
    url = os.environ.get("EXCHANGE_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix=prefix)) / "pg")
    server.start()
    try:
        yield server.ensure_database(name)
    finally:
        server.stop()


@asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty database ``<prefix>_<random>`` on the server of ``server_url`` for one
    benchmark: its URL inside, dropped afterwards (connections still open are ended)."""
    parts = urlsplit(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(parts._replace(path="/" + name))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
