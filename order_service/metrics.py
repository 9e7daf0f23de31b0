"""The order service's metrics (see exchange_common.metrics for the endpoint).

``exchange_order_latency_seconds``: from the moment a command is received (a unary
call, or an order-entry message) to its answer, by method (CreateOrder, CancelOrder,
AmendOrder, OrderEntry), order type (LIMIT, MARKET; empty for cancels) and outcome
(the gRPC status code of the answer: OK, RESOURCE_EXHAUSTED, ...).
"""

from __future__ import annotations

import asyncio
import time

from exchange.common.v1 import common_pb2 as cpb
from exchange_common import metrics
from exchange_common.errors import told
from exchange_common.metrics import Children, Registry, counter, gauge, histogram

TYPES = {value: name.removeprefix("ORDER_TYPE_")
         for name, value in cpb.OrderType.items() if value}


class OrderMetrics(metrics.CommonMetrics):
    def __init__(self, registry: Registry) -> None:
        super().__init__(registry, "order")
        self.latency = Children(histogram(
            registry, "exchange_order_latency_seconds",
            "Seconds from receiving an order command to answering it, by method, order "
            "type and outcome (gRPC status code)", ("method", "type", "outcome")))
        self.accepted = Children(counter(
            registry, "exchange_orders_accepted",
            "New orders the matching engine accepted (placed, whatever happened next)",
            ("instrument",)))
        self.rejected = Children(counter(
            registry, "exchange_orders_rejected",
            "New orders refused, by reason (the ErrorInfo reason of the answer)",
            ("reason",)))
        self.cancelled = Children(counter(
            registry, "exchange_orders_cancelled", "Orders cancelled at their owner's request",
            ("instrument",)))
        self.holds_released = Children(counter(
            registry, "exchange_holds_released",
            "Holds of the order path that no order took, given back: after matching "
            "refused the command (refused) or by the sweeper after the hold TTL (swept)",
            ("why",)))
        self.overload_refused = counter(
            registry, "exchange_overload_refused",
            "New orders refused with OVERLOADED before any work (overload control)")
        self.overload_shedding = gauge(
            registry, "exchange_overload_shedding",
            "1 while this process refuses new orders for overload (summed over workers)")
        self.overload_in_flight = gauge(
            registry, "exchange_overload_in_flight", "Admitted orders not answered yet")
        self.overload_limit = gauge(
            registry, "exchange_overload_limit",
            "Orders admitted in flight at most, as overload control adapts it")
        self.overload_wait = gauge(
            registry, "exchange_overload_wait_seconds",
            "How long calls wait for a handler, as overload control measured it last",
            mode="max")

    def created(self, method: str, order_type: int, started: float, instrument: str,
                err: BaseException | None) -> None:
        """A new order answered: ``err`` is what refused it (None: accepted)."""
        code = "OK"
        if err is None:
            self.accepted(instrument).inc()
        else:
            code = outcome(err)
            self.rejected(reason(err)).inc()
        self.latency(method, TYPES.get(order_type, ""), code).observe(
            time.monotonic() - started)

    def refused(self, count: int = 1) -> None:
        """``count`` new orders refused for overload (answered at once)."""
        self.overload_refused.inc(count)
        self.rejected("OVERLOADED").inc(count)

    def cancel_answered(self, method: str, started: float, instrument: str,
                        err: BaseException | None) -> None:
        if err is None:
            self.cancelled(instrument).inc()
        self.latency(method, "", "OK" if err is None else outcome(err)).observe(
            time.monotonic() - started)

    def watch_admission(self, admission) -> None:
        def sample() -> None:
            self.overload_shedding.set(
                1 if admission.overloaded or admission.in_flight >= admission.limit else 0)
            self.overload_in_flight.set(admission.in_flight)
            self.overload_limit.set(admission.limit)
            self.overload_wait.set(admission.wait)
        self.registry.sample(sample)


def outcome(err: BaseException) -> str:
    """The status code the caller was answered with (CANCELLED: it went away)."""
    if isinstance(err, asyncio.CancelledError):
        return "CANCELLED"
    return told(err).code.name


def reason(err: BaseException) -> str:
    """The ErrorInfo reason the caller was answered with (CANCELLED: it went away)."""
    if isinstance(err, asyncio.CancelledError):
        return "CANCELLED"
    return told(err).reason
