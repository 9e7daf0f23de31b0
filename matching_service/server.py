"""Process bootstrap: ``matching-service`` / ``python -m matching_service``.

The pod owns instruments (node.py), runs one writer loop per instrument (loop.py: batch,
match with the engine, commit with the store, answer, publish) and serves the internal
MatchingService to authenticated order services (servicer.py).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from exchange.matching.v1 import matching_pb2 as mpb
from exchange_common import logs, tracing
from exchange_common.changes import PODS_TABLE, ChangeListener
from exchange_common.config import MatchingSettings, load
from exchange_common.db import OLTP_SETTINGS, create_pool
from exchange_common.metrics import Registry, install
from exchange_common.server import Service, run_until_signal, settle_heap
from matching_service.metrics import MatchingMetrics
from matching_service.node import MatchingNode
from matching_service.servicer import MatchingServicer
from matching_service.store import Store

log = logging.getLogger(__name__)


async def serve() -> None:
    settings = load(MatchingSettings)
    logs.setup(settings.log_level, settings.log_format, "matching")
    tracing.setup("matching-service")
    registry = Registry()
    metrics = MatchingMetrics(registry)
    install(metrics)
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
        # A hung pod must not keep a transaction (and its row locks) open.
        server_settings={**OLTP_SETTINGS, "idle_in_transaction_session_timeout":
                         str(int(settings.owner_session_timeout * 1000))})
    # A Redis that hangs fails a publish (kept and retried) instead of holding it forever.
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
    metrics.watch_pool("matching", pool)
    node = MatchingNode(settings, Store(pool), redis, metrics)
    # A halt, a new status or price band, a new instrument: applied at once, not at the
    # next poll, and before this pod tells the admin call's wait_applied it has.
    changes = ChangeListener(settings.database_url)
    changes.on_async("instruments", node.refresh_specs)
    # Another pod registered, handed an instrument over or released some: look again.
    changes.on(PODS_TABLE, node.changed.set)
    changes.start()
    # Internal: only authenticated order services get past health and reflection.
    service = Service(settings, settings.matching_listen, internal=True)
    service.add_service(mpb.DESCRIPTOR.services_by_name["MatchingService"],
                        MatchingServicer(node))
    # Listening before owning: once this pod is registered, other pods may hand it
    # instruments, and the order services must reach it at once (a command that arrives
    # before it owns anything is refused NOT_OWNER and retried).
    port = await service.start()
    await node.start()
    await service.set_serving(True)
    if settings.metrics_listen:
        registry.serve(settings.metrics_listen)
    settle_heap()
    log.info("matching service listening on port %d, owning %s", port,
             sorted(loop.spec.symbol for loop in node.loops.values()) or "nothing yet")
    # The instruments are handed over or released before the server stops, so that the
    # commands refused meanwhile reach the order services (which retry them on the new
    # owner) over the streams still open.
    await run_until_signal(service, [changes.stop, redis.aclose, pool.close, registry.stop],
                           drain=[node.stop])


def main() -> None:
    asyncio.run(serve())
