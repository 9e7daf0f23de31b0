"""The public exchange.order.v1.OrderService: protobuf in, the orders domain, protobuf out.

Each call is authenticated (``x-api-key`` -> the account and its tier, auth.py) and
charged to the account's rate limit (limits.py); the work is ``Orders``' (orders.py) and
the OrderEntry session's (session.py).

When tracing, each order command is a server span that continues the caller's
``traceparent``: a unary CreateOrder, CancelOrder or AmendOrder is one (``TRACED``: the
handler makes it, exchange_common.handlers), and so is every command of an OrderEntry
message (session.py), in the trace of its stream's ``traceparent``.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common import tracing
from exchange_common.errors import Unavailable, grpc_errors
from exchange_common.handlers import malformed_messages_in_stream
from exchange_common.slots import StreamSlots
from order_service.admission import REFUSAL, Admission
from order_service.auth import Authenticator, Caller
from order_service.cancel_all import answer_deadline, cancel_all
from order_service.ledger import Ledger
from order_service.limits import CANCELS, ORDERS, QUERIES, RateLimiter
from order_service.metrics import OrderMetrics
from order_service.orders import Orders
from order_service.session import OrderEntrySession
from order_service.updates import UpdateFeed

# The unary methods that run in a server span of their own when tracing.
TRACED = ("CreateOrder", "CancelOrder", "AmendOrder")


class OrderServicer(opb_grpc.OrderServiceServicer):
    def __init__(self, orders: Orders, ledger: Ledger, auth: Authenticator,
                 limiter: RateLimiter, admission: Admission, metrics: OrderMetrics, *,
                 max_streams_per_connection: int, max_commands_per_message: int,
                 updates: UpdateFeed | None = None) -> None:
        self.orders = orders
        self.ledger = ledger
        self.metrics = metrics
        self.admission = admission
        self.auth = auth
        self.limiter = limiter
        self.max_commands = max_commands_per_message
        self.sessions = StreamSlots(max_streams_per_connection, what="OrderEntry sessions")
        self.updates = updates
        self.update_streams = StreamSlots(max_streams_per_connection,
                                          what="order update streams")

    async def _caller(self, context: grpc.aio.ServicerContext, kind: str) -> Caller:
        """The authenticated caller, charged one call of ``kind`` (its rate limit)."""
        caller = await self.auth.caller(context)
        await self.limiter.check(caller, kind)
        return caller

    @grpc_errors
    async def CreateOrder(self, request: opb.CreateOrderRequest,
                          context: grpc.aio.ServicerContext) -> opb.CreateOrderResponse:
        # Refused first when the process is behind: before any database or matching work.
        started = time.monotonic()
        span = None
        if tracing.ENABLED:
            span = tracing.current_span()
            span.set_attributes(tracing.order_attributes(request.instrument, request.side,
                                                         request.type))
        if not self.admission.admit():
            self.metrics.refused()
            if span is not None:
                tracing.answered(span, "RESOURCE_EXHAUSTED", "OVERLOADED")
            await context.abort_with_status(REFUSAL)
        err: BaseException | None = None
        try:
            caller = await self._caller(context, ORDERS)
            (answer,) = await self.orders.create(
                caller, [request], self.orders.deadline(context.time_remaining()),
                None if span is None else [span])
            try:
                order, fills = await answer
            except asyncio.CancelledError:
                answer.cancel()  # the caller went away: nothing more is done for it
                raise
        except BaseException as exc:
            err = exc
            raise
        finally:
            self.admission.done(started)
            self.metrics.created("CreateOrder", request.type, started, request.instrument, err)
        if span is not None:
            span.set_attribute("exchange.order_id", order.order_id)
        return opb.CreateOrderResponse(order=order, fills=fills)

    @grpc_errors
    async def CancelOrder(self, request: opb.CancelOrderRequest,
                          context: grpc.aio.ServicerContext) -> opb.CancelOrderResponse:
        started = time.monotonic()
        try:
            caller = await self._caller(context, CANCELS)
            order = await self.orders.cancel(caller, request,
                                             self.orders.deadline(context.time_remaining()))
        except BaseException as err:
            self.metrics.cancel_answered("CancelOrder", started, "", err)
            raise
        self.metrics.cancel_answered("CancelOrder", started, order.instrument, None)
        if tracing.ENABLED:
            _answered_order(order)
        return opb.CancelOrderResponse(order=order)

    @grpc_errors
    async def CancelAllOrders(self, request: opb.CancelAllOrdersRequest,
                              context: grpc.aio.ServicerContext
                              ) -> opb.CancelAllOrdersResponse:
        started = time.monotonic()
        try:
            caller = await self._caller(context, CANCELS)
            orders = await cancel_all(self.orders, caller.account_id, request.instrument,
                                      request.side,
                                      answer_deadline(self.orders, context.time_remaining()))
        except BaseException as err:
            self.metrics.cancel_answered("CancelAllOrders", started, request.instrument, err)
            raise
        self.metrics.cancel_answered("CancelAllOrders", started, request.instrument, None)
        return opb.CancelAllOrdersResponse(orders=orders)

    @grpc_errors
    async def AmendOrder(self, request: opb.AmendOrderRequest,
                         context: grpc.aio.ServicerContext) -> opb.AmendOrderResponse:
        caller = await self._caller(context, ORDERS)
        order, fills = await self.orders.amend(caller, request,
                                               self.orders.deadline(context.time_remaining()))
        if tracing.ENABLED:
            _answered_order(order)
        return opb.AmendOrderResponse(order=order, fills=fills)

    @grpc_errors
    @malformed_messages_in_stream
    async def OrderEntry(self, request_iterator, context: grpc.aio.ServicerContext):
        """The order-entry session (session.py)."""
        caller = await self.auth.caller(context)
        with self.sessions.hold(context):
            session = OrderEntrySession(self.orders, self.limiter, self.admission,
                                        self.metrics, caller,
                                        max_commands=self.max_commands,
                                        matching_timeout=self.orders.matching_timeout,
                                        updates=self.updates)
            if tracing.ENABLED:
                session.trace_parent = tracing.from_metadata(context.invocation_metadata())
            async for response in session.responses(request_iterator):
                yield response

    @grpc_errors
    async def StreamOrderUpdates(self, request: opb.StreamOrderUpdatesRequest,
                                 context: grpc.aio.ServicerContext):
        """The caller's order updates (updates.py)."""
        caller = await self._caller(context, QUERIES)
        if self.updates is None:
            raise Unavailable("order updates are not served here", reason="NOT_SERVED")
        after = request.after_sequence if request.HasField("after_sequence") else None
        with self.update_streams.hold(context):
            async for response in self.updates.follow(caller.account_id, after):
                yield response

    @grpc_errors
    async def GetOrder(self, request: opb.GetOrderRequest,
                       context: grpc.aio.ServicerContext) -> opb.GetOrderResponse:
        order, fills = await self.orders.get(await self._caller(context, QUERIES), request)
        return opb.GetOrderResponse(order=order, fills=fills)

    @grpc_errors
    async def ListOrders(self, request: opb.ListOrdersRequest,
                         context: grpc.aio.ServicerContext) -> opb.ListOrdersResponse:
        return await self.orders.list_orders(await self._caller(context, QUERIES), request)

    @grpc_errors
    async def ListFills(self, request: opb.ListFillsRequest,
                        context: grpc.aio.ServicerContext) -> opb.ListFillsResponse:
        return await self.orders.list_fills(await self._caller(context, QUERIES), request)

    @grpc_errors
    async def GetBalances(self, request: opb.GetBalancesRequest,
                          context: grpc.aio.ServicerContext) -> opb.GetBalancesResponse:
        return await self.ledger.balances(await self._caller(context, QUERIES), request)

    @grpc_errors
    async def ListLedgerEntries(self, request: opb.ListLedgerEntriesRequest,
                                context: grpc.aio.ServicerContext
                                ) -> opb.ListLedgerEntriesResponse:
        return await self.ledger.entries(await self._caller(context, QUERIES), request)


def _answered_order(order: opb.Order) -> None:
    """Put what the answer says about the order on the call's span."""
    span = tracing.current_span()
    span.set_attributes(tracing.order_attributes(order.instrument, order.side, order.type))
    span.set_attribute("exchange.order_id", order.order_id)
