"""gRPC server bootstrap shared by the services.

Health checking (``grpc.health.v1``) and reflection on every server, channel
and server options from settings, and a graceful shutdown on SIGTERM/SIGINT:
health goes NOT_SERVING, in-flight calls get ``shutdown_grace`` seconds,
then the service's own cleanup runs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from exchange_common import handlers, logs
from exchange_common.config import CommonSettings

log = logging.getLogger(__name__)


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
    ]


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
    """A running gRPC server with health and reflection."""

    def __init__(self, settings: CommonSettings, listen: str, *,
                 reuse_port: bool = False) -> None:
        self.settings = settings
        self.listen = listen
        logs.filter_grpc_server_logs()
        self.server = grpc.aio.server(options=server_options(settings, reuse_port))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._names: list[str] = []
        self.port = 0

    def add(self, register: Callable[[object, grpc.aio.Server], None], servicer: object,
            full_name: str) -> None:
        """Register with ``register(servicer, server)``; prefer ``add_service``, whose
        handlers answer a malformed request body with INVALID_ARGUMENT."""
        register(servicer, self.server)
        self._names.append(full_name)

    def add_service(self, service: ServiceDescriptor, servicer: object, *,
                    response_serializers: Mapping[str, Callable[[Any], bytes]] | None = None
                    ) -> None:
        """Serve ``servicer`` as ``service`` (see ``exchange_common.handlers``)."""
        self.add(lambda s, server: handlers.add_to_server(
            server, service, s, response_serializers, self.settings.max_message_bytes),
            servicer, service.full_name)

    async def start(self) -> int:
        reflection.enable_server_reflection(
            [*self._names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self.server,
        )
        self.port = self.server.add_insecure_port(self.listen)
        if self.port == 0:
            raise SystemExit(f"cannot listen on {self.listen}")
        await self.server.start()
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ["", *self._names]:
            await self.health.set(name, status)

    async def stop(self) -> None:
        await self.set_serving(False)
        await self.server.stop(self.settings.shutdown_grace)


async def run_until_signal(
    service: Service,
    cleanup: Iterable[Callable[[], Awaitable[object]]] = (),
) -> None:
    """Wait for SIGTERM/SIGINT, then stop gracefully and run ``cleanup`` in order."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server_done = asyncio.ensure_future(service.server.wait_for_termination())
    stop_wait = asyncio.ensure_future(stop.wait())
    await asyncio.wait([server_done, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    log.info("shutting down")
    await service.stop()
    for fn in cleanup:
        try:
            await fn()
        except Exception:  # noqa: BLE001
            log.exception("error during cleanup")
    server_done.cancel()
    stop_wait.cancel()
    log.info("stopped")
