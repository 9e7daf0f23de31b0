"""The whole exchange as processes on this machine: ``Stack``.

PostgreSQL and Redis (embedded unless URLs are given), the migrations, the instruments and
accounts, then the matching, order and market-data services as child processes, each started
once the one before answers its health check; stopped in order. ``make run`` is a ``Stack``
(``exchange_dev.cli``), and so are the tests' ``stack`` fixtures (``tests/conftest.py``) and
the benchmarks' exchanges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange_common import db
from exchange_common.keys import ADMIN_KEY_KIND, new_key
from exchange_common.tls import InternalCaller
from exchange_dev.accounts import DEV_TIER, DEV_TIER_LIMITS, ensure_account, ensure_tier
from exchange_dev.certs import DevCerts, ensure_dev_certs
from exchange_dev.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    free_port,
    spawn_child,
    terminate_child,
)

log = logging.getLogger("exchange-dev")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str


# In start order: matching first, so the order service finds the owners.
SERVICES: tuple[ServiceSpec, ...] = (
    # Internal: on loopback only (and it takes commands only from an order service).
    ServiceSpec("matching", "matching_service"),
    ServiceSpec("order", "order_service"),
    ServiceSpec("marketdata", "marketdata_service"),
)
_SPECS = {s.name: s for s in SERVICES}
# Stop order: the public entry first, matching (which may still be
# answering in-flight commands) last.
_STOP_ORDER = ("order", "marketdata", "matching")


class StackError(RuntimeError):
    """The stack could not be started."""


def connect_address(listen: str) -> str:
    """Where a local client connects to a server listening on ``listen``."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::", "*"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stack:
    """PostgreSQL and Redis (embedded unless URLs are given) plus the three
    services as child processes.

    ``await start()`` prepares the database (migrations, instruments, the
    accounts of ``keys``), then starts matching, order and market data, each
    only once the one before answers ``grpc.health.v1`` with SERVING.
    ``await stop()`` sends the services SIGTERM (SIGKILL after
    ``stop_timeout``) and then stops the embedded servers. A partly started
    stack can be stopped too.

    Listen addresses left as None get a free port on 127.0.0.1 (tests).

    ``tls``: TLS on the public ports and mutual TLS from the order service to
    matching, with the certificates of ``exchange_dev.certs`` in ``tls_dir``
    (default ``<data_dir>/tls``; kept while they are good). Otherwise plaintext,
    and the shared ``internal_token`` between order service and matching
    (random unless given, in ``internal_token`` or ``env``); ``page_token_key``
    likewise.
    ``channel_credentials()`` / ``ca_file`` are what a client of the public ports
    needs; ``internal_caller()`` / ``matching_channel()`` call a matching pod as an
    order service would (tests and tools).
    With ``log_dir`` each service writes to ``<log_dir>/<name>.log``;
    without, it shares this process's stdout and stderr.

    After ``start()``: ``database_url``, ``redis_url``, ``order_addr``,
    ``matching_addr``, ``marketdata_addr`` (host:port to connect to),
    ``keys`` (name -> API key, accounts in the rate tier ``dev``), ``admin_key``,
    ``account_ids`` (name -> id), ``processes``
    (service name -> ``subprocess.Popen``; SIGKILL one to test a crash),
    ``pg`` / ``redis`` (the embedded servers, or None).

    More matching processes (a standby, or pods that split the instruments)
    are declared with ``add_matching(name, ...)`` before ``start()``; each
    gets its own listen and advertise address, and ``service_env`` (or
    ``add_matching(env=...)``) gives any one service its own variables, e.g.
    ``EXCHANGE_MATCHING_INSTRUMENTS``. ``start()`` starts them right after
    ``matching``, in the order they were added; ``stop()`` stops them with
    it. ``pause_service`` / ``resume_service`` send SIGSTOP / SIGCONT.
    ``on_prepare`` (a coroutine function of the connection) runs in
    ``prepare_database`` after the instruments are seeded and before the
    accounts are made (funded in every asset there is then); it may still
    declare matching processes (``make run SHARDS=...``: exchange_dev.matching_pods).
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        data_dir: Path | str | None = None,
        pg_port: int | None = None,
        redis_port: int | None = None,
        database_name: str = "exchange",
        keys: Mapping[str, str] | None = None,
        admin_key: str | None = None,
        order_listen: str | None = None,
        matching_listen: str | None = None,
        matching_advertise: str | None = None,
        marketdata_listen: str | None = None,
        env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        log_dir: Path | str | None = None,
        python: str = sys.executable,
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        tls: bool = False,
        tls_dir: Path | str | None = None,
        internal_token: str | None = None,
        page_token_key: str | None = None,
        order_workers: str | None = None,
        metrics_listen: Mapping[str, str] | None = None,
    ) -> None:
        if (database_url is None or redis_url is None) and data_dir is None:
            raise ValueError("data_dir is needed for the embedded servers")
        if tls and tls_dir is None and data_dir is None:
            raise ValueError("tls needs tls_dir or data_dir (where the certificates go)")
        self.data_dir = Path(data_dir).absolute() if data_dir is not None else None
        self.database_url = database_url
        self.redis_url = redis_url
        self.database_name = database_name
        self.keys: dict[str, str] = dict(keys or {})
        # An admin key (exchange.admin.v1.AdminService), made at start if not given.
        self.admin_key = admin_key or new_key(ADMIN_KEY_KIND)[0]
        self.account_ids: dict[str, int] = {}
        self.extra_env = dict(env or {})
        # The shared secret between the order services and the matching pods.
        self.internal_token = (internal_token or self.extra_env.get("EXCHANGE_INTERNAL_TOKEN")
                               or secrets.token_urlsafe(32))
        # The key of page tokens, shared by the services (as replicas would share it).
        self.page_token_key = (page_token_key or self.extra_env.get("EXCHANGE_PAGE_TOKEN_KEY")
                               or secrets.token_urlsafe(32))
        # Processes per order service (EXCHANGE_ORDER_WORKERS): one unless asked, so that a
        # test's order service is one process it can kill; make run passes "auto".
        self.order_workers = (order_workers or self.extra_env.get("EXCHANGE_ORDER_WORKERS")
                              or "1")
        # Per service name: variables for that service only (applied last).
        self.service_extra_env: dict[str, dict[str, str]] = {
            name: dict(values) for name, values in (service_env or {}).items()}
        self.log_dir = Path(log_dir).absolute() if log_dir is not None else None
        self.python = python
        self.tls = tls
        self.tls_dir = (Path(tls_dir).absolute() if tls_dir is not None
                        else Path(data_dir).absolute() / "tls" if tls and data_dir else None)
        self._certs: DevCerts | None = None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout

        self.pg: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        if database_url is None:
            assert self.data_dir is not None
            self.pg = EmbeddedPostgres(self.data_dir / "postgres", pg_port)
        if redis_url is None:
            assert self.data_dir is not None
            self.redis = EmbeddedRedis(self.data_dir / "redis", redis_port)

        self.listen: dict[str, str] = {
            "order": order_listen or f"127.0.0.1:{free_port()}",
            "matching": matching_listen or f"127.0.0.1:{free_port()}",
            "marketdata": marketdata_listen or f"127.0.0.1:{free_port()}",
        }
        self.matching_advertise = matching_advertise or connect_address(self.listen["matching"])
        # Where each service serves its Prometheus metrics (EXCHANGE_METRICS_LISTEN).
        self.metrics_listen: dict[str, str] = {
            name: (metrics_listen or {}).get(name) or f"127.0.0.1:{free_port()}"
            for name in self.listen}
        self.specs: dict[str, ServiceSpec] = dict(_SPECS)
        # Matching processes added with add_matching: name -> advertise address.
        self.extra_matching: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen] = {}
        self.log_paths: dict[str, Path] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._stopping = False
        self.on_prepare: Callable[[asyncpg.Connection], Awaitable[None]] | None = None

    # -- addresses ---------------------------------------------------------

    @property
    def order_addr(self) -> str:
        return connect_address(self.listen["order"])

    @property
    def matching_addr(self) -> str:
        return self.matching_advertise

    @property
    def marketdata_addr(self) -> str:
        return connect_address(self.listen["marketdata"])

    def metrics_url(self, name: str) -> str:
        """The Prometheus endpoint of service ``name``."""
        return f"http://{connect_address(self.metrics_listen[name])}/metrics"

    def addr(self, name: str) -> str:
        if name in self.extra_matching:
            return self.extra_matching[name]
        if name == "matching":
            return self.matching_addr
        return connect_address(self.listen[name])

    def add_order(self, name: str, *, env: Mapping[str, str] | None = None) -> str:
        """Declare another order-service process ``name`` (a replica on a port of its
        own, with ``env`` for it alone); start it with ``start_service(name)``. Returns
        the address to call it on."""
        if name in self.specs:
            raise ValueError(f"a service named {name!r} already exists")
        self.specs[name] = ServiceSpec(name, "order_service")
        self.listen[name] = f"127.0.0.1:{free_port()}"
        self.metrics_listen[name] = f"127.0.0.1:{free_port()}"
        if env:
            self.service_extra_env.setdefault(name, {}).update(env)
        return self.addr(name)

    def add_matching(self, name: str, *, listen: str | None = None,
                     advertise: str | None = None,
                     env: Mapping[str, str] | None = None,
                     metrics_listen: str | None = None) -> str:
        """Declare another matching process ``name`` (e.g. ``"matching-b"``): its
        own listen address (a free port when None), advertise address and metrics
        address (a free port when None), and ``env`` for it alone (e.g.
        ``EXCHANGE_MATCHING_INSTRUMENTS``). Call it before ``start()`` (which then
        starts it after ``matching``), or start it later with
        ``start_service(name)``. Returns the address it advertises."""
        if name in self.specs:
            raise ValueError(f"a service named {name!r} already exists")
        self.specs[name] = ServiceSpec(name, "matching_service")
        self.listen[name] = listen or f"127.0.0.1:{free_port()}"
        self.metrics_listen[name] = metrics_listen or f"127.0.0.1:{free_port()}"
        self.extra_matching[name] = advertise or connect_address(self.listen[name])
        if env:
            self.service_extra_env.setdefault(name, {}).update(env)
        return self.extra_matching[name]

    # -- TLS -------------------------------------------------------------------

    @property
    def certs(self) -> DevCerts | None:
        """The dev certificates (made on first use) when ``tls``, else None."""
        if self.tls and self._certs is None:
            assert self.tls_dir is not None
            self._certs = ensure_dev_certs(self.tls_dir)
        return self._certs

    @property
    def ca_file(self) -> str | None:
        """The CA that signed the servers' certificates (None without TLS)."""
        return str(self.certs.ca) if self.certs else None

    def channel_credentials(self, client_cert: bool = True) -> grpc.ChannelCredentials | None:
        """Credentials for the public ports (and the stack's health checks): trust
        the dev CA and, with ``client_cert``, present ``client.crt`` (for ports that
        require client certificates). None without TLS."""
        certs = self.certs
        if certs is None:
            return None
        if not client_cert:
            return grpc.ssl_channel_credentials(certs.ca.read_bytes())
        return grpc.ssl_channel_credentials(certs.ca.read_bytes(),
                                            certs.client.key.read_bytes(),
                                            certs.client.cert.read_bytes())

    def internal_caller(self) -> InternalCaller:
        """How the stack's order service authenticates to matching."""
        certs = self.certs
        if certs is None:
            return InternalCaller(token=self.internal_token)
        return InternalCaller(cert_file=str(certs.order_service.cert),
                              key_file=str(certs.order_service.key), ca_file=str(certs.ca))

    def matching_channel(self, addr: str | None = None) -> grpc.aio.Channel:
        """A channel to a matching process (default ``matching_addr``) whose calls
        are authenticated as an order service's."""
        return self.internal_caller().channel(addr or self.matching_addr)

    def _tls_env(self, name: str) -> dict[str, str]:
        certs = self.certs
        if certs is None:
            return {"EXCHANGE_INTERNAL_TOKEN": self.internal_token}
        internal = {"EXCHANGE_INTERNAL_TLS_CA_FILE": str(certs.ca)}
        spec = self.specs[name]
        if spec.module == "matching_service":
            return {**internal, "EXCHANGE_INTERNAL_TLS_CERT_FILE": str(certs.matching.cert),
                    "EXCHANGE_INTERNAL_TLS_KEY_FILE": str(certs.matching.key)}
        env = {"EXCHANGE_TLS_CERT_FILE": str(certs.server.cert),
               "EXCHANGE_TLS_KEY_FILE": str(certs.server.key)}
        if spec.module == "order_service":
            env.update(internal)
            env.update({"EXCHANGE_INTERNAL_TLS_CERT_FILE": str(certs.order_service.cert),
                        "EXCHANGE_INTERNAL_TLS_KEY_FILE": str(certs.order_service.key)})
        return env

    def _start_order(self) -> list[str]:
        names = []
        for spec in SERVICES:
            names.append(spec.name)
            if spec.name == "matching":
                names.extend(self.extra_matching)
        return names

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Servers, database, then the services in order; raises StackError
        (after stopping what it started) if something does not come up."""
        self._stopping = False
        try:
            _ = self.certs  # made (or checked) before anything starts
            self.start_servers()
            await self.prepare_database()
            for name in self._start_order():
                await self.start_service(name)
        except BaseException:
            await self.stop()
            raise

    def start_servers(self) -> None:
        """Start the embedded servers (if any) and fill in their URLs."""
        if self.pg is not None:
            self.pg.start()
            self.database_url = self.pg.ensure_database(self.database_name)
        if self.redis is not None:
            self.redis.start()
            self.redis_url = self.redis.url()

    async def prepare_database(self) -> None:
        """Migrations, instruments, and an account with its key for each of ``keys``."""
        assert self.database_url is not None
        conn = await asyncpg.connect(self.database_url)
        try:
            await db.migrate(conn)
            await db.seed_instruments(conn)
            if self.on_prepare is not None:
                await self.on_prepare(conn)
            await ensure_tier(conn, DEV_TIER, **DEV_TIER_LIMITS)
            for name, key in self.keys.items():
                self.account_ids[name] = await ensure_account(conn, name, key, DEV_TIER)
            await db.ensure_admin_key(conn, self.admin_key, "dev")
        finally:
            await conn.close()

    def service_env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("EXCHANGE_LOG_FORMAT", "text")
        env.update(self.extra_env)
        assert self.database_url is not None and self.redis_url is not None
        env.update({
            "EXCHANGE_DATABASE_URL": self.database_url,
            "EXCHANGE_REDIS_URL": self.redis_url,
            "EXCHANGE_ORDER_LISTEN": self.listen["order"],
            "EXCHANGE_MATCHING_LISTEN": self.listen["matching"],
            "EXCHANGE_MATCHING_ADVERTISE": self.matching_advertise,
            "EXCHANGE_MARKETDATA_LISTEN": self.listen["marketdata"],
            "EXCHANGE_PAGE_TOKEN_KEY": self.page_token_key,
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self._tls_env(name))
        env["EXCHANGE_METRICS_LISTEN"] = self.metrics_listen[name]
        if name in self.extra_matching:
            env["EXCHANGE_MATCHING_LISTEN"] = self.listen[name]
            env["EXCHANGE_MATCHING_ADVERTISE"] = self.extra_matching[name]
        elif self.specs[name].module == "order_service":
            env["EXCHANGE_ORDER_LISTEN"] = self.listen[name]
            env["EXCHANGE_ORDER_WORKERS"] = self.order_workers
        env.update(self.service_extra_env.get(name, {}))
        return env

    async def start_service(self, name: str, timeout: float | None = None) -> subprocess.Popen:
        """Start one service (again, e.g. after a test killed it) and wait until it is SERVING."""
        spec = self.specs[name]
        old = self.processes.get(name)
        if old is not None and old.poll() is None:
            raise StackError(f"{name} is already running (pid {old.pid})")
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.log_paths[name] = self.log_dir / f"{name}.log"
            if name in self._logs:
                self._logs.pop(name).close()
            out = open(self.log_paths[name], "ab")  # noqa: SIM115 - closed in stop()
            self._logs[name] = out
        proc = spawn_child(
            [self.python, "-m", spec.module],
            death_signal=signal.SIGTERM, stop_grace=self.stop_timeout,
            env=self.service_env(name), stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
        )
        self.processes[name] = proc
        log.info("started %s service: pid %d, listening on %s", name, proc.pid, self.listen[name])
        await self.wait_serving(name, timeout)
        return proc

    async def wait_serving(self, name: str, timeout: float | None = None) -> None:
        """Wait until ``name`` answers the health check with SERVING."""
        proc = self.processes[name]
        addr = (connect_address(self.listen[name])
                if self.specs[name].module == "matching_service" else self.addr(name))
        deadline = time.monotonic() + (timeout or self.start_timeout)
        last = "no answer"
        while True:
            if proc.poll() is not None:
                raise StackError(
                    f"{name} service exited with code {proc.returncode} while starting"
                    + self._log_hint(name))
            status = await health_check(addr, credentials=self.channel_credentials())
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(status) if status else last
            if time.monotonic() > deadline:
                raise StackError(f"{name} service not SERVING on {addr} after "
                                 f"{timeout or self.start_timeout:.0f}s ({last})"
                                 + self._log_hint(name))
            await asyncio.sleep(0.1)

    def _log_hint(self, name: str) -> str:
        path = self.log_paths.get(name)
        if path is None:
            return ""
        return f"; last lines of {path}:\n{_tail(path)}"

    def kill_service(self, name: str) -> None:
        """SIGKILL a service, as a crash would."""
        proc = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        terminate_child(proc, signal.SIGKILL, 5.0)

    def pause_service(self, name: str) -> None:
        """SIGSTOP a service (a pause: GC stall, VM freeze, partition)."""
        os.kill(self.processes[name].pid, signal.SIGSTOP)

    def resume_service(self, name: str) -> None:
        """SIGCONT a paused service."""
        proc = self.processes[name]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)

    async def stop_service(self, name: str, timeout: float | None = None) -> int | None:
        """SIGTERM one service and wait (SIGKILL after ``timeout``); its exit code.
        A paused (SIGSTOPped) service is resumed first so that it can stop."""
        proc = self.processes.get(name)
        if proc is None:
            return None
        self.resume_service(name)
        return await asyncio.to_thread(terminate_child, proc, signal.SIGTERM,
                                       timeout or self.stop_timeout)

    async def stop(self) -> dict[str, int]:
        """Stop the services, then the embedded servers. Returns the services' exit codes."""
        self._stopping = True
        codes: dict[str, int] = {}
        # Order service and market data together, then matching.
        first = [n for n in _STOP_ORDER[:2] if n in self.processes]
        results = await asyncio.gather(*(self.stop_service(n) for n in first))
        codes.update({n: rc for n, rc in zip(first, results, strict=True) if rc is not None})
        # Then every matching process (the standbys with the owner).
        rest = [n for n in self.processes if n not in first]
        results = await asyncio.gather(*(self.stop_service(n) for n in rest))
        codes.update({n: rc for n, rc in zip(rest, results, strict=True) if rc is not None})
        for f in self._logs.values():
            f.close()
        self._logs.clear()
        if self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            self.pg.stop()
        return codes

    @contextlib.asynccontextmanager
    async def running(self, log_lines: int = 60) -> AsyncIterator[Stack]:
        """``async with stack.running() as s``: started, then stopped, and the last
        ``log_lines`` lines of each service's log printed (a test's output shows them
        when it fails)."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()
            print(self.log_tails(log_lines))

    def log_tails(self, lines: int = 60) -> str:
        """The last ``lines`` lines of every service's log (for a failed test's output)."""
        out = []
        for name, path in self.log_paths.items():
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out += [f"----- {name} service log ({path}) -----", *tail]
        return "\n".join(out)

    def exited(self) -> dict[str, int]:
        """Processes of the stack that are no longer running: name -> exit code."""
        out = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        for name, server in (("postgres", self.pg), ("redis", self.redis)):
            if server is not None and server.returncode is not None:
                out[name] = server.returncode
        return out

    async def wait_for_exit(self, poll: float = 0.2) -> tuple[str, int]:
        """Wait until any process of the stack exits; its name and exit code."""
        while True:
            dead = self.exited()
            if dead:
                return next(iter(dead.items()))
            await asyncio.sleep(poll)

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def health_check(addr: str, service: str = "", timeout: float = 1.0,
                       credentials: grpc.ChannelCredentials | None = None) -> int | None:
    """The ``grpc.health.v1`` status of ``addr`` (None when it does not answer);
    over TLS with ``credentials``."""
    channel = (grpc.aio.insecure_channel(addr) if credentials is None
               else grpc.aio.secure_channel(addr, credentials))
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            # (the published stubs declare no methods on HealthStub)
            reply = await stub.Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.aio.AioRpcError:
            return None
        return reply.status
