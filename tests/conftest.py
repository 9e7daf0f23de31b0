"""Shared fixtures: real PostgreSQL and Redis, a fresh database per test, the
services as real processes.

Servers: ``EXCHANGE_TEST_DATABASE_URL`` (a server URL; databases are created
on it) and ``EXCHANGE_TEST_REDIS_URL`` when set, otherwise an embedded
PostgreSQL and Redis started once per session in a temporary directory
(``exchange_dev.embedded``). Nothing is started unless a test asks for it.

- ``pg_server`` / ``redis_server`` (session): the embedded servers, or None
  with external URLs. Outage tests stop/kill and start them; the
  function-scoped fixtures restart a server that a test left down.
- ``pg_admin_url`` / ``redis_server_url`` (session): where the servers are.
- ``template_database`` (session): a database with every migration applied
  and the instruments seeded, built once.
- ``database_url``: a fresh database cloned from the template
  (``CREATE DATABASE ... TEMPLATE``), dropped after the test.
- ``redis_url``: a Redis database emptied (FLUSHDB) before the test.
- ``module_database_url`` / ``module_redis_url``: the same for all the tests of
  one module, e.g. for a stack they share (a module-scoped fixture of their own).
- ``stack``: the three services as real processes on the test's database
  and Redis, on free ports, with the accounts ``alice`` and ``bob``
  (keys in ``TEST_KEYS``); see ``exchange_dev.stack.Stack``.
- ``helm`` (session): ``helm(*args, check=True)`` runs helm (tests/helm_tool.py: which
  binary, in a home of its own); the test is skipped when no helm can be had.

Tests under ``tests/integration`` get the ``integration`` marker and those
under ``tests/e2e`` the ``e2e`` marker automatically, as does any test that
uses these fixtures. Tests under ``tests/image`` get the ``image`` marker and are
skipped unless ``EXCHANGE_IMAGE_CHECK=1`` (they build and run the container image).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from helm_tool import Helm, find_helm, runner

from exchange_common import db
from exchange_dev.embedded import EmbeddedPostgres, EmbeddedRedis, quote_ident
from exchange_dev.stack import Stack

# A suite started as a background job (`make test &`, `nohup .ci/run &`) inherits SIGINT
# ignored, and so would every process it starts: the CLI tests that press Ctrl-C would then
# wait for an exit that never comes. A Python handler here is reset to the default in every
# child at exec, so those processes get Ctrl-C as on a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TEST_KEYS = {"alice": "test-key-alice-0123456789", "bob": "test-key-bob-0123456789"}

_INTEGRATION_FIXTURES = {"database_url", "redis_url", "pg_server", "redis_server",
                         "template_database", "pg_admin_url", "redis_server_url",
                         "module_database_url", "module_redis_url"}


IMAGE_SKIP_REASON = ("builds the container image and runs it (root, podman, dockerd, "
                     "minutes): set EXCHANGE_IMAGE_CHECK=1 to run it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        try:
            parts = Path(str(item.path)).relative_to(root).parts
        except ValueError:
            parts = ()
        fixtures = set(getattr(item, "fixturenames", ()))
        if parts and parts[0] == "image":
            item.add_marker(pytest.mark.image)
            if os.environ.get("EXCHANGE_IMAGE_CHECK") != "1":
                item.add_marker(pytest.mark.skip(reason=IMAGE_SKIP_REASON))
        if (parts and parts[0] == "e2e") or fixtures & {"stack", "module_stack"}:
            item.add_marker(pytest.mark.e2e)
        elif (parts and parts[0] == "integration") or fixtures & _INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)


# ---------------------------------------------------------------------------
# Servers (session)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def embedded_root() -> Iterator[Path]:
    """A temporary directory for the session's embedded servers."""
    path = Path(tempfile.mkdtemp(prefix="exchange-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(embedded_root: Path) -> Iterator[EmbeddedPostgres | None]:
    if os.environ.get("EXCHANGE_TEST_DATABASE_URL"):
        yield None
        return
    server = EmbeddedPostgres(embedded_root / "postgres")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_admin_url(pg_server: EmbeddedPostgres | None) -> str:
    """URL of a database on the test server to run CREATE/DROP DATABASE from."""
    if pg_server is None:
        return os.environ["EXCHANGE_TEST_DATABASE_URL"]
    return pg_server.url("postgres")


def _with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _ensure_running(server: EmbeddedPostgres | EmbeddedRedis | None) -> None:
    """Restart a server that an earlier (outage) test left stopped or killed."""
    if server is not None and not server.is_running():
        server.start()


@pytest.fixture(scope="session")
async def template_database(pg_server: EmbeddedPostgres | None, pg_admin_url: str
                            ) -> AsyncIterator[str]:
    """Name of a database with all migrations applied and instruments seeded."""
    name = f"exchange_tmpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(_with_database(pg_admin_url, name))
    try:
        await db.migrate(conn)
        await db.seed_instruments(conn)
    finally:
        await conn.close()
    yield name
    _ensure_running(pg_server)
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def redis_server(embedded_root: Path) -> Iterator[EmbeddedRedis | None]:
    if os.environ.get("EXCHANGE_TEST_REDIS_URL"):
        yield None
        return
    server = EmbeddedRedis(embedded_root / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server_url(redis_server: EmbeddedRedis | None) -> str:
    if redis_server is None:
        return os.environ["EXCHANGE_TEST_REDIS_URL"]
    return redis_server.url(0)


# ---------------------------------------------------------------------------
# Per test
# ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _fresh_database(pg_server: EmbeddedPostgres | None, pg_admin_url: str,
                          template_database: str) -> AsyncIterator[str]:
    """A database cloned from the template, dropped afterwards."""
    _ensure_running(pg_server)
    name = f"exchange_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template_database)}")
    finally:
        await admin.close()
    yield _with_database(pg_admin_url, name)
    _ensure_running(pg_server)
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await admin.close()


def _emptied_redis(redis_server: EmbeddedRedis | None, redis_server_url: str) -> str:
    _ensure_running(redis_server)
    client = redis.Redis.from_url(redis_server_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server_url


@pytest.fixture
async def database_url(pg_server: EmbeddedPostgres | None, pg_admin_url: str,
                       template_database: str) -> AsyncIterator[str]:
    """A fresh database (migrated, instruments seeded) for this test only."""
    async with _fresh_database(pg_server, pg_admin_url, template_database) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis | None, redis_server_url: str) -> Iterator[str]:
    """A Redis database, emptied before the test."""
    yield _emptied_redis(redis_server, redis_server_url)
    _ensure_running(redis_server)


@pytest.fixture(scope="module")
async def module_database_url(pg_server: EmbeddedPostgres | None, pg_admin_url: str,
                              template_database: str) -> AsyncIterator[str]:
    """A fresh database shared by the tests of one module."""
    async with _fresh_database(pg_server, pg_admin_url, template_database) as url:
        yield url


@pytest.fixture(scope="module")
def module_redis_url(redis_server: EmbeddedRedis | None, redis_server_url: str
                     ) -> Iterator[str]:
    """The Redis database, emptied before the module's first test (nothing else runs
    meanwhile: the tests of a module run one after another)."""
    yield _emptied_redis(redis_server, redis_server_url)
    _ensure_running(redis_server)


@pytest.fixture
async def stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The three services as real processes on this test's database and Redis.

    ``stack.order_addr`` / ``marketdata_addr`` / ``matching_addr``,
    ``stack.keys`` (alice, bob), ``stack.account_ids``, ``stack.processes``
    (name -> Popen; ``stack.kill_service(name)`` / ``await
    stack.start_service(name)`` to crash and restart one),
    ``stack.database_url``, ``stack.redis_url``. Service logs are in
    ``tmp_path/logs``; their last lines are printed after a failed test.
    """
    async with Stack(database_url=database_url, redis_url=redis_url, keys=TEST_KEYS,
                     log_dir=tmp_path / "logs").running(60) as s:
        yield s


@pytest.fixture(scope="module")
async def module_stack(request: pytest.FixtureRequest, pg_server: EmbeddedPostgres | None,
                       pg_admin_url: str, template_database: str,
                       redis_server: EmbeddedRedis | None, redis_server_url: str,
                       tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """``stack`` for a whole module: one database (cloned from the template) and the
    services, shared by the module's tests; a module's ``STACK_ENV`` (a dict) gives the
    services more variables."""
    _ensure_running(pg_server)
    _ensure_running(redis_server)
    name = f"exchange_module_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template_database)}")
    finally:
        await admin.close()
    client = redis.Redis.from_url(redis_server_url)
    try:
        client.flushdb()
    finally:
        client.close()
    try:
        async with Stack(database_url=_with_database(pg_admin_url, name),
                         redis_url=redis_server_url, keys=TEST_KEYS,
                         env=getattr(request.module, "STACK_ENV", None),
                         log_dir=tmp_path_factory.mktemp("module-stack") / "logs"
                         ).running(60) as s:
            yield s
    finally:
        _ensure_running(pg_server)
        admin = await asyncpg.connect(pg_admin_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary, why = find_helm()
    if binary is None:
        pytest.skip(f"no helm binary: {why}")
    return runner(binary, tmp_path_factory.mktemp("helm-home"))
