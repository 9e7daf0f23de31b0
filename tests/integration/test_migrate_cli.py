"""`exchange-migrate` as a process: migrations, seed data and the bootstrap admin key."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg

from exchange_common.keys import key_hash

MIGRATE = [sys.executable, "-c", "from exchange_common.db import migrate_main; migrate_main()"]


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *MIGRATE, *args, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_bootstrap_admin_key_from_env_or_file(database_url: str, tmp_path: Path) -> None:
    key = "bootstrap-admin-key-0123456789"
    code, out = await run("--database-url", database_url,
                          env={"EXCHANGE_BOOTSTRAP_ADMIN_KEY": key})
    assert code == 0, out
    assert "admin key exa_" in out and "nothing (up to date)" in out
    # Again from a file (the chart mounts it from a Secret): nothing changes.
    path = tmp_path / "admin-key"
    path.write_text(key + "\n")
    code, out = await run("--database-url", database_url, "--bootstrap-admin-key-file",
                          str(path))
    assert code == 0, out
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT name, prefix FROM admin_keys WHERE key_sha256 = $1",
                                key_hash(key))
    finally:
        await conn.close()
    assert [r["name"] for r in rows] == ["bootstrap"]
    assert rows[0]["prefix"] in out

    code, out = await run("--database-url", database_url,
                          env={"EXCHANGE_BOOTSTRAP_ADMIN_KEY": "short"})
    assert code == 2 and "EXCHANGE_BOOTSTRAP_ADMIN_KEY" in out
    assert "at least 16 characters" in out and "Traceback" not in out
    path.write_text("short\n")
    code, out = await run("--database-url", database_url, "--bootstrap-admin-key-file",
                          str(path))
    assert code == 2 and f"{path}: the bootstrap admin key must have at least 16" in out
