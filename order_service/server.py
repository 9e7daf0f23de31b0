"""The public trading API: exchange.order.v1.OrderService.

The servicer authenticates the caller (``x-api-key`` metadata), validates and
converts the request, routes it to the matching pod that owns the instrument
and turns the answer back into the public messages. It holds no state of its
own beyond caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import deque

import grpc
from redis.asyncio import Redis

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common import logs
from exchange_common.changes import ChangeListener
from exchange_common.config import OrderSettings, load
from exchange_common.db import OLTP_SETTINGS, create_pool
from exchange_common.errors import (
    AlreadyExists,
    DeadlineExceeded,
    ExchangeError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    as_exchange_error,
    clip,
    grpc_errors,
)
from exchange_common.handlers import MalformedRequest, malformed_messages_in_stream
from exchange_common.ids import instrument_of, parse_id
from exchange_common.instruments import InstrumentSpec
from exchange_common.paging import INT64_MAX, PageTokens, page_size
from exchange_common.server import Service, run_until_signal
from exchange_common.slots import StreamSlots
from exchange_common.tls import InternalCaller
from order_service.admin import SERVICE as ADMIN_SERVICE
from order_service.admin import AdminAuth, AdminServicer
from order_service.admin_store import AdminStore
from order_service.auth import Authenticator, Caller
from order_service.convert import (
    fill_from_row,
    fills_from_report,
    order_from_report,
    order_from_row,
)
from order_service.limits import CANCELS, ORDERS, QUERIES, RateLimiter
from order_service.queries import Queries
from order_service.routing import Router
from order_service.validation import (
    MAX_CLIENT_ORDER_ID,
    ValidOrder,
    check_cancel_allowed,
    check_client_order_id,
    validate_amend,
    validate_new_order,
)

log = logging.getLogger(__name__)

# RetryInfo of an order refused for the open-order cap: nothing frees a slot but the
# account's own cancels and fills, so this is only a hint.
OPEN_ORDER_RETRY = 1.0
# Events (and fills) in one OrderEntry answer message: a few hundred KB at most, well
# under the message limit, however many commands one request message carried.
MAX_EVENTS_PER_MESSAGE = 1000


class OrderServicer(opb_grpc.OrderServiceServicer):
    def __init__(self, queries: Queries, router: Router, settings: OrderSettings,
                 auth: Authenticator, limiter: RateLimiter) -> None:
        self.q = queries
        self.router = router
        self.settings = settings
        self.auth = auth
        self.limiter = limiter
        self.sessions = StreamSlots(settings.max_streams_per_connection,
                                    what="OrderEntry sessions")
        self.page_tokens = PageTokens.from_settings(settings)

    # -- helpers ---------------------------------------------------------------

    async def _caller(self, context: grpc.aio.ServicerContext, kind: str) -> Caller:
        """The authenticated caller, charged one call of ``kind`` (its rate limit)."""
        caller = await self.auth.caller(context)
        await self.limiter.check(caller, kind)
        return caller

    async def _spec(self, symbol: str) -> InstrumentSpec:
        if not symbol:
            raise InvalidArgument("instrument is required", reason="INSTRUMENT_REQUIRED",
                                  field="instrument")
        spec = await self.q.instrument(symbol)
        if spec is None:
            raise NotFound(f"unknown instrument {clip(symbol)!r}", reason="INSTRUMENT_NOT_FOUND",
                           metadata={"instrument": clip(symbol)})
        return spec

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        budget = self.settings.matching_timeout
        remaining = context.time_remaining()
        if remaining is not None:
            budget = min(budget, max(0.0, remaining - 0.05))
        return time.monotonic() + budget

    async def _order_with_fills(self, account_id: int,
                                order_id: int) -> tuple[opb.Order, list[opb.Fill]] | None:
        row = await self.q.order(account_id, order_id)
        return None if row is None else await self._with_fills(row)

    async def _with_fills(self, row) -> tuple[opb.Order, list[opb.Fill]]:
        spec = await self.q.instrument_by_id(row["instrument_id"])
        assert spec is not None
        order = order_from_row(spec, row)
        fills = [fill_from_row(spec, order, f)
                 for f in await self.q.order_fills(row["order_id"])]
        return order, fills

    async def _find(self, account_id: int, order_id: str, client_order_id: str) -> int:
        """The order id named by a Get/Cancel request (exactly one of the two fields)."""
        if bool(order_id) == bool(client_order_id):
            raise InvalidArgument("give exactly one of order_id or client_order_id",
                                  reason="ORDER_REFERENCE_INVALID", field="order_id")
        if order_id:
            oid = parse_id(order_id)
            if oid is None:
                raise InvalidArgument(f"order_id {clip(order_id)!r} is not an order id",
                                      reason="ORDER_ID_INVALID", field="order_id")
            return oid
        check_client_order_id(client_order_id)
        row = await self.q.order_by_client_id(account_id, client_order_id)
        if row is None:
            raise NotFound(f"no order with client_order_id {clip(client_order_id)!r}",
                           reason="ORDER_NOT_FOUND")
        return row["order_id"]

    # -- the commands, shared by the unary calls and the order-entry session ----

    async def _create(self, caller: Caller, request: opb.CreateOrderRequest,
                      deadline: float) -> opb.CreateOrderResponse:
        account_id = caller.account_id
        spec = await self._spec(request.instrument)
        order = validate_new_order(request, spec)
        if order.client_order_id:
            # A retry of an order committed long ago (or before a matching restart)
            # is answered from the database; the matching engine deduplicates the
            # recent ones, race-free.
            existing = await self.q.order_by_client_id(account_id, order.client_order_id)
            if existing is not None:
                return await self._existing(account_id, existing, order, spec)
        client_order_id = order.client_order_id or f"x-{uuid.uuid4().hex}"
        command = _new_order_command(spec, caller, order, client_order_id)
        result = await self.router.execute(spec.instrument_id, command, deadline,
                                           idempotent=True)
        created = _created(spec, order, client_order_id, result)
        if created is None:  # a retry the engine recognised: answered as committed
            found = await self._order_with_fills(account_id, result.order.order_id)
            assert found is not None, "a deduplicated order is committed before the answer"
            created = found
        return opb.CreateOrderResponse(order=created[0], fills=created[1])

    async def _existing(self, account_id: int, row, order: ValidOrder,
                        spec: InstrumentSpec) -> opb.CreateOrderResponse:
        same = (row["instrument_id"] == spec.instrument_id and row["side"] == order.side
                and row["order_type"] == order.type
                and row["time_in_force"] == order.time_in_force and row["price"] == order.price
                and row["quantity"] == order.quantity and row["post_only"] == order.post_only)
        if not same:
            raise AlreadyExists(
                f"client_order_id {clip(order.client_order_id)!r} is already used by order "
                f"{row['order_id']} with different contents",
                reason="CLIENT_ORDER_ID_IN_USE", metadata={"order_id": str(row["order_id"])})
        current, fills = await self._with_fills(row)
        return opb.CreateOrderResponse(order=current, fills=fills)

    async def _change(self, account_id: int, order_id: int, command: mpb.Command,
                      deadline: float) -> tuple[opb.Order, mpb.OrderReport]:
        """Route a cancel or amend of ``order_id``; the order as committed after it."""
        instrument_id = instrument_of(order_id)
        result = await self.router.execute(instrument_id, command, deadline, idempotent=False)
        if result.WhichOneof("result") == "error":
            if result.error.code != mpb.ERROR_CODE_ORDER_NOT_OPEN:
                raise _matching_error(result.error)
            found = await self._order_with_fills(account_id, order_id)
            if found is None:
                raise NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")
            raise FailedPrecondition(
                f"order {order_id} is not open (state {cpb.OrderState.Name(found[0].state)})",
                reason="ORDER_NOT_OPEN", metadata={"order_id": str(order_id)})
        found = await self._order_with_fills(account_id, order_id)
        assert found is not None, "a changed order is committed before the answer"
        return found[0], result.order

    async def _cancel(self, account_id: int, request: opb.CancelOrderRequest,
                      deadline: float) -> opb.CancelOrderResponse:
        order_id = await self._find(account_id, request.order_id, request.client_order_id)
        spec = await self.q.instrument_by_id(instrument_of(order_id))
        if spec is None:
            raise NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")
        check_cancel_allowed(spec)
        command = mpb.Command(cancel_order=mpb.CancelOrder(
            instrument_id=instrument_of(order_id), account_id=account_id, order_id=order_id))
        order, _ = await self._change(account_id, order_id, command, deadline)
        return opb.CancelOrderResponse(order=order)

    async def _amend(self, account_id: int, request: opb.AmendOrderRequest,
                     deadline: float) -> opb.AmendOrderResponse:
        order_id = await self._find(account_id, request.order_id, request.client_order_id)
        row = await self.q.order(account_id, order_id)
        if row is None:
            raise NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")
        spec = await self.q.instrument_by_id(row["instrument_id"])
        assert spec is not None
        price, quantity = validate_amend(request, spec, row)
        command = mpb.Command(amend_order=mpb.AmendOrder(
            instrument_id=spec.instrument_id, account_id=account_id, order_id=order_id,
            price=price, quantity=quantity))
        order, report = await self._change(account_id, order_id, command, deadline)
        return opb.AmendOrderResponse(order=order,
                                      fills=fills_from_report(spec, order, report))

    # -- RPCs ------------------------------------------------------------------

    @grpc_errors
    async def CreateOrder(self, request: opb.CreateOrderRequest,
                          context: grpc.aio.ServicerContext) -> opb.CreateOrderResponse:
        caller = await self._caller(context, ORDERS)
        return await self._create(caller, request, self._deadline(context))

    @grpc_errors
    async def CancelOrder(self, request: opb.CancelOrderRequest,
                          context: grpc.aio.ServicerContext) -> opb.CancelOrderResponse:
        caller = await self._caller(context, CANCELS)
        return await self._cancel(caller.account_id, request, self._deadline(context))

    @grpc_errors
    async def AmendOrder(self, request: opb.AmendOrderRequest,
                         context: grpc.aio.ServicerContext) -> opb.AmendOrderResponse:
        caller = await self._caller(context, ORDERS)
        return await self._amend(caller.account_id, request, self._deadline(context))

    @grpc_errors
    @malformed_messages_in_stream
    async def OrderEntry(self, request_iterator, context: grpc.aio.ServicerContext):
        """The order-entry session. Commands run concurrently (so commands of many
        messages share stream messages to matching and group commits) and answers
        are coalesced into as few messages as are ready.

        Creates take a fast path when the instrument and its owner are cached: a
        message's creates are validated at once, checked for client_order_id reuse
        in one query, sent to matching without a task each, and answered from a
        callback. Everything else (cancels, amends, retries, duplicates, a cold
        cache, a moved owner) takes the general path, one task per command.

        Rate limits are taken per message: its creates and amends from the orders
        bucket, its cancels from the cancels bucket; commands past what was granted
        are answered RESOURCE_EXHAUSTED (RATE_LIMITED), and so are commands past
        ``max_commands_per_message``. A message that is not valid protobuf is answered
        with an event carrying its error (MALFORMED_REQUEST), and the session goes on."""
        caller = await self.auth.caller(context)
        with self.sessions.hold(context):
            async for response in self._session(caller, request_iterator):
                yield response

    async def _session(self, caller: Caller, request_iterator):
        session = _Session()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    if isinstance(request, MalformedRequest):
                        session.outstanding += 1
                        session.answer(opb.OrderEntryEvent(error=request.to_status_proto()))
                        continue
                    session.outstanding += len(request.commands)
                    await self._admit(caller, request.commands, session)
            finally:
                session.reading = False
                session.wake.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                if session.out:
                    yield opb.OrderEntryResponse(events=session.take())
                    continue
                if not session.reading and session.outstanding <= 0:
                    break
                session.wake.clear()
                await session.wake.wait()
        finally:
            reader.cancel()
            for task in list(session.tasks):
                task.cancel()

    async def _admit(self, caller: Caller, commands, session: _Session) -> None:
        """Start every command of one session message; each is answered exactly once."""
        fast: list[tuple[opb.OrderEntryCommand, InstrumentSpec, ValidOrder]] = []
        limit = self.settings.max_commands_per_message
        kinds = [_KINDS.get(command.WhichOneof("command")) for command in commands[:limit]]
        granted = {ORDERS: 0, CANCELS: 0}
        waits = {ORDERS: 0.0, CANCELS: 0.0}
        for kind in granted:
            wanted = kinds.count(kind)
            if wanted:
                granted[kind], waits[kind] = await self.limiter.take(caller, kind, wanted)
        for i, command in enumerate(commands):
            kind = kinds[i] if i < limit else None
            if i >= limit or (kind is not None and not granted[kind]):
                session.answer(opb.OrderEntryEvent(
                    client_order_id=_echoed(_client_order_id(command)),
                    error=(self.limiter.refusal(kind, waits[kind]) if i < limit else
                           InvalidArgument(
                               f"at most {limit} commands in one message; this one has "
                               f"{len(commands)}", reason="TOO_MANY_COMMANDS",
                               field="commands")).to_status_proto()))
                continue
            if kind is not None:
                granted[kind] -= 1
            if command.WhichOneof("command") == "create":
                create = command.create
                spec = self.q.cached_instrument(create.instrument)
                if spec is not None and create.client_order_id:
                    try:
                        order = validate_new_order(create, spec)
                    except ExchangeError as err:
                        session.answer(opb.OrderEntryEvent(
                            client_order_id=_echoed(create.client_order_id),
                            error=err.to_status_proto()))
                        continue
                    fast.append((command, spec, order))
                    continue
            session.spawn(self._answer(session, caller, command))
        if fast:
            session.spawn(self._create_many(session, caller, fast))

    async def _answer(self, session: _Session, caller: Caller,
                      command: opb.OrderEntryCommand) -> None:
        session.answer(await self._entry(caller, command))

    async def _create_many(self, session: _Session, caller: Caller,
                           creates: list[tuple[opb.OrderEntryCommand, InstrumentSpec,
                                               ValidOrder]]) -> None:
        """The fast path of a message's validated creates (see OrderEntry)."""
        account_id = caller.account_id
        deadline = time.monotonic() + self.settings.matching_timeout
        try:
            taken = await self.q.client_ids.lookup_many(
                account_id, [order.client_order_id for _, _, order in creates])
        except Exception as err:  # noqa: BLE001 - every create of the message is answered
            status = as_exchange_error(err, "OrderEntry").to_status_proto()
            for _, _, order in creates:
                session.answer(opb.OrderEntryEvent(client_order_id=order.client_order_id,
                                                   error=status))
            return
        router = self.router
        for instrument_id in {spec.instrument_id for _, spec, _ in creates}:
            if router.cached_owner(instrument_id) is None:
                with contextlib.suppress(Exception):  # the general path reports it
                    await router.owner(instrument_id, refresh=True)
        for command, spec, order in creates:
            address = router.cached_owner(spec.instrument_id)
            if address is None or order.client_order_id in taken:
                session.spawn(self._answer(session, caller, command))
                continue
            try:
                fut = router.send(spec.instrument_id, address,
                                  _new_order_command(spec, caller, order,
                                                     order.client_order_id),
                                  deadline, idempotent=True)
            except Exception as err:  # noqa: BLE001 - answered, never left waiting
                session.answer(opb.OrderEntryEvent(
                    client_order_id=order.client_order_id,
                    error=as_exchange_error(err, "OrderEntry").to_status_proto()))
                continue
            fut.add_done_callback(functools.partial(self._fast_created, session, caller,
                                                    command, spec, order))

    def _fast_created(self, session: _Session, caller: Caller,
                      command: opb.OrderEntryCommand, spec: InstrumentSpec, order: ValidOrder,
                      fut: asyncio.Future) -> None:
        coid = order.client_order_id
        try:
            if fut.cancelled():
                raise Unavailable("the order service is stopping", reason="SHUTTING_DOWN")
            err = fut.exception()
            if err is not None and not isinstance(err, DeadlineExceeded):
                # A broken stream or a moved owner: the general path retries (the
                # client_order_id makes that safe).
                session.spawn(self._answer(session, caller, command))
                return
            if err is not None:
                raise err
            result = fut.result()
            if (result.WhichOneof("result") == "error"
                    and result.error.code == mpb.ERROR_CODE_NOT_OWNER):
                session.spawn(self._answer(session, caller, command))
                return
            created = _created(spec, order, coid, result)
            if created is None:  # a retry the engine recognised: answered as committed
                session.spawn(self._answer(session, caller, command))
                return
            session.answer(opb.OrderEntryEvent(client_order_id=coid, order=created[0],
                                               fills=created[1]))
        except Exception as err:  # noqa: BLE001 - every failure is answered
            status = as_exchange_error(err, "OrderEntry").to_status_proto()
            session.answer(opb.OrderEntryEvent(client_order_id=coid, error=status))

    async def _entry(self, caller: Caller,
                     command: opb.OrderEntryCommand) -> opb.OrderEntryEvent:
        """One session command, answered with the order or the error as a status."""
        account_id = caller.account_id
        which = command.WhichOneof("command")
        deadline = time.monotonic() + self.settings.matching_timeout
        coid = ""
        try:
            if which == "create":
                coid = command.create.client_order_id
                if not coid:
                    raise InvalidArgument("client_order_id is required in an order-entry "
                                          "session (it correlates the answer)",
                                          reason="CLIENT_ORDER_ID_REQUIRED",
                                          field="create.client_order_id")
                created = await self._create(caller, command.create, deadline)
                return opb.OrderEntryEvent(client_order_id=coid, order=created.order,
                                           fills=created.fills)
            if which == "cancel":
                coid = command.cancel.client_order_id
                cancelled = await self._cancel(account_id, command.cancel, deadline)
                return opb.OrderEntryEvent(client_order_id=cancelled.order.client_order_id,
                                           order=cancelled.order)
            if which == "amend":
                coid = command.amend.client_order_id
                amended = await self._amend(account_id, command.amend, deadline)
                return opb.OrderEntryEvent(client_order_id=amended.order.client_order_id,
                                           order=amended.order, fills=amended.fills)
            raise InvalidArgument("empty command: set create, cancel or amend",
                                  reason="COMMAND_REQUIRED", field="command")
        except Exception as err:  # noqa: BLE001 - every failure is answered, none ends the session
            status = as_exchange_error(err, "OrderEntry").to_status_proto()
            return opb.OrderEntryEvent(client_order_id=_echoed(coid), error=status)

    @grpc_errors
    async def GetOrder(self, request: opb.GetOrderRequest,
                       context: grpc.aio.ServicerContext) -> opb.GetOrderResponse:
        account_id = (await self._caller(context, QUERIES)).account_id
        order_id = await self._find(account_id, request.order_id, request.client_order_id)
        found = await self._order_with_fills(account_id, order_id)
        if found is None:
            raise NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")
        return opb.GetOrderResponse(order=found[0], fills=found[1])

    @grpc_errors
    async def ListOrders(self, request: opb.ListOrdersRequest,
                         context: grpc.aio.ServicerContext) -> opb.ListOrdersResponse:
        account_id = (await self._caller(context, QUERIES)).account_id
        size = page_size(request.page_size)
        instrument_id = (await self._spec(request.instrument)).instrument_id \
            if request.instrument else None
        if request.status not in (0, 1, 2):
            raise InvalidArgument("status must be a OrderStatusFilter value",
                                  reason="STATUS_FILTER_INVALID", field="status")
        # The account is among the filters: a token of another account's list is refused.
        filters = ("orders", account_id, instrument_id, request.status)
        position = self.page_tokens.decode(request.page_token, filters, (INT64_MAX,))
        before = position[0] if position else INT64_MAX
        rows = await self.q.list_orders(account_id, instrument_id, request.status, before,
                                        size + 1)
        more = len(rows) > size
        rows = rows[:size]
        orders = []
        for row in rows:
            spec = await self.q.instrument_by_id(row["instrument_id"])
            orders.append(order_from_row(spec, row))
        token = self.page_tokens.encode([rows[-1]["order_id"]], filters) if more else ""
        return opb.ListOrdersResponse(orders=orders, next_page_token=token)

    @grpc_errors
    async def ListFills(self, request: opb.ListFillsRequest,
                        context: grpc.aio.ServicerContext) -> opb.ListFillsResponse:
        account_id = (await self._caller(context, QUERIES)).account_id
        size = page_size(request.page_size)
        instrument_id = (await self._spec(request.instrument)).instrument_id \
            if request.instrument else None
        order_id = None
        if request.order_id:
            order_id = parse_id(request.order_id)
            if order_id is None:
                raise InvalidArgument("order_id is not an order id", reason="ORDER_ID_INVALID",
                                      field="order_id")
        filters = ("fills", account_id, instrument_id, order_id)
        # (trade id, liquidity: 1 maker, 2 taker) of the last fill of the previous page
        position = self.page_tokens.decode(request.page_token, filters, (INT64_MAX, 2))
        before = (position[0], position[1]) if position else (INT64_MAX, 3)
        rows = await self.q.list_fills(account_id, instrument_id, order_id, before, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        fills = []
        for row in rows:
            spec = await self.q.instrument_by_id(row["instrument_id"])
            fills.append(fill_from_row(spec, None, row))
        token = (self.page_tokens.encode([rows[-1]["trade_id"], rows[-1]["liquidity"]],
                                         filters) if more else "")
        return opb.ListFillsResponse(fills=fills, next_page_token=token)


class _Session:
    """An order-entry session's answers, waiting to be written (coalesced)."""

    def __init__(self) -> None:
        self.out: deque[opb.OrderEntryEvent] = deque()
        self.wake = asyncio.Event()
        self.outstanding = 0  # commands read and not answered yet
        self.reading = True
        self.tasks: set[asyncio.Task] = set()

    def answer(self, event: opb.OrderEntryEvent) -> None:
        self.out.append(event)
        self.outstanding -= 1
        self.wake.set()

    def take(self) -> list[opb.OrderEntryEvent]:
        """The answers for the next message: those that wait, up to
        ``MAX_EVENTS_PER_MESSAGE`` events and fills (at least one event); the rest go in
        the messages after it (thousands of commands in one message are answered at once)."""
        out = self.out
        events = []
        weight = 0
        while out and (not events or weight + 1 + len(out[0].fills)
                       <= MAX_EVENTS_PER_MESSAGE):
            event = out.popleft()
            weight += 1 + len(event.fills)
            events.append(event)
        return events

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _echoed(client_order_id: str) -> str:
    """A command's client_order_id as its answer carries it: unchanged when it could be
    valid, clipped when longer (a huge one never makes a huge answer)."""
    return clip(client_order_id, MAX_CLIENT_ORDER_ID)


def _new_order_command(spec: InstrumentSpec, caller: Caller, order: ValidOrder,
                       client_order_id: str) -> mpb.Command:
    return mpb.Command(new_order=mpb.NewOrder(
        instrument_id=spec.instrument_id, account_id=caller.account_id, side=order.side,
        type=order.type, time_in_force=order.time_in_force, price=order.price,
        quantity=order.quantity, client_order_id=client_order_id, post_only=order.post_only,
        max_open_orders=caller.tier.max_open_orders))


# OrderEntry commands by the rate-limit bucket they are charged to.
_KINDS = {"create": ORDERS, "amend": ORDERS, "cancel": CANCELS}


def _client_order_id(command: opb.OrderEntryCommand) -> str:
    """The client_order_id an OrderEntry command names ("" if none)."""
    which = command.WhichOneof("command")
    return getattr(command, which).client_order_id if which else ""


def _created(spec: InstrumentSpec, order: ValidOrder, client_order_id: str,
             result: mpb.Result) -> tuple[opb.Order, list[opb.Fill]] | None:
    """The order and its fills from matching's answer to a new order; None when the
    engine recognised a retry (answer it from the database); raises for errors."""
    if result.WhichOneof("result") == "error":
        err = result.error
        if err.code == mpb.ERROR_CODE_DUPLICATE_CLIENT_ORDER_ID:
            raise AlreadyExists(
                f"client_order_id {clip(client_order_id)!r} is already used by order "
                f"{err.order_id} with different contents",
                reason="CLIENT_ORDER_ID_IN_USE", metadata={"order_id": str(err.order_id)})
        raise _matching_error(err)
    report = result.order
    if report.duplicate:
        return None
    out = order_from_report(spec, report, side=order.side, type_=order.type,
                            tif=order.time_in_force, price=order.price,
                            client_order_id=client_order_id, post_only=order.post_only)
    return out, fills_from_report(spec, out, report)


def _matching_error(err: mpb.CommandError) -> Exception:
    if err.code == mpb.ERROR_CODE_UNAVAILABLE:
        return Unavailable("the journal database is unavailable; nothing was placed",
                           reason="JOURNAL_UNAVAILABLE")
    if err.code == mpb.ERROR_CODE_NOT_OWNER:
        return Unavailable("no matching engine owns this instrument right now; retry later",
                           reason="MATCHING_UNAVAILABLE")
    if err.code == mpb.ERROR_CODE_HALTED:
        return FailedPrecondition(err.message, reason="INSTRUMENT_HALTED")
    if err.code == mpb.ERROR_CODE_CANCEL_ONLY:
        return FailedPrecondition(err.message, reason="INSTRUMENT_CANCEL_ONLY")
    if err.code == mpb.ERROR_CODE_PRICE_OUTSIDE_BAND:
        return InvalidArgument(err.message, reason="PRICE_OUTSIDE_BAND", field="price")
    if err.code == mpb.ERROR_CODE_OPEN_ORDER_LIMIT:
        return ResourceExhausted(err.message, reason="OPEN_ORDER_LIMIT",
                                 retry_after=OPEN_ORDER_RETRY)
    if err.code == mpb.ERROR_CODE_POST_ONLY_WOULD_TAKE:
        return FailedPrecondition(err.message or "the new price would take liquidity",
                                  reason="POST_ONLY_WOULD_TAKE")
    return InvalidArgument(err.message or "rejected by the matching engine",
                           reason="MATCHING_REJECTED")


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
    service = Service(settings, settings.order_listen)
    orders = OrderServicer(Queries(pool, changes, settings.cache_ttl,
                                   settings.lookup_min_interval),
                           router, settings, auth, limiter)
    service.add_service(opb.DESCRIPTOR.services_by_name["OrderService"], orders)
    services = [service]
    if settings.admin_listen != "off":
        admin_store = AdminStore(pool, changes)
        admin = AdminServicer(admin_store, AdminAuth(
            admin_store, changes, ttl=settings.cache_ttl,
            max_failed_per_minute=settings.max_failed_auth_per_minute), orders.page_tokens)
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
