"""A Service's health (``grpc.health.v1``) says NOT_SERVING from the moment it listens
until the process calls ``set_serving(True)``: grpc_health's servicer answers SERVING for
the server as a whole ("") unless told otherwise, and a matching pod listens before it owns
its instruments (matching_service/server.py). Taken as ready early, it would be sent
traffic it cannot serve, and a StatefulSet rollout would restart the next pod before this
one took its instruments back. A real server, a real health client."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange_common.config import CommonSettings
from exchange_common.server import Service

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""),  # type: ignore[attr-defined]
                                 timeout=5)
        return reply.status


async def test_not_serving_from_listening_until_set_serving() -> None:
    settings = CommonSettings.model_construct(health_listen="")
    service = Service(settings, "127.0.0.1:0", health_port=False)
    port = await service.start()
    try:
        assert await _status(port) == NOT_SERVING
        await service.set_serving(True)
        assert await _status(port) == SERVING
    finally:
        await service.stop()
