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

When tracing, every command is a server span ("OrderEntry create", ... ) from the moment
its message is read to its answer, in the trace of the stream's ``traceparent`` metadata
(``trace_parent``; each command starts a trace of its own when the stream has none). A
refused command is answered with its span current, so that the refusal's reason lands on
it and the DEBUG line of the refusal carries its ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

from opentelemetry.context import Context
from opentelemetry.trace import Span

from exchange.order.v1 import order_pb2 as opb
from exchange_common import tracing
from exchange_common.errors import InvalidArgument, as_exchange_error, clip
from exchange_common.handlers import MalformedRequest
from exchange_common.sessions import AnswerPump
from order_service.admission import Admission
from order_service.auth import Caller
from order_service.limits import CANCELS, ORDERS, RateLimiter
from order_service.metrics import OrderMetrics
from order_service.orders import Answer, Orders
from order_service.session_guard import SessionGuard
from order_service.session_updates import SessionUpdates
from order_service.updates import UpdateFeed
from order_service.validation import MAX_CLIENT_ORDER_ID

# Events (and fills) in one OrderEntry answer message: a few hundred KB at most, well
# under the message limit, however many commands one request message carried.
MAX_EVENTS_PER_MESSAGE = 1000
# OrderEntry commands by the rate-limit bucket they are charged to.
# The method label of the session's commands in exchange_order_latency_seconds.
SESSION = "OrderEntry"
KINDS = {"create": ORDERS, "amend": ORDERS, "cancel": CANCELS}
# A command's span: "exchange.order.v1.OrderService/OrderEntry create", ... (or "command"
# when it names none).
SPAN = f"{opb.DESCRIPTOR.services_by_name['OrderService'].full_name}/OrderEntry"


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
                 max_commands: int, matching_timeout: float,
                 updates: UpdateFeed | None = None) -> None:
        self.orders = orders
        self.limiter = limiter
        self.admission = admission
        self.metrics = metrics
        self.caller = caller
        self.max_commands = max_commands
        self.matching_timeout = matching_timeout
        # The answers to commands (events), and the session's own responses (notices).
        self.pump: AnswerPump[opb.OrderEntryEvent | opb.OrderEntryResponse] = AnswerPump(
            MAX_EVENTS_PER_MESSAGE, weight=_weight)
        # When tracing: the context of the stream's traceparent, the commands' parent.
        self.trace_parent: Context | None = None
        self.guard = SessionGuard(orders, caller, matching_timeout, self._notify)
        # SessionOptions.order_updates (session_updates.py).
        self.updates = SessionUpdates(updates, caller.account_id, self.pump, self._notify)

    async def responses(self, requests) -> AsyncIterator[opb.OrderEntryResponse]:
        try:
            async for response in self.pump.responses(self.guard.watch(requests), self.admit,
                                                      _message):
                yield response
        finally:
            self.guard.ended()

    def _notify(self, response: opb.OrderEntryResponse) -> None:
        """Send a response of the session's own (SessionGuard's notices)."""
        self.pump.expect(1)
        self.pump.answer(response)

    def _options(self, options: opb.SessionOptions) -> None:
        """Apply the session options of a message (before its commands): the guard's
        (cancel-on-disconnect, the dead-man timer) first; bad ones are answered with an
        error event and change nothing, not even the order updates, which are applied
        only after them (SessionUpdates answers its own errors)."""
        try:
            self.guard.apply(options)
        except Exception as err:  # noqa: BLE001 - answered, never ends the session
            self.pump.expect(1)
            self.pump.answer(error_event("", err))
            return
        self.updates.apply(options)

    async def admit(self, request: opb.OrderEntryRequest | MalformedRequest) -> None:
        """Start every command of one message; each is answered exactly once."""
        pump = self.pump
        if isinstance(request, MalformedRequest):
            pump.expect(1)
            pump.answer(opb.OrderEntryEvent(error=request.to_status_proto()))
            return
        if request.HasField("options"):
            self._options(request.options)
        commands = request.commands
        pump.expect(len(commands))
        spans = [self._span(command) for command in commands] if tracing.ENABLED else None
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
        create_spans: list[Span] = []
        for i, command in enumerate(commands):
            span = spans[i] if spans is not None else None
            if i >= limit:
                self._refuse(client_order_id_of(command), InvalidArgument(
                    f"at most {limit} commands in one message; this one has {len(commands)}",
                    reason="TOO_MANY_COMMANDS", field="commands"), span)
                continue
            kind = kinds[i]
            if kind is not None and not granted[kind]:
                self._refuse(client_order_id_of(command),
                             self.limiter.refusal(kind, waits[kind]), span)
                continue
            if kind is not None:
                granted[kind] -= 1
            which = command.WhichOneof("command")
            if which == "create":
                if not command.create.client_order_id:
                    self._refuse("", InvalidArgument(
                        "client_order_id is required in an order-entry session (it "
                        "correlates the answer)", reason="CLIENT_ORDER_ID_REQUIRED",
                        field="create.client_order_id"), span)
                    continue
                creates.append(command.create)
                if span is not None:
                    create_spans.append(span)
            elif which == "cancel":
                pump.spawn(self._cancel(command.cancel, span))
            elif which == "amend":
                pump.spawn(self._amend(command.amend, span))
            else:
                self._refuse("", InvalidArgument(
                    "empty command: set create, cancel or amend", reason="COMMAND_REQUIRED",
                    field="command"), span)
        if creates:
            pump.spawn(self._create(creates, create_spans if spans is not None else None))

    def _span(self, command: opb.OrderEntryCommand) -> Span:
        """The span of one command (tracing only), from now until it is answered."""
        which = command.WhichOneof("command") or "command"
        span = tracing.start(f"{SPAN} {which}", self.trace_parent, tracing.SERVER, {
            "rpc.system": "grpc", "rpc.method": SESSION, "exchange.command": which})
        if span.is_recording():
            if which == "create":
                create = command.create
                span.set_attributes(tracing.order_attributes(create.instrument, create.side,
                                                             create.type))
            elif which in ("cancel", "amend"):
                order_id = getattr(command, which).order_id
                if order_id:
                    span.set_attribute("exchange.order_id", order_id)
        return span

    def _refuse(self, client_order_id: str, err: BaseException, span: Span | None) -> None:
        """Answer a command with ``err``: with its span current (the refusal's reason goes
        on it), then ended."""
        if span is None:
            self.pump.answer(error_event(client_order_id, err))
            return
        with tracing.current(span):
            event = error_event(client_order_id, err)
        span.end()
        self.pump.answer(event)

    def _answer(self, event: opb.OrderEntryEvent, span: Span | None) -> None:
        """Answer a command with the order after it."""
        if span is not None:
            if span.is_recording():
                span.set_attribute("exchange.order_id", event.order.order_id)
                tracing.answered(span, "OK")
            span.end()
        self.pump.answer(event)

    async def _create(self, creates: list[opb.CreateOrderRequest],
                      spans: list[Span] | None) -> None:
        # The new orders past what the process can carry now are refused (OVERLOADED).
        started = time.monotonic()
        admitted = self.admission.admit(len(creates))
        if admitted < len(creates):
            self.metrics.refused(len(creates) - admitted)
        for i in range(admitted, len(creates)):
            self._refuse(creates[i].client_order_id, self.admission.refusal(),
                         spans[i] if spans is not None else None)
        creates = creates[:admitted]
        if spans is not None:
            spans = spans[:admitted]
        if not creates:
            return
        deadline = started + self.matching_timeout
        try:
            answers = await self.orders.create(self.caller, creates, deadline, spans)
        except asyncio.CancelledError:
            self.admission.done(started, len(creates))
            raise
        except Exception as err:  # noqa: BLE001 - every create of the message is answered
            self.admission.done(started, len(creates))
            for i, create in enumerate(creates):
                self.metrics.created(SESSION, create.type, started, create.instrument, err)
                self._refuse(create.client_order_id, err,
                             spans[i] if spans is not None else None)
            return
        self.guard.placing(answers)
        for i, (create, answer) in enumerate(zip(creates, answers, strict=True)):
            answer.add_done_callback(self._created(create, started,
                                                   spans[i] if spans is not None else None))

    def _created(self, create: opb.CreateOrderRequest, started: float, span: Span | None):
        client_order_id = create.client_order_id

        def done(answer: asyncio.Future[Answer]) -> None:
            self.admission.done(started)
            if answer.cancelled():
                if span is not None:
                    tracing.end(span, asyncio.CancelledError())
                return  # the session ended
            err = answer.exception()
            self.metrics.created(SESSION, create.type, started, create.instrument, err)
            if err is not None:
                self._refuse(client_order_id, err, span)
                return
            order, fills = answer.result()
            self._answer(opb.OrderEntryEvent(client_order_id=client_order_id,
                                             order=order, fills=fills), span)
        return done

    async def _cancel(self, request: opb.CancelOrderRequest, span: Span | None) -> None:
        started = time.monotonic()
        with _current(span):
            try:
                order = await self.orders.cancel(self.caller, request,
                                                  started + self.matching_timeout)
            except Exception as err:  # noqa: BLE001 - answered, never ends the session
                self.metrics.cancel_answered(SESSION, started, "", err)
                self._refuse(request.client_order_id, err, span)
                return
        self.metrics.cancel_answered(SESSION, started, order.instrument, None)
        self._answer(opb.OrderEntryEvent(client_order_id=order.client_order_id,
                                         order=order), span)

    async def _amend(self, request: opb.AmendOrderRequest, span: Span | None) -> None:
        with _current(span):
            try:
                order, fills = await self.orders.amend(
                    self.caller, request, time.monotonic() + self.matching_timeout)
            except Exception as err:  # noqa: BLE001 - answered, never ends the session
                self._refuse(request.client_order_id, err, span)
                return
        self._answer(opb.OrderEntryEvent(client_order_id=order.client_order_id,
                                         order=order, fills=fills), span)


def _weight(answer: opb.OrderEntryEvent | opb.OrderEntryResponse) -> int:
    if isinstance(answer, opb.OrderEntryEvent):
        return 1 + len(answer.fills)
    return 1 + len(answer.events) + len(answer.cancelled) + len(answer.updates)


def _message(answers: list[opb.OrderEntryEvent | opb.OrderEntryResponse]
             ) -> opb.OrderEntryResponse:
    """One response of the answers that wait: the events, and the notices merged in."""
    response = opb.OrderEntryResponse()
    for answer in answers:
        if isinstance(answer, opb.OrderEntryEvent):
            response.events.append(answer)
        else:
            response.MergeFrom(answer)
    return response


@contextlib.contextmanager
def _current(span: Span | None) -> Iterator[None]:
    """With tracing, the command's span is current inside (a cancel or an amend runs in a
    task of its own): the look-up and the wait for matching are its children. A task
    cancelled meanwhile (the session ended) ends the span."""
    token = tracing.attach(span) if span is not None else None
    try:
        yield
    except asyncio.CancelledError as err:
        if span is not None:
            tracing.end(span, err)
        raise
    finally:
        if token is not None:
            tracing.detach(token)
