"""exchange_common.backlog: the calls a server's core holds that the process has not taken.

A real grpc.aio server whose handler holds the event loop (time.sleep) so that calls pile
up in core; a thread samples the backlog meanwhile (channelz is read without the loop).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange_common.backlog import Backlog, server_ids


class SlowHealth(health_pb2_grpc.HealthServicer):
    async def Check(self, request, context):
        time.sleep(0.01)  # holds the loop: the calls behind it wait in core
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def test_the_backlog_is_the_calls_received_and_not_yet_taken() -> None:
    backlog = Backlog()
    before = server_ids()
    server = grpc.aio.server(interceptors=[backlog])
    (server_id,) = server_ids() - before
    backlog.attach(server_id)
    health_pb2_grpc.add_HealthServicer_to_server(SlowHealth(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    assert backlog.received() == 0 and backlog.taken == 0
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            received = backlog.received()
            assert received is not None
            seen.append(received - backlog.taken)
            time.sleep(0.002)

    def call(stub: health_pb2_grpc.HealthStub) -> None:
        stub.Check(health_pb2.HealthCheckRequest(), timeout=30)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            with ThreadPoolExecutor(40) as pool:
                calls = [asyncio.wrap_future(pool.submit(call, stub)) for _ in range(40)]
                await asyncio.gather(*calls)
        final = backlog.received()
    finally:
        stop.set()
        sampler.join()
        await server.stop(None)
    assert backlog.taken == 40 and final == 40
    assert max(seen) >= 10, max(seen)  # the calls waited in core, and were counted there
    assert min(seen) >= 0


def test_without_a_server_id_nothing_is_claimed() -> None:
    assert Backlog().received() is None
