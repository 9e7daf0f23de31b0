"""What the checks ask the containers: gRPC health, metrics, logs; the database."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import asyncpg
import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from image_check.images import Docker
from image_check.shell import CheckFailed, run


def health(port: int, timeout: float) -> str:
    """The gRPC health status of the server on ``port`` (service "", as a kubelet probe
    asks), or the error."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            # (the published stubs declare no methods on HealthStub)
            reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError as exc:
        return str(exc.code().name)


def scrape(port: int) -> dict[str, list[Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        if response.status != 200:
            raise CheckFailed(f"metrics on {port}: HTTP {response.status}")
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def log_lines(docker: Docker, name: str) -> list[str]:
    proc = run(docker.cli, "logs", name, check=False)
    return (proc.stdout + proc.stderr).splitlines()


def bad_lines(lines: list[str], json_only: bool = True) -> list[str]:
    """Lines at ERROR or above, tracebacks, and (``json_only``) lines that are not JSON:
    the chart sets EXCHANGE_LOG_FORMAT=json."""
    bad = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            if json_only or "Traceback" in line or "Error" in line:
                bad.append(line)
            continue
        if not isinstance(record, dict) or record.get("level") in ("ERROR", "CRITICAL") \
                or "Traceback" in line:
            bad.append(line)
    return bad


def state(docker: Docker, name: str) -> dict[str, Any]:
    out = run(docker.cli, "inspect", "--format", "{{json .State}}", name).stdout
    result: dict[str, Any] = json.loads(out)
    return result


class Database:
    """The check's own PostgreSQL database and Redis db, fresh at start, gone at the end."""

    def __init__(self, server: str, name: str, redis_url: str) -> None:
        self.server, self.name, self.redis_url = server, name, redis_url

    @property
    def url(self) -> str:
        return f"{self.server.rstrip('/')}/{self.name}"

    def _sql(self, *statements: str) -> None:
        import asyncio

        async def go() -> None:
            conn = await asyncpg.connect(f"{self.server.rstrip('/')}/postgres", timeout=10)
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(go())

    def create(self) -> None:
        self.drop()
        self._sql(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
