"""gRPC server bootstrap shared by the services.

Health checking (``grpc.health.v1``) and reflection on every server, channel
and server options from settings, and a graceful shutdown on SIGTERM/SIGINT:
health goes NOT_SERVING, in-flight calls get ``shutdown_grace`` seconds,
then the service's own cleanup runs.

The port serves TLS as the settings say (``exchange_common.tls``): a public
port with ``EXCHANGE_TLS_*``, an internal one (``internal=True``, the matching
pods) with mutual TLS or the internal token. ``EXCHANGE_HEALTH_LISTEN`` adds a
plaintext port that serves health checks alone, for probes that cannot speak TLS.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from exchange_common import handlers, logs, tls, tracing
from exchange_common.backlog import Backlog, server_ids
from exchange_common.config import CommonSettings

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Called once start-up is done: what it built (modules, settings, instruments,
    books) lives as long as the process, so keep it out of the cyclic collector's scans
    (``gc.freeze``), which would otherwise walk all of it again at every full collection."""
    gc.freeze()


def server_options(settings: CommonSettings,
                   reuse_port: bool = False) -> list[tuple[str, int]]:
    """``reuse_port``: other processes may listen on the same port (several workers of one
    service); otherwise a port in use is an error."""
    return [
        ("grpc.keepalive_time_ms", settings.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_ms),
        # Let clients ping as often as they keepalive.
        ("grpc.http2.min_ping_interval_without_data_ms", min(settings.keepalive_time_ms, 10_000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.server.max_pending_requests", settings.grpc_max_pending_calls),
        ("grpc.server.max_pending_requests_hard_limit", 3 * settings.grpc_max_pending_calls),
        *size_options(settings),
        *connection_age_options(settings),
    ]


def connection_age_options(settings: CommonSettings) -> list[tuple[str, int]]:
    """GOAWAY to a connection older than ``grpc_max_connection_age`` (none when 0); the
    calls open on it then get ``grpc_max_connection_age_grace`` (0: gRPC's default, no
    limit)."""
    if not settings.grpc_max_connection_age:
        return []
    options = [("grpc.max_connection_age_ms",
                max(1, round(settings.grpc_max_connection_age * 1000)))]
    if settings.grpc_max_connection_age_grace:
        options.append(("grpc.max_connection_age_grace_ms",
                        max(1, round(settings.grpc_max_connection_age_grace * 1000))))
    return options


def size_options(settings: CommonSettings) -> list[tuple[str, int]]:
    """Largest message taken and sent, largest metadata taken; gRPC refuses more with
    RESOURCE_EXHAUSTED before a handler runs. The metadata limit is both gRPC's soft
    limit (above which it refuses at random, more often the larger) and its hard one,
    so that it refuses exactly what is over the limit."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_metadata_size", settings.max_metadata_bytes),
        ("grpc.absolute_max_metadata_size", settings.max_metadata_bytes),
    ]


def channel_options(settings: CommonSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", settings.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect quickly to a restarted or failed-over peer (the default backoff
        # grows to minutes).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        *size_options(settings),
    ]


class Service:
    """A running gRPC server with health and reflection.

    ``internal``: a service-to-service port (matching), which takes the internal
    credentials and refuses every call but health and reflection from a caller that
    is not an authenticated order service (``tls.InternalAuth``). Otherwise the public
    port's TLS settings apply. ``health_port``: also serve health on
    EXCHANGE_HEALTH_LISTEN when set (one Service of a process does). ``backlog``:
    counts the calls the server's core holds for the process (``exchange_common.backlog``)."""

    def __init__(self, settings: CommonSettings, listen: str, *,
                 reuse_port: bool = False, internal: bool = False,
                 health_port: bool = True, backlog: Backlog | None = None) -> None:
        self.settings = settings
        self.listen = listen
        logs.filter_grpc_server_logs()
        try:
            self.credentials = (tls.internal_server_credentials(settings) if internal
                                else tls.server_credentials(settings))
            interceptors: list[grpc.aio.ServerInterceptor] = (
                [tls.InternalAuth(settings)] if internal else [])
        except ValueError as err:  # a TLS file named by a setting, or no internal auth
            raise SystemExit(f"{type(settings).__name__}: {err}") from None
        if backlog is not None:
            interceptors.insert(0, backlog)
            before = server_ids()
        self.server = grpc.aio.server(options=server_options(settings, reuse_port),
                                      interceptors=interceptors or None)
        if backlog is not None:
            new = server_ids() - before
            backlog.attach(new.pop() if len(new) == 1 else None)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.health_server: grpc.aio.Server | None = None
        if settings.health_listen and health_port:
            self.health_server = grpc.aio.server(options=server_options(settings, reuse_port))
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
        self._names: list[str] = []
        self.port = 0

    def add(self, register: Callable[[object, grpc.aio.Server], None], servicer: object,
            full_name: str) -> None:
        """Register with ``register(servicer, server)``; prefer ``add_service``, whose
        handlers answer a malformed request body with INVALID_ARGUMENT."""
        register(servicer, self.server)
        self._names.append(full_name)

    def add_service(self, service: ServiceDescriptor, servicer: object, *,
                    response_serializers: Mapping[str, Callable[[Any], bytes]] | None = None,
                    traced: Collection[str] = ()) -> None:
        """Serve ``servicer`` as ``service`` (see ``exchange_common.handlers``); the
        unary methods named in ``traced`` run in a server span when tracing is on."""
        self.add(lambda s, server: handlers.add_to_server(
            server, service, s, response_serializers, self.settings.max_message_bytes,
            traced), servicer, service.full_name)

    async def start(self) -> int:
        reflection.enable_server_reflection(
            [*self._names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self.server,
        )
        try:
            if self.credentials is None:
                self.port = self.server.add_insecure_port(self.listen)
            else:
                self.port = self.server.add_secure_port(self.listen, self.credentials)
        except RuntimeError as err:  # in use, or (TLS) a certificate or key gRPC refused
            what = " with TLS (are the certificate and key valid PEM, and a pair?)" \
                if self.credentials is not None else ""
            raise SystemExit(f"cannot listen on {self.listen}{what}: {err}") from None
        if self.port == 0:
            raise SystemExit(f"cannot listen on {self.listen}")
        # NOT_SERVING until the service says it is ready (grpc_health answers SERVING for
        # "" by default): a matching pod listens before it owns its instruments, and a
        # probe, a rollout or a test must not take it as ready before then.
        await self.set_serving(False)
        if self.health_server is not None:
            if self.health_server.add_insecure_port(self.settings.health_listen) == 0:
                raise SystemExit(f"cannot listen on {self.settings.health_listen} "
                                 "(EXCHANGE_HEALTH_LISTEN)")
            await self.health_server.start()
        await self.server.start()
        return self.port

    @property
    def names(self) -> list[str]:
        """The full names of the services added."""
        return list(self._names)

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ["", *self._names]:
            await self.health.set(name, status)

    async def stop(self) -> None:
        await self.set_serving(False)
        await self.server.stop(self.settings.shutdown_grace)
        if self.health_server is not None:
            await self.health_server.stop(None)


async def run_until_signal(
    service: Service,
    cleanup: Iterable[Callable[[], Awaitable[object]]] = (),
    drain: Iterable[Callable[[], Awaitable[object]]] = (),
) -> None:
    """Wait for SIGTERM/SIGINT, then run ``drain`` in order (health is NOT_SERVING, the
    server still answers), stop gracefully and run ``cleanup`` in order, then flush the
    traces (``exchange_common.tracing``)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server_done = asyncio.ensure_future(service.server.wait_for_termination())
    stop_wait = asyncio.ensure_future(stop.wait())
    await asyncio.wait([server_done, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    log.info("shutting down")
    if drain:
        await service.set_serving(False)
    for fn in drain:
        try:
            await fn()
        except Exception:  # noqa: BLE001
            log.exception("error while draining")
    await service.stop()
    for fn in cleanup:
        try:
            await fn()
        except Exception:  # noqa: BLE001
            log.exception("error during cleanup")
    await tracing.shutdown()
    server_done.cancel()
    stop_wait.cancel()
    log.info("stopped")
