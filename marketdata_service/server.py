"""Process bootstrap: ``marketdata-service`` / ``python -m marketdata_service``.

Listens on ``EXCHANGE_MARKETDATA_LISTEN`` (default 0.0.0.0:50052) at once; health turns
SERVING only after the initial state has been loaded from PostgreSQL. On SIGTERM: health
NOT_SERVING, open streams end with UNAVAILABLE (clients resubscribe elsewhere), in-flight unary
calls get the shutdown grace, then the feed, Redis and the pool are closed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg
import redis.asyncio as redis_asyncio

from exchange_common import logs, tracing
from exchange_common.changes import ChangeListener
from exchange_common.config import MarketDataSettings, load
from exchange_common.db import create_pool
from exchange_common.metrics import Registry, install
from exchange_common.paging import PageTokens
from exchange_common.server import Service, run_until_signal, settle_heap
from exchange_common.workers import Workers, ready_and_wait_to_serve, stop_with_parent
from marketdata_service.feed import MarketFeed
from marketdata_service.metrics import MarketDataMetrics
from marketdata_service.servicer import RESPONSE_SERIALIZERS, SERVICE, MarketDataServicer
from marketdata_service.store import MarketStore

log = logging.getLogger("marketdata_service")


class MarketDataService(Service):
    def __init__(self, settings: MarketDataSettings, feed: MarketFeed) -> None:
        super().__init__(settings, settings.marketdata_listen,
                         reuse_port=settings.marketdata_workers > 1)
        self.feed = feed

    async def stop(self) -> None:
        await self.set_serving(False)
        # Streams never end on their own: end them now rather than after the grace period.
        for market in self.feed.markets.values():
            market.close_subscribers()
        await super().stop()


@dataclass
class App:
    service: MarketDataService
    feed: MarketFeed
    pool: asyncpg.Pool
    redis: redis_asyncio.Redis
    _ready_task: asyncio.Task
    changes: ChangeListener
    registry: Registry
    # Worker 0's other workers (EXCHANGE_MARKETDATA_WORKERS > 1), else None.
    workers: Workers | None = None

    @property
    def port(self) -> int:
        return self.service.port

    async def close_resources(self) -> None:
        if self.workers is not None:
            await self.workers.stop()
        self._ready_task.cancel()
        await self.changes.stop()
        await self.feed.stop()
        await self.redis.aclose()
        await self.pool.close()
        await self.registry.stop()

    async def close(self) -> None:
        """Stop serving and release everything (what a SIGTERM does)."""
        await self.service.stop()
        await self.close_resources()


async def start(settings: MarketDataSettings, *, block_ms: int = 1000,
                reload_interval: float = 10.0) -> App:
    """Start the gRPC server and the feed; the service turns SERVING once loaded."""
    # min_size 0: starting does not need PostgreSQL; the feed retries until it can load.
    index = settings.worker
    registry = Registry(workers=settings.marketdata_workers, worker=index)
    metrics = MarketDataMetrics(registry)
    install(metrics)
    pool = await create_pool(settings.database_url, min_size=0,
                             max_size=max(2, settings.db_pool_max), timeout=10)
    redis = redis_asyncio.from_url(
        settings.redis_url,
        socket_connect_timeout=5,
        # Above the XREAD block time, so a blocked read is not taken for a dead server.
        socket_timeout=block_ms / 1000 + 10,
        health_check_interval=30,
    )
    feed = MarketFeed(MarketStore(pool), redis, recent_trades=settings.recent_trades,
                      book_interval=settings.book_update_interval,
                      interval_per_subscriber=settings.book_update_interval_per_subscriber,
                      block_ms=block_ms,
                      reload_interval=reload_interval,
                      heartbeat=settings.marketdata_heartbeat)
    feed.on_lag = metrics.apply_lag.observe
    metrics.watch(feed, settings.max_subscribers)
    metrics.watch_pool("marketdata", pool)
    service = MarketDataService(settings, feed)
    page_tokens = PageTokens.from_settings(settings)
    servicer = MarketDataServicer(
        feed, queue_limit=settings.subscriber_queue, max_lag=settings.subscriber_max_lag,
        heartbeat=settings.marketdata_heartbeat,
        page_tokens=page_tokens, max_subscribers=settings.max_subscribers,
        max_streams_per_connection=settings.max_streams_per_connection)
    service.add_service(SERVICE, servicer, response_serializers=RESPONSE_SERIALIZERS)
    # A halt or a new instrument shows at once, not at the next periodic reload.
    changes = ChangeListener(settings.database_url)
    changes.on("instruments", feed.instruments_changed.set)
    changes.start()
    await service.set_serving(False)
    await service.start()
    feed.start()
    workers = None
    if index == 0 and settings.marketdata_workers > 1:
        # The workers sign page tokens with worker 0's key (random unless set), so that a
        # client's next page may reach any of them.
        host = settings.marketdata_listen.rpartition(":")[0]
        workers = Workers("marketdata_service", settings.marketdata_workers,
                          {"EXCHANGE_MARKETDATA_LISTEN": f"{host}:{service.port}"},
                          settings.shutdown_grace,
                          env={"EXCHANGE_PAGE_TOKEN_KEY": page_tokens.key.decode(),
                               **registry.env},
                          on_exit=registry.worker_gone)
        workers.start()
    if settings.metrics_listen and not index:
        registry.serve(settings.metrics_listen)

    async def serving_when_ready() -> None:
        await feed.ready.wait()
        settle_heap()
        if workers is not None:
            await workers.all_serving()
        if index:
            parent = asyncio.create_task(stop_with_parent(settings.worker_parent_pid))
            await ready_and_wait_to_serve()
        await service.set_serving(True)
        log.info("market data service serving on port %d%s", service.port,
                 f" (worker {index})" if index else "")
        if index:
            await parent

    ready_task = asyncio.create_task(serving_when_ready())
    return App(service, feed, pool, redis, ready_task, changes, registry, workers)


async def serve() -> None:
    settings = load(MarketDataSettings)
    index = settings.worker
    logs.setup(settings.log_level, settings.log_format,
               service=f"marketdata-{index}" if index else "marketdata")
    tracing.setup("marketdata-service")
    try:
        app = await start(settings)
    except (OSError, asyncpg.PostgresError) as err:
        raise SystemExit(f"marketdata: cannot start: {err}") from None
    log.info("market data service listening on %s", settings.marketdata_listen)
    await run_until_signal(app.service, cleanup=[app.close_resources])


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
