"""The OrderEntry session: many commands per message in, answers out as they are ready.

Every command is answered exactly once, with the order after it (and the fills it made)
or the error a unary call would have got, correlated by client_order_id. Commands run
concurrently, so the commands of many messages share stream messages to matching and
group commits, and the answers that are ready go out together (``AnswerPump``).

A message's creates go to ``Orders.create`` together (one client_order_id look-up, no
task per order); a cancel or amend is one task each. Rate limits are taken per message:
its creates and amends from the orders bucket, its cancels from the cancels bucket;
commands past what was granted are answered RESOURCE_EXHAUSTED (RATE_LIMITED), and the
commands past ``max_commands_per_message`` INVALID_ARGUMENT (TOO_MANY_COMMANDS). A message
that is not valid protobuf is answered with an event carrying MALFORMED_REQUEST; a bad
command never ends the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from exchange.order.v1 import order_pb2 as opb
from exchange_common.errors import InvalidArgument, as_exchange_error, clip
from exchange_common.handlers import MalformedRequest
from exchange_common.sessions import AnswerPump
from order_service.admission import Admission
from order_service.auth import Caller
from order_service.limits import CANCELS, ORDERS, RateLimiter
from order_service.metrics import OrderMetrics
from order_service.orders import Answer, Orders
from order_service.validation import MAX_CLIENT_ORDER_ID

# Events (and fills) in one OrderEntry answer message: a few hundred KB at most, well
# under the message limit, however many commands one request message carried.
MAX_EVENTS_PER_MESSAGE = 1000
# OrderEntry commands by the rate-limit bucket they are charged to.
# The method label of the session's commands in exchange_order_latency_seconds.
SESSION = "OrderEntry"
KINDS = {"create": ORDERS, "amend": ORDERS, "cancel": CANCELS}


def echoed(client_order_id: str) -> str:
    """A command's client_order_id as its answer carries it: unchanged when it could be
    valid, clipped when longer (a huge one never makes a huge answer)."""
    return clip(client_order_id, MAX_CLIENT_ORDER_ID)


def client_order_id_of(command: opb.OrderEntryCommand) -> str:
    """The client_order_id an OrderEntry command names ("" if none)."""
    which = command.WhichOneof("command")
    return getattr(command, which).client_order_id if which else ""


def error_event(client_order_id: str, err: BaseException) -> opb.OrderEntryEvent:
    status = as_exchange_error(err, "OrderEntry").to_status_proto()  # type: ignore[arg-type]
    return opb.OrderEntryEvent(client_order_id=echoed(client_order_id), error=status)


class OrderEntrySession:
    def __init__(self, orders: Orders, limiter: RateLimiter, admission: Admission,
                 metrics: OrderMetrics, caller: Caller, *,
                 max_commands: int, matching_timeout: float) -> None:
        self.orders = orders
        self.limiter = limiter
        self.admission = admission
        self.metrics = metrics
        self.caller = caller
        self.max_commands = max_commands
        self.matching_timeout = matching_timeout
        self.pump: AnswerPump[opb.OrderEntryEvent] = AnswerPump(
            MAX_EVENTS_PER_MESSAGE, weight=lambda event: 1 + len(event.fills))

    def responses(self, requests) -> AsyncIterator[opb.OrderEntryResponse]:
        return self.pump.responses(requests, self.admit,
                                   lambda events: opb.OrderEntryResponse(events=events))

    async def admit(self, request: opb.OrderEntryRequest | MalformedRequest) -> None:
        """Start every command of one message; each is answered exactly once."""
        pump = self.pump
        if isinstance(request, MalformedRequest):
            pump.expect(1)
            pump.answer(opb.OrderEntryEvent(error=request.to_status_proto()))
            return
        commands = request.commands
        pump.expect(len(commands))
        limit = self.max_commands
        kinds = [KINDS.get(command.WhichOneof("command") or "") for command in commands[:limit]]
        granted = {ORDERS: 0, CANCELS: 0}
        waits = {ORDERS: 0.0, CANCELS: 0.0}
        for bucket in granted:
            wanted = kinds.count(bucket)
            if wanted:
                granted[bucket], waits[bucket] = await self.limiter.take(self.caller, bucket,
                                                                         wanted)
        creates: list[opb.CreateOrderRequest] = []
        for i, command in enumerate(commands):
            if i >= limit:
                pump.answer(error_event(client_order_id_of(command), InvalidArgument(
                    f"at most {limit} commands in one message; this one has {len(commands)}",
                    reason="TOO_MANY_COMMANDS", field="commands")))
                continue
            kind = kinds[i]
            if kind is not None and not granted[kind]:
                pump.answer(error_event(client_order_id_of(command),
                                        self.limiter.refusal(kind, waits[kind])))
                continue
            if kind is not None:
                granted[kind] -= 1
            which = command.WhichOneof("command")
            if which == "create":
                if not command.create.client_order_id:
                    pump.answer(error_event("", InvalidArgument(
                        "client_order_id is required in an order-entry session (it "
                        "correlates the answer)", reason="CLIENT_ORDER_ID_REQUIRED",
                        field="create.client_order_id")))
                    continue
                creates.append(command.create)
            elif which == "cancel":
                pump.spawn(self._cancel(command.cancel))
            elif which == "amend":
                pump.spawn(self._amend(command.amend))
            else:
                pump.answer(error_event("", InvalidArgument(
                    "empty command: set create, cancel or amend", reason="COMMAND_REQUIRED",
                    field="command")))
        if creates:
            pump.spawn(self._create(creates))

    async def _create(self, creates: list[opb.CreateOrderRequest]) -> None:
        # The new orders past what the process can carry now are refused (OVERLOADED).
        started = time.monotonic()
        admitted = self.admission.admit(len(creates))
        if admitted < len(creates):
            self.metrics.refused(len(creates) - admitted)
        for create in creates[admitted:]:
            self.pump.answer(error_event(create.client_order_id, self.admission.refusal()))
        creates = creates[:admitted]
        if not creates:
            return
        deadline = started + self.matching_timeout
        try:
            answers = await self.orders.create(self.caller, creates, deadline)
        except asyncio.CancelledError:
            self.admission.done(started, len(creates))
            raise
        except Exception as err:  # noqa: BLE001 - every create of the message is answered
            self.admission.done(started, len(creates))
            for create in creates:
                self.metrics.created(SESSION, create.type, started, create.instrument, err)
                self.pump.answer(error_event(create.client_order_id, err))
            return
        for create, answer in zip(creates, answers, strict=True):
            answer.add_done_callback(self._created(create, started))

    def _created(self, create: opb.CreateOrderRequest, started: float):
        client_order_id = create.client_order_id

        def done(answer: asyncio.Future[Answer]) -> None:
            self.admission.done(started)
            if answer.cancelled():
                return  # the session ended
            err = answer.exception()
            self.metrics.created(SESSION, create.type, started, create.instrument, err)
            if err is not None:
                self.pump.answer(error_event(client_order_id, err))
                return
            order, fills = answer.result()
            self.pump.answer(opb.OrderEntryEvent(client_order_id=client_order_id,
                                                 order=order, fills=fills))
        return done

    async def _cancel(self, request: opb.CancelOrderRequest) -> None:
        started = time.monotonic()
        try:
            order = await self.orders.cancel(self.caller, request,
                                              started + self.matching_timeout)
        except Exception as err:  # noqa: BLE001 - answered, never ends the session
            self.metrics.cancel_answered(SESSION, started, "", err)
            self.pump.answer(error_event(request.client_order_id, err))
            return
        self.metrics.cancel_answered(SESSION, started, order.instrument, None)
        self.pump.answer(opb.OrderEntryEvent(client_order_id=order.client_order_id,
                                             order=order))

    async def _amend(self, request: opb.AmendOrderRequest) -> None:
        try:
            order, fills = await self.orders.amend(self.caller, request,
                                                   time.monotonic() + self.matching_timeout)
        except Exception as err:  # noqa: BLE001 - answered, never ends the session
            self.pump.answer(error_event(request.client_order_id, err))
            return
        self.pump.answer(opb.OrderEntryEvent(client_order_id=order.client_order_id,
                                             order=order, fills=fills))
