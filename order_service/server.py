"""Process bootstrap: ``order-service`` / ``python -m order_service``.

The public trading API (servicer.py over orders.py and session.py) and, unless
``EXCHANGE_ADMIN_LISTEN=off``, the admin API (admin.py), on the order port or one of
its own. The process listens for changes (keys, accounts, tiers, instruments) before it
serves, so its caches never outlive a change.

``EXCHANGE_ORDER_WORKERS`` (default ``auto``: one per core) runs that many such processes
on the same ports (``exchange_common/workers.py``); every one is a whole order service.

Traces (``exchange_common.tracing``) are set up from the ``OTEL_*`` variables at start,
before the servers are built, and flushed at stop.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from exchange.order.v1 import order_pb2 as opb
from exchange_common import logs, tracing
from exchange_common.backlog import Backlog
from exchange_common.changes import ChangeListener
from exchange_common.config import OrderSettings, load
from exchange_common.db import OLTP_SETTINGS, create_pool
from exchange_common.metrics import Registry, install
from exchange_common.paging import PageTokens
from exchange_common.server import Service, run_until_signal, settle_heap
from exchange_common.tls import InternalCaller
from exchange_common.workers import Workers, ready_and_wait_to_serve, stop_with_parent
from order_service.admin import SERVICE as ADMIN_SERVICE
from order_service.admin import AdminAuth, AdminServicer
from order_service.admin_store import AdminStore
from order_service.admission import Admission
from order_service.auth import Authenticator
from order_service.holds import Fees, Holds, Sweeper
from order_service.ledger import Ledger
from order_service.limits import RateLimiter
from order_service.metrics import OrderMetrics
from order_service.orders import Orders
from order_service.routing import Router
from order_service.servicer import TRACED, OrderServicer
from order_service.store import Store
from order_service.updates import UpdateFeed

log = logging.getLogger(__name__)


async def serve() -> None:
    settings = load(OrderSettings)
    logs.setup(settings.log_level, settings.log_format,
               f"order-{settings.worker}" if settings.worker else "order")
    tracing.setup("order-service")
    InternalCaller.from_settings(settings).check()
    count = settings.order_worker_count
    registry = Registry(workers=count, worker=settings.worker)
    metrics = OrderMetrics(registry)
    install(metrics)
    pool = await create_pool(settings.database_url, min_size=settings.db_pool_min,
                             max_size=settings.db_pool_max, server_settings=OLTP_SETTINGS)
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    changes = ChangeListener(settings.database_url)
    changes.start()
    router = Router(pool, settings)
    auth = Authenticator(pool, changes, ttl=settings.cache_ttl,
                         max_failed_per_minute=settings.max_failed_auth_per_minute)
    limiter = RateLimiter(redis, lease=settings.rate_limit_lease, enabled=settings.rate_limits)
    page_tokens = PageTokens.from_settings(settings)
    holds = Holds(pool, settings.hold_min_interval)
    holds.released = lambda why, count: metrics.holds_released(why).inc(count)
    sweeper = Sweeper(pool, holds)
    store = Store(pool, changes, settings.cache_ttl, settings.lookup_min_interval)
    orders = Orders(store, router, page_tokens, settings.matching_timeout, holds,
                    Fees(pool, changes))
    backlog = Backlog() if settings.overload_control else None
    service = Service(settings, settings.order_listen, reuse_port=count > 1, backlog=backlog)
    admission = Admission(backlog, max_wait=settings.overload_max_wait,
                          max_latency=settings.overload_max_latency,
                          max_in_flight=settings.overload_max_in_flight,
                          enabled=settings.overload_control)
    orders.rerouted = admission.forget
    updates = UpdateFeed(settings.redis_url, store)
    updates.start()
    metrics.watch_pool("order", pool)
    metrics.watch_admission(admission)
    service.add_service(opb.DESCRIPTOR.services_by_name["OrderService"], OrderServicer(
        orders, Ledger(store, page_tokens), auth, limiter, admission, metrics,
        max_streams_per_connection=settings.max_streams_per_connection,
        max_commands_per_message=settings.max_commands_per_message, updates=updates),
        traced=TRACED)
    services = [service]
    if settings.admin_listen != "off":
        admin_store = AdminStore(pool, changes)
        admin = AdminServicer(admin_store, AdminAuth(
            admin_store, changes, ttl=settings.cache_ttl,
            max_failed_per_minute=settings.max_failed_auth_per_minute), page_tokens)
        if settings.admin_listen:
            services.append(Service(settings, settings.admin_listen, health_port=False,
                                    reuse_port=count > 1))
        services[-1].add_service(ADMIN_SERVICE, admin)
    # Serve once the caches can be trusted to follow changes (a short wait: they fall
    # back to a 1-second age limit until then).
    await changes.connected(5.0)
    for each in services:
        await each.set_serving(False)
        port = await each.start()
        log.info("%s listening on port %d%s", ", ".join(each.names), port,
                 f" (worker {settings.worker})" if settings.worker else "")
    admission.start()
    sweeper.start()
    if settings.metrics_listen and not settings.worker:
        registry.serve(settings.metrics_listen)
    settle_heap()
    workers = None
    if settings.worker == 0 and count > 1:
        # The ports worker 0 bound (the settings may say port 0), and its page-token key
        # (random unless set), so that a client's next page may reach any worker.
        listen = {"EXCHANGE_ORDER_LISTEN": bound(settings.order_listen, service.port)}
        if settings.admin_listen not in ("", "off"):
            listen["EXCHANGE_ADMIN_LISTEN"] = bound(settings.admin_listen, services[-1].port)
        workers = Workers("order_service", count, listen, settings.shutdown_grace,
                          env={"EXCHANGE_PAGE_TOKEN_KEY": page_tokens.key.decode(),
                               "EXCHANGE_ORDER_WORKERS": str(count), **registry.env},
                          on_exit=registry.worker_gone)
        workers.start()
        await workers.all_serving()
    parent = None
    if settings.worker:
        parent = asyncio.create_task(stop_with_parent(settings.worker_parent_pid))
        await ready_and_wait_to_serve()
    for each in services:
        await each.set_serving(True)
    cleanup = [*(each.stop for each in services[1:]), admission.stop, sweeper.stop, router.close,
               updates.stop, changes.stop, redis.aclose, pool.close, registry.stop]
    if workers is not None:
        cleanup.insert(0, workers.stop)
    try:
        await run_until_signal(service, cleanup)
    finally:
        if parent is not None:
            parent.cancel()


def bound(listen: str, port: int) -> str:
    """``listen`` with the port a server bound on it."""
    return f"{listen.rpartition(':')[0]}:{port}"


def main() -> None:
    asyncio.run(serve())
