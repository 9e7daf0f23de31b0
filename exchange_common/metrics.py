"""Prometheus metrics: the registry of a service process and its HTTP endpoint.

Each service declares its metrics in one module (``order_service/metrics.py``,
``matching_service/metrics.py``, ``marketdata_service/metrics.py``) with
``prometheus_client``; what all of them have (gRPC calls by method and status code,
database pools) is declared here. ``EXCHANGE_METRICS_LISTEN`` (host:port; empty: no
endpoint) is where a process serves them, at ``/metrics``.

Labels stay bounded: method, status code, instrument symbol, reason, kind; never an
order or account id. Money and quantities are counted in the asset's smallest units
(integers; a Prometheus sample is a float64, exact up to 2**53).

Workers (``exchange_common.workers``): a service that runs several processes on one
port is still one scrape. ``prometheus_client``'s multiprocess mode: every process
writes its values to memory-mapped files in one directory (``PROMETHEUS_MULTIPROC_DIR``,
made by worker 0 and passed to the others), and worker 0's endpoint serves their
aggregate: counters and histograms summed over every process that ever ran (a
restarted worker's counts are kept), gauges as each declares (the live processes' sum).
With one process the values are plain memory and the endpoint serves the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from a millisecond (a query answered from memory) to the 5-second matching
# timeout, with the alert thresholds (0.2, 0.5) as bucket bounds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
                   2.5, 5.0, 10.0)
# Commands in one batch (one commit).
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
# How often gauges that are read off the process's state are refreshed (seconds).
SAMPLE_INTERVAL = 1.0


class Registry:
    """Where a process's metrics live: ``registry`` is what the metrics are declared
    in (None in multiprocess mode, where the files are the registry), ``collector`` what
    the endpoint serves."""

    def __init__(self, workers: int = 1, worker: int = 0) -> None:
        self.multiprocess = workers > 1
        self.own_dir: str | None = None
        if self.multiprocess:
            if worker == 0 and not os.environ.get(MULTIPROC_ENV):
                self.own_dir = tempfile.mkdtemp(prefix="exchange-metrics-")
                os.environ[MULTIPROC_ENV] = self.own_dir
            # Values made from here on are memory-mapped files (prometheus_client picks
            # the kind of value when it is imported, before any setting is read).
            values.ValueClass = values.MultiProcessValue()
            self.registry: CollectorRegistry | None = None
            self.collector = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.collector)
        else:
            self.registry = CollectorRegistry()
            self.collector = self.registry
        self._server: Any = None
        self._thread: Any = None
        self._sampler: asyncio.Task[None] | None = None
        self.samplers: list[Callable[[], None]] = []
        self.port = 0

    @property
    def env(self) -> dict[str, str]:
        """What worker 0 passes to the other workers."""
        return {MULTIPROC_ENV: os.environ[MULTIPROC_ENV]} if self.multiprocess else {}

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` on ``listen`` (host:port, port 0: any); the port bound."""
        host, _, port = listen.rpartition(":")
        self._server, self._thread = prometheus_client.start_http_server(
            int(port), addr=host or "0.0.0.0", registry=self.collector)
        self.port = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", host or "0.0.0.0", self.port)
        return self.port

    def sample(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` every ``SAMPLE_INTERVAL`` seconds (and before the first scrape):
        it sets gauges from the process's state (queue lengths, pool sizes)."""
        self.samplers.append(fn)
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample(), name="metrics-sampler")

    async def _sample(self) -> None:
        while True:
            for fn in self.samplers:
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a figure missing is not worth a crash
                    log.debug("metrics sampler %s failed", fn, exc_info=True)
            await asyncio.sleep(SAMPLE_INTERVAL)

    def worker_gone(self, pid: int) -> None:
        """A worker process ended: its live gauges no longer count."""
        if self.multiprocess:
            multiprocess.mark_process_dead(pid)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)  # waits for its thread's loop
            self._server.server_close()
        if self.own_dir is not None:
            shutil.rmtree(self.own_dir, ignore_errors=True)


def counter(registry: Registry, name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
    return Counter(name, doc, list(labels), registry=registry.registry)


def gauge(registry: Registry, name: str, doc: str, labels: Iterable[str] = (),
          mode: str = "livesum") -> Gauge:
    """A gauge; ``mode`` is how worker processes combine (prometheus_client's
    multiprocess modes: livesum, max, min, mostrecent...)."""
    return Gauge(name, doc, list(labels), registry=registry.registry,
                 multiprocess_mode=mode)  # type: ignore[arg-type]


def histogram(registry: Registry, name: str, doc: str, labels: Iterable[str] = (),
              buckets: Iterable[float] = LATENCY_BUCKETS) -> Histogram:
    return Histogram(name, doc, list(labels), registry=registry.registry,
                     buckets=tuple(buckets))


class Children:
    """The labelled children of a metric, looked up without prometheus_client's lock
    on the hot path (``metric.labels(...)`` takes it on every call)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.cache.get(labels)
        if child is None:
            child = self.cache[labels] = self.metric.labels(*labels)
        return child


class CommonMetrics:
    """What every service has: its gRPC calls and its database pools."""

    def __init__(self, registry: Registry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.grpc_handled = Children(counter(
            registry, "exchange_grpc_server_handled",
            "gRPC calls this process answered, by method and status code",
            ("method", "code")))
        self.db_pool_size = Children(gauge(
            registry, "exchange_db_pool_connections",
            "PostgreSQL connections of a pool, by state (in_use, idle)", ("pool", "state")))
        self.db_pool_max = Children(gauge(
            registry, "exchange_db_pool_max_connections",
            "The most connections a PostgreSQL pool opens", ("pool",)))

    def handled(self, method: str, code: str) -> None:
        self.grpc_handled(method, code).inc()

    def watch_pool(self, name: str, pool: Any) -> None:
        """Sample an asyncpg pool's size and use."""
        def sample() -> None:
            size, idle = pool.get_size(), pool.get_idle_size()
            self.db_pool_size(name, "in_use").set(size - idle)
            self.db_pool_size(name, "idle").set(idle)
            self.db_pool_max(name).set(pool.get_max_size())
        self.registry.sample(sample)


# The process's metrics of the gRPC layer, set by the service at start-up; the
# handlers (exchange_common.handlers) count every call in it.
_common: CommonMetrics | None = None


def install(metrics: CommonMetrics) -> None:
    global _common
    _common = metrics


def common() -> CommonMetrics | None:
    return _common


def status_name(code: Any) -> str:
    """A grpc.StatusCode (or None: OK) as its name."""
    if code is None:
        return "OK"
    with contextlib.suppress(AttributeError):
        return str(code.name)
    return str(code)
