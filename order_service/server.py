"""Process bootstrap: ``order-service`` / ``python -m order_service``.

The public trading API (servicer.py over orders.py and session.py) and, unless
``EXCHANGE_ADMIN_LISTEN=off``, the admin API (admin.py), on the order port or one of
its own. The process listens for changes (keys, accounts, tiers, instruments) before it
serves, so its caches never outlive a change.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from exchange.order.v1 import order_pb2 as opb
from exchange_common import logs
from exchange_common.changes import ChangeListener
from exchange_common.config import OrderSettings, load
from exchange_common.db import OLTP_SETTINGS, create_pool
from exchange_common.paging import PageTokens
from exchange_common.server import Service, run_until_signal
from exchange_common.tls import InternalCaller
from order_service.admin import SERVICE as ADMIN_SERVICE
from order_service.admin import AdminAuth, AdminServicer
from order_service.admin_store import AdminStore
from order_service.auth import Authenticator
from order_service.limits import RateLimiter
from order_service.orders import Orders
from order_service.routing import Router
from order_service.servicer import OrderServicer
from order_service.store import Store

log = logging.getLogger(__name__)


async def serve() -> None:
    settings = load(OrderSettings)
    logs.setup(settings.log_level, settings.log_format, "order")
    InternalCaller.from_settings(settings).check()
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
    orders = Orders(Store(pool, changes, settings.cache_ttl, settings.lookup_min_interval),
                    router, page_tokens, settings.matching_timeout)
    service = Service(settings, settings.order_listen)
    service.add_service(opb.DESCRIPTOR.services_by_name["OrderService"], OrderServicer(
        orders, auth, limiter, max_streams_per_connection=settings.max_streams_per_connection,
        max_commands_per_message=settings.max_commands_per_message))
    services = [service]
    if settings.admin_listen != "off":
        admin_store = AdminStore(pool, changes)
        admin = AdminServicer(admin_store, AdminAuth(
            admin_store, changes, ttl=settings.cache_ttl,
            max_failed_per_minute=settings.max_failed_auth_per_minute), page_tokens)
        if settings.admin_listen:
            services.append(Service(settings, settings.admin_listen, health_port=False))
        services[-1].add_service(ADMIN_SERVICE, admin)
    # Serve once the caches can be trusted to follow changes (a short wait: they fall
    # back to a 1-second age limit until then).
    await changes.connected(5.0)
    for each in services:
        port = await each.start()
        await each.set_serving(True)
        log.info("%s listening on port %d", ", ".join(each.names), port)
    await run_until_signal(service, [*(each.stop for each in services[1:]), router.close,
                                     changes.stop, redis.aclose, pool.close])


def main() -> None:
    asyncio.run(serve())
