"""The embedded servers, the dev stack and the shared fixtures themselves."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as aioredis

from exchange_common.instruments import FEE_ACCOUNT
from exchange_dev import cli
from exchange_dev.cli import load_dev_keys
from exchange_dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from exchange_dev.settings import DevSettings
from exchange_dev.stack import Stack, health_check

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A directory for a server's data. Not pytest's ``tmp_path``: when we run
    as root, PostgreSQL runs as another user who must traverse the parents,
    and every pytest session makes ``/tmp/pytest-of-<user>`` private again."""
    path = Path(tempfile.mkdtemp(prefix="exchange-emb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def fetch_one(url: str, sql: str):
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------


async def test_postgres_survives_stop_and_kill_on_the_same_port(server_dir: Path) -> None:
    pg = EmbeddedPostgres(server_dir / "pg")
    started = time.monotonic()
    pg.start()
    try:
        first_start = time.monotonic() - started
        port, pid = pg.port, pg.pid
        assert pid is not None and pg.is_running()
        assert pg.url() == f"postgresql://postgres@127.0.0.1:{port}/postgres"
        assert (server_dir / "pg" / "PG_VERSION").exists()
        assert first_start < 30

        url = pg.ensure_database("keep")
        assert pg.ensure_database("keep") == url  # idempotent
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SHOW fsync") == "on"
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
            assert await conn.fetchval("SHOW max_connections") == "200"
            assert await conn.fetchval("SHOW server_encoding") == "UTF8"
            assert await conn.fetchval("SELECT current_user") == "postgres"
            await conn.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('before stop')")
        finally:
            await conn.close()

        pg.stop()
        assert pg.pid is None and not pg.is_running()
        with pytest.raises((OSError, asyncpg.PostgresError)):
            await asyncpg.connect(url, timeout=2)

        pg.start()
        assert pg.port == port and pg.pid not in (None, pid)
        assert await fetch_one(url, "SELECT string_agg(v, ',') FROM t") == "before stop"

        conn = await asyncpg.connect(url)
        await conn.execute("INSERT INTO t VALUES ('before kill')")
        killed = pg.pid
        assert killed is not None
        pg.kill()
        assert pg.pid is None and gone(killed, 1)
        with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            await conn.fetchval("SELECT 1")
        conn.terminate()

        pg.start()  # crash recovery
        assert pg.port == port
        got = await fetch_one(url, "SELECT string_agg(v, ',' ORDER BY v) FROM t")
        assert got == "before kill,before stop"
        assert "postgres.log" in os.listdir(server_dir / "pg")
    finally:
        pg.stop()


async def test_postgres_stops_a_leftover_postmaster(server_dir: Path) -> None:
    """A postmaster still running on the data directory (say its parent
    crashed) is stopped, and the new one takes its place."""
    first = EmbeddedPostgres(server_dir / "pg")
    first.start()
    second = EmbeddedPostgres(server_dir / "pg", first.port)
    try:
        old_pid = first.pid
        second.start()
        assert second.pid != old_pid and first.pid is None
        assert await fetch_one(second.url(), "SELECT 1") == 1
    finally:
        second.stop()
        first.stop()


async def test_postgres_ignores_a_stale_pid_file(server_dir: Path) -> None:
    pg = EmbeddedPostgres(server_dir / "pg")
    pg.start()
    pg.kill()
    # The pid in the file now names a live process that is not PostgreSQL.
    pid_file = server_dir / "pg" / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    lines[0] = str(os.getpid())
    pid_file.write_text("\n".join(lines) + "\n")
    try:
        pg.start()
        assert await fetch_one(pg.url(), "SELECT 1") == 1
    finally:
        pg.stop()


def test_postgres_refuses_a_foreign_directory(server_dir: Path) -> None:
    (server_dir / "pg").mkdir()
    (server_dir / "pg" / "something").write_text("not a database")
    with pytest.raises(RuntimeError, match="neither empty nor"):
        EmbeddedPostgres(server_dir / "pg").start()


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


async def test_redis_survives_stop_and_kill_on_the_same_port(server_dir: Path) -> None:
    r = EmbeddedRedis(server_dir / "redis")
    r.start()
    try:
        port, pid = r.port, r.pid
        assert pid is not None and r.url(3) == f"redis://127.0.0.1:{port}/3"
        client = aioredis.Redis.from_url(r.url())
        await client.set("a", "1")
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        assert await client.config_get("save") == {"save": ""}
        await client.aclose()

        r.stop()
        assert r.pid is None
        r.start()
        assert r.port == port and r.pid != pid
        client = aioredis.Redis.from_url(r.url())
        assert await client.get("a") == b"1"
        await client.set("b", "2")
        await client.aclose()

        killed = r.pid
        assert killed is not None
        r.kill()
        assert r.pid is None and gone(killed, 1)
        r.start()
        client = aioredis.Redis.from_url(r.url())
        assert await client.mget("a", "b") == [b"1", b"2"]
        await client.aclose()
        assert (server_dir / "redis" / "redis.log").exists()
    finally:
        r.stop()


# ---------------------------------------------------------------------------
# Children die with their parent
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_servers_stop_when_their_parent_is_killed(server_dir: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        from exchange_dev.embedded import EmbeddedPostgres, EmbeddedRedis
        pg = EmbeddedPostgres({str(server_dir / "pg")!r}); pg.start()
        r = EmbeddedRedis({str(server_dir / "redis")!r}); r.start()
        print(pg.pid, r.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pg_pid, redis_pid = map(int, parent.stdout.readline().split())
    finally:
        parent.kill()
        parent.wait()
    assert gone(pg_pid), "postgres outlived its parent"
    assert gone(redis_pid), "redis-server outlived its parent"
    # A clean (fast) shutdown, not a crash.
    assert "database system is shut down" in (server_dir / "pg" / "postgres.log").read_text()


# ---------------------------------------------------------------------------
# The shared fixtures
# ---------------------------------------------------------------------------

# The accounts of users: all but the fee account, which migration 0004 makes.
USER_ACCOUNTS = f"SELECT count(*) FROM accounts WHERE name <> '{FEE_ACCOUNT}'"


async def test_database_fixture_is_migrated_and_fresh(database_url: str, redis_url: str) -> None:
    assert await fetch_one(database_url, "SELECT count(*) FROM instruments") >= 2
    assert await fetch_one(database_url, USER_ACCOUNTS) == 0
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0
        await client.set("left-over", "x")  # the next test must not see it
    finally:
        await client.aclose()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO accounts (name) VALUES ('left-over')")
    finally:
        await conn.close()


async def test_database_fixture_is_fresh_again(database_url: str, redis_url: str) -> None:
    assert await fetch_one(database_url, USER_ACCOUNTS) == 0
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0
    finally:
        await client.aclose()


async def test_session_servers_can_be_stopped_and_restarted(
        pg_server: EmbeddedPostgres | None, redis_server: EmbeddedRedis | None,
        database_url: str, redis_url: str) -> None:
    if pg_server is None or redis_server is None:
        pytest.skip("external servers (EXCHANGE_TEST_*): nothing to stop")
    pg_server.stop()
    redis_server.kill()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(database_url, timeout=2)
    pg_server.start()
    redis_server.start()
    assert await fetch_one(database_url, "SELECT count(*) FROM instruments") >= 2
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------
# The dev stack
# ---------------------------------------------------------------------------


def test_dev_keys_are_made_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXCHANGE_DEV_API_KEYS", raising=False)
    monkeypatch.setenv("EXCHANGE_DATA_DIR", str(tmp_path))
    keys, source = load_dev_keys(DevSettings())
    assert set(keys) == {"alice", "bob"} and len(set(keys.values())) == 2
    path = tmp_path / cli.KEYS_FILE
    assert source == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_dev_keys(DevSettings())[0] == keys

    monkeypatch.setenv("EXCHANGE_DEV_API_KEYS", "alice=K1, bob=K2")
    assert load_dev_keys(DevSettings()) == ({"alice": "K1", "bob": "K2"},
                                            "EXCHANGE_DEV_API_KEYS")

    monkeypatch.delenv("EXCHANGE_DEV_API_KEYS")
    path.write_text("alice\n")
    with pytest.raises(ValueError, match=f"{path}: expected name=key, got 'alice'"):
        load_dev_keys(DevSettings())


@pytest.mark.e2e
async def test_stack_fixture_runs_the_services(stack: Stack) -> None:
    assert set(stack.processes) == {"matching", "order", "marketdata"}
    assert set(stack.keys) == {"alice", "bob"}
    assert set(stack.account_ids) == {"alice", "bob"}
    for addr in (stack.order_addr, stack.marketdata_addr, stack.matching_addr):
        assert await health_check(addr) == 1  # SERVING
    assert await fetch_one(stack.database_url, "SELECT count(*) FROM api_keys") == 2

    # A crash is noticed, and the service can be started again.
    stack.kill_service("marketdata")
    name, rc = await asyncio.wait_for(stack.wait_for_exit(), 5)
    assert (name, rc) == ("marketdata", -signal.SIGKILL)
    await stack.start_service("marketdata")
    assert await health_check(stack.marketdata_addr) == 1
    assert stack.exited() == {}


def _exchange_dev_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EXCHANGE_") or k == "EXCHANGE_LOG_LEVEL"}
    env.update({
        "EXCHANGE_DATA_DIR": str(data_dir),
        "EXCHANGE_EMBEDDED_PG_PORT": str(free_port()),
        "EXCHANGE_EMBEDDED_REDIS_PORT": str(free_port()),
        "EXCHANGE_ORDER_LISTEN": f"127.0.0.1:{free_port()}",
        "EXCHANGE_MATCHING_LISTEN": f"127.0.0.1:{free_port()}",
        "EXCHANGE_MARKETDATA_LISTEN": f"127.0.0.1:{free_port()}",
    })
    return env


def _run_exchange_dev_until_banner(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    out = open(log, "w")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen([sys.executable, "-m", "exchange_dev"], env=env,
                            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    out.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = log.read_text()
        if "Place a first order" in text and text.rstrip().endswith("=" * 78):
            return proc, text
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    pytest.fail(f"exchange-dev did not come up:\n{log.read_text()[-5000:]}")


@pytest.mark.e2e
def test_exchange_dev_runs_stops_and_keeps_its_keys(tmp_path: Path, server_dir: Path) -> None:
    env = _exchange_dev_env(server_dir)

    # First run: Ctrl-C stops everything in order and exits 0.
    proc, text = _run_exchange_dev_until_banner(env, tmp_path / "run1.log")
    keys = (server_dir / cli.KEYS_FILE).read_text()
    alice = keys.split("alice=")[1].split()[0]
    assert f"EXCHANGE_API_KEY={alice} .venv/bin/exchange order create BTC-USD buy 0.01 " \
           "--price 70000" in text
    assert f"-H 'x-api-key: {alice}' -plaintext" in text
    assert env["EXCHANGE_ORDER_LISTEN"] in text
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, (tmp_path / "run1.log").read_text()[-3000:]
    assert all(gone(c.pid, 5) for c in children), "a child outlived exchange-dev"

    # Second run: same data, same keys; a service that dies takes it all down.
    proc, text = _run_exchange_dev_until_banner(env, tmp_path / "run2.log")
    assert alice in text
    services = {
        next(a for a in c.cmdline() if a.endswith("_service")): c
        for c in psutil.Process(proc.pid).children()
        if any(a.endswith("_service") for a in c.cmdline())
    }
    assert set(services) == {"order_service", "matching_service", "marketdata_service"}
    children = psutil.Process(proc.pid).children(recursive=True)
    services["order_service"].kill()
    assert proc.wait(60) != 0
    assert "order exited unexpectedly" in (tmp_path / "run2.log").read_text()
    assert all(gone(c.pid, 5) for c in children), "a child outlived exchange-dev"
