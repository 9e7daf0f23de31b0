"""The PostgreSQL a database benchmark runs on: ``EXCHANGE_DATABASE_URL`` when it is set,
else an embedded server of its own in a new temporary directory, stopped afterwards."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
