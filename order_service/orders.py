"""The order commands and queries: protobuf requests in, the public messages out.

Where an order goes: it is validated here against its instrument (validation.py),
checked for a reused client_order_id (one query for every create waiting, store.py),
routed to the matching pod that owns the instrument (routing.py), and answered from the
pod's report, which carries the whole order as committed (convert.py).

Creating orders has one path, for a unary call (one order) and an OrderEntry message
(many) alike: ``create`` validates the orders, looks their client_order_ids up together
and sends them to matching with no task each; each order's answer is a future. Only an
order that needs more than that (a retry of an order committed long ago, an owner to
find again, a retry the pod recognised) gets a task of its own.

When tracing, ``create`` is given each order's span (the server span of a unary call, or
the OrderEntry command's), since one call places many orders; the look-up and the wait
for matching are its children (store.py, routing.py). Cancels and amends run in their
command's span as the current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from opentelemetry.trace import Span

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common import tracing
from exchange_common.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    clip,
)
from exchange_common.ids import instrument_of, parse_id
from exchange_common.instruments import InstrumentSpec
from exchange_common.paging import INT64_MAX, PageTokens, page_size
from order_service.auth import Caller
from order_service.convert import (
    fill_from_row,
    fills_from_report,
    order_from_report,
    order_from_row,
)
from order_service.holds import (
    EXISTS,
    GRANTED,
    REFUSED,
    Fees,
    HoldRequest,
    HoldResult,
    Holds,
    protection_bps,
    stop_protection,
    unit,
)
from order_service.routing import Router
from order_service.store import Store
from order_service.validation import (
    ValidOrder,
    check_cancel_allowed,
    check_client_order_id,
    validate_amend,
    validate_new_order,
)

Answer = tuple[opb.Order, list[opb.Fill]]

# RetryInfo of an order refused for the open-order cap: nothing frees a slot but the
# account's own cancels and fills, so this is only a hint.
OPEN_ORDER_RETRY = 1.0
# RetryInfo of an order whose client_order_id has a hold on its way to matching.
IN_FLIGHT_RETRY = 0.5
# The span of a command's wait for its hold (and client_order_id look-up).
HOLD_SPAN = "hold"
# How much of a caller's deadline is kept for the answer to travel back.
ANSWER_MARGIN = 0.05


class Orders:
    def __init__(self, store: Store, router: Router, page_tokens: PageTokens,
                 matching_timeout: float, holds: Holds, fees: Fees) -> None:
        self.store = store
        self.holds = holds
        self.fees = fees
        self.router = router
        self.page_tokens = page_tokens
        self.matching_timeout = matching_timeout
        self._tasks: set[asyncio.Task[Any]] = set()
        # Called when an order is sent again because its pod's stream broke or the owner
        # moved (admission control does not take the wait for a new owner for overload).
        self.rerouted: Callable[[], None] = lambda: None

    def deadline(self, remaining: float | None) -> float:
        """The monotonic deadline of a command: ``matching_timeout``, or less when the
        caller has less time left (``remaining`` seconds)."""
        budget = self.matching_timeout
        if remaining is not None:
            budget = min(budget, max(0.0, remaining - ANSWER_MARGIN))
        return time.monotonic() + budget

    async def instrument(self, symbol: str) -> InstrumentSpec:
        if not symbol:
            raise InvalidArgument("instrument is required", reason="INSTRUMENT_REQUIRED",
                                  field="instrument")
        spec = self.store.cached_instrument(symbol) or await self.store.instrument(symbol)
        if spec is None:
            raise NotFound(f"unknown instrument {clip(symbol)!r}", reason="INSTRUMENT_NOT_FOUND",
                           metadata={"instrument": clip(symbol)})
        return spec

    # -- create -------------------------------------------------------------------------

    async def create(self, caller: Caller, requests: Sequence[opb.CreateOrderRequest],
                     deadline: float, spans: Sequence[Span] | None = None
                     ) -> list[asyncio.Future[Answer]]:
        """Start placing ``requests`` (in the order given); the future of each answer.
        ``spans``: when tracing, the span of each request."""
        loop = asyncio.get_running_loop()
        answers: list[asyncio.Future[Answer]] = [loop.create_future() for _ in requests]
        valid: list[tuple[int, InstrumentSpec, ValidOrder]] = []
        specs: dict[str, InstrumentSpec] = {}
        for i, request in enumerate(requests):
            try:
                spec = specs.get(request.instrument)
                if spec is None:
                    spec = specs[request.instrument] = await self.instrument(request.instrument)
                valid.append((i, spec, validate_new_order(request, spec)))
            except Exception as err:  # noqa: BLE001 - each order is answered on its own
                answers[i].set_exception(err)
        if not valid:
            return answers
        # The funds of each order go on hold (with the client_order_id look-up: a retry
        # of a committed order is answered from the database), in one statement for all
        # the orders waiting (holds.py). Without a client_order_id the service assigns
        # one, so that its own retries are safe; it is the hold's key too.
        keyed = []
        for i, spec, order in valid:
            if not order.client_order_id:
                order = replace(order, client_order_id=f"x-{uuid.uuid4().hex}")
            try:
                fees = await self.fees.of(caller.account_id, spec)
                needs = hold_request(caller.account_id, spec, order, fees)
            except Exception as err:  # noqa: BLE001 - each order is answered on its own
                answers[i].set_exception(err)
                continue
            keyed.append((i, spec, order, fees, needs))
        valid = [(i, spec, order) for i, spec, order, _, _ in keyed]
        if not valid:
            return answers
        to_hold = [needs for *_, needs in keyed]
        try:
            waiting = tracing.span_until if spans is not None else None
            pending = self.holds.take(to_hold)
            if waiting is not None and spans is not None:
                waiting(pending, HOLD_SPAN, [spans[i] for i, _, _ in valid])
            held = await asyncio.shield(pending)
        except asyncio.CancelledError:
            # The caller went away (a session that dropped) while the funds went on hold:
            # nothing will be sent, so what was granted goes back now, not when the
            # sweeper finds it.
            pending.add_done_callback(functools.partial(self._give_back, to_hold))
            raise
        except Exception as err:  # noqa: BLE001 - every order waiting on it is answered
            for i, _, _ in valid:
                answers[i].set_exception(err)
            return answers
        for instrument_id in {spec.instrument_id for _, spec, _ in valid}:
            if self.router.cached_owner(instrument_id) is None:
                with contextlib.suppress(Exception):  # the slow path finds it (or says why)
                    await self.router.owner(instrument_id, refresh=True)
        for (i, spec, order, fees, _), hold in zip(keyed, held, strict=True):
            answer = answers[i]
            span = spans[i] if spans is not None else None
            if hold.status == EXISTS:
                # A retry of an order committed before: answered from the database (the
                # pod deduplicates only the recent ones).
                self._slow(answer, self._existing(caller.account_id, hold.order_id, order,
                                                  spec))
                continue
            if hold.status == REFUSED:
                answer.set_exception(insufficient_funds(spec, order.side, hold.need,
                                                        hold.available))
                continue
            # PENDING: the key's hold is on its way to matching with an earlier command;
            # this one goes with that hold (holds.HoldResult), so matching answers it as a
            # retry of that order once placed, or places it if the first never arrives.
            command = _new_order_command(spec, caller, order, hold, fees)
            address = self.router.cached_owner(spec.instrument_id)
            if address is None:
                self._slow(answer, self._routed(caller.account_id, spec, command, deadline,
                                                span))
                continue
            try:
                sent = self.router.send(spec.instrument_id, address, command, deadline,
                                        idempotent=True, parent=span)
            except Exception as err:  # noqa: BLE001 - answered, never left waiting
                answer.set_exception(err)
                continue
            sent.add_done_callback(self._answered(answer, caller.account_id, spec, command,
                                                  deadline, span))
            answer.add_done_callback(_cancel_with(sent))
        return answers

    def _give_back(self, requests: Sequence[HoldRequest],
                   pending: asyncio.Future[list[HoldResult]]) -> None:
        """Release the holds granted to ``requests`` (whose orders were never sent)."""
        if pending.cancelled() or pending.exception() is not None:
            return
        keys = [(r.account_id, r.key) for r, hold in zip(requests, pending.result(), strict=True)
                if hold.status == GRANTED]
        if keys:
            self.holds.release_soon(keys)

    def _answered(self, answer: asyncio.Future[Answer], account_id: int,
                  spec: InstrumentSpec, command: mpb.Command, deadline: float,
                  span: Span | None) -> Callable[[asyncio.Future[mpb.Result]], None]:
        def done(sent: asyncio.Future[mpb.Result]) -> None:
            if answer.done():
                return
            if sent.cancelled():
                answer.set_exception(Unavailable("the order service is stopping",
                                                 reason="SHUTTING_DOWN"))
                return
            err = sent.exception()
            if err is not None and not isinstance(err, DeadlineExceeded):
                # A broken stream or a moved owner: sent again (the client_order_id makes
                # that safe) on the way that follows the owner.
                self.rerouted()
                self._slow(answer, self._routed(account_id, spec, command, deadline, span))
                return
            if err is not None:
                answer.set_exception(err)
                return
            result = sent.result()
            if (result.WhichOneof("result") == "error"
                    and result.error.code == mpb.ERROR_CODE_NOT_OWNER):
                self.rerouted()
                self._slow(answer, self._routed(account_id, spec, command, deadline, span))
                return
            self._release_if_refused(command, result)
            try:
                created = self._created(spec, command, result)
            except Exception as exc:  # noqa: BLE001 - the refusal is the answer
                answer.set_exception(exc)
                return
            if created is None:
                self._slow(answer, self._committed(account_id, result.order.order_id))
            else:
                answer.set_result(created)
        return done

    def _slow(self, answer: asyncio.Future[Answer],
              work: Any) -> None:
        """Answer with what coroutine ``work`` returns or raises, in a task of its own."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)

        def finish(t: asyncio.Task[Answer]) -> None:
            self._tasks.discard(t)
            if answer.done():
                return
            if t.cancelled():
                answer.set_exception(Unavailable("the order service is stopping",
                                                 reason="SHUTTING_DOWN"))
            elif t.exception() is not None:
                answer.set_exception(t.exception())  # type: ignore[arg-type]
            else:
                answer.set_result(t.result())

        task.add_done_callback(finish)
        answer.add_done_callback(_cancel_with(task))

    async def _routed(self, account_id: int, spec: InstrumentSpec, command: mpb.Command,
                      deadline: float, span: Span | None = None) -> Answer:
        """Send ``command`` to whoever owns the instrument, following owner changes."""
        result = await self.router.execute(spec.instrument_id, command, deadline,
                                           idempotent=True, parent=span)
        self._release_if_refused(command, result)
        created = self._created(spec, command, result)
        if created is None:
            return await self._committed(account_id, result.order.order_id)
        return created

    def _release_if_refused(self, command: mpb.Command, result: mpb.Result) -> None:
        """Give back the hold of a command matching refused for certain (nothing of it
        was committed). An unknown outcome (UNAVAILABLE: a commit that may have happened)
        keeps the hold: the sweeper releases it if no order took it."""
        if (result.WhichOneof("result") != "error"
                or result.error.code in (mpb.ERROR_CODE_UNAVAILABLE, mpb.ERROR_CODE_NOT_OWNER)):
            return
        which = command.WhichOneof("command")
        if which == "new_order" and command.new_order.held:
            o = command.new_order
            self.holds.release_soon([(o.account_id, o.client_order_id)])
        elif which == "amend_order" and command.amend_order.extra_held:
            a = command.amend_order
            self.holds.release_soon([(a.account_id, a.hold_key)])

    @staticmethod
    def _created(spec: InstrumentSpec, command: mpb.Command, result: mpb.Result) -> Answer | None:
        """The order and its fills from matching's answer to a new order; None when the
        pod recognised a retry (answered from the database: all its fills so far)."""
        if result.WhichOneof("result") == "error":
            err = result.error
            if (err.code == mpb.ERROR_CODE_INSUFFICIENT_FUNDS
                    and not command.new_order.held):
                coid = command.new_order.client_order_id
                raise Unavailable(f"an order with client_order_id {clip(coid)!r} is being "
                                  "placed; retry to learn its outcome",
                                  reason="ORDER_IN_FLIGHT", retry_after=IN_FLIGHT_RETRY)
            if err.code == mpb.ERROR_CODE_DUPLICATE_CLIENT_ORDER_ID:
                coid = command.new_order.client_order_id
                raise AlreadyExists(
                    f"client_order_id {clip(coid)!r} is already used by order "
                    f"{err.order_id} with different contents",
                    reason="CLIENT_ORDER_ID_IN_USE", metadata={"order_id": str(err.order_id)})
            raise matching_error(err)
        report = result.order
        if report.duplicate:
            return None
        order = order_from_report(spec, report)
        return order, fills_from_report(spec, order, report)

    async def _existing(self, account_id: int, order_id: int, order: ValidOrder,
                        spec: InstrumentSpec) -> Answer:
        row = await self.store.order(account_id, order_id)
        assert row is not None, "the hold statement found it"
        same = (row["instrument_id"] == spec.instrument_id and row["side"] == order.side
                and row["order_type"] == order.type
                and row["time_in_force"] == order.time_in_force and row["price"] == order.price
                and row["quantity"] == order.quantity and row["post_only"] == order.post_only
                and row["funds"] == order.funds)
        if not same:
            raise AlreadyExists(
                f"client_order_id {clip(order.client_order_id)!r} is already used by order "
                f"{row['order_id']} with different contents",
                reason="CLIENT_ORDER_ID_IN_USE", metadata={"order_id": str(row["order_id"])})
        return await self._with_fills(row)

    async def _committed(self, account_id: int, order_id: int) -> Answer:
        found = await self.order_with_fills(account_id, order_id)
        assert found is not None, "an order is committed before it is answered"
        return found

    # -- cancel and amend -----------------------------------------------------------------

    async def cancel(self, caller: Caller, request: opb.CancelOrderRequest,
                     deadline: float) -> opb.Order:
        account_id = caller.account_id
        order_id = await self._find(account_id, request.order_id, request.client_order_id)
        spec = await self.store.instrument_by_id(instrument_of(order_id))
        if spec is None:
            raise NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")
        check_cancel_allowed(spec)
        command = mpb.Command(cancel_order=mpb.CancelOrder(
            instrument_id=spec.instrument_id, account_id=account_id, order_id=order_id))
        report = await self._change(account_id, order_id, command, deadline)
        return order_from_report(spec, report)

    async def amend(self, caller: Caller, request: opb.AmendOrderRequest,
                    deadline: float) -> Answer:
        account_id = caller.account_id
        order_id = await self._find(account_id, request.order_id, request.client_order_id)
        row = await self.store.order(account_id, order_id)
        if row is None:
            raise NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")
        spec = await self.store.instrument_by_id(row["instrument_id"])
        assert spec is not None
        price, quantity = validate_amend(request, spec, row)
        amend = mpb.AmendOrder(instrument_id=spec.instrument_id, account_id=account_id,
                               order_id=order_id, price=price, quantity=quantity)
        extra = amend_extra_hold(spec, row, price, quantity)
        if extra:
            # The amended order needs more than it holds: the difference goes on hold
            # first, like a new order's (matching releases what it turns out not to need).
            key = f"amend:{order_id}:{uuid.uuid4().hex}"
            asset, receives = ((spec.quote_asset_id, spec.base_asset_id)
                               if row["side"] == cpb.SIDE_BUY
                               else (spec.base_asset_id, spec.quote_asset_id))
            (hold,) = await self.holds.take([HoldRequest(account_id, key, asset, extra,
                                                         receives, spec.instrument_id)])
            if hold.status != GRANTED:
                raise insufficient_funds(spec, row["side"], hold.need, hold.available)
            amend.extra_held, amend.hold_key = extra, key
            amend.held_at_unix_nanos = hold.held_at_ns
        command = mpb.Command(amend_order=amend)
        report = await self._change(account_id, order_id, command, deadline)
        order = order_from_report(spec, report)
        return order, fills_from_report(spec, order, report)

    async def _change(self, account_id: int, order_id: int, command: mpb.Command,
                      deadline: float) -> mpb.OrderReport:
        """Route a cancel or amend of ``order_id``: matching's report of the order after
        it (read from the database only to say why a refused one was refused)."""
        result = await self.router.execute(instrument_of(order_id), command, deadline,
                                           idempotent=False)
        self._release_if_refused(command, result)
        if result.WhichOneof("result") == "error":
            if result.error.code != mpb.ERROR_CODE_ORDER_NOT_OPEN:
                raise matching_error(result.error)
            row = await self.store.order(account_id, order_id)
            if row is None:
                raise NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")
            raise FailedPrecondition(
                f"order {order_id} is not open (state {cpb.OrderState.Name(row['state'])})",
                reason="ORDER_NOT_OPEN", metadata={"order_id": str(order_id)})
        return result.order

    async def _find(self, account_id: int, order_id: str, client_order_id: str) -> int:
        """The order id named by a request (exactly one of the two fields)."""
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
        row = await self.store.order_by_client_id(account_id, client_order_id)
        if row is None:
            raise NotFound(f"no order with client_order_id {clip(client_order_id)!r}",
                           reason="ORDER_NOT_FOUND")
        return int(row["order_id"])

    # -- queries ------------------------------------------------------------------------

    async def get(self, caller: Caller, request: opb.GetOrderRequest) -> Answer:
        order_id = await self._find(caller.account_id, request.order_id,
                                    request.client_order_id)
        found = await self.order_with_fills(caller.account_id, order_id)
        if found is None:
            raise NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")
        return found

    async def order_with_fills(self, account_id: int, order_id: int) -> Answer | None:
        row = await self.store.order(account_id, order_id)
        return None if row is None else await self._with_fills(row)

    async def _with_fills(self, row: Any) -> Answer:
        spec = await self.store.instrument_by_id(row["instrument_id"])
        assert spec is not None
        order = order_from_row(spec, row)
        fills = [fill_from_row(spec, order, f)
                 for f in await self.store.order_fills(row["order_id"])]
        return order, fills

    async def list_orders(self, caller: Caller,
                          request: opb.ListOrdersRequest) -> opb.ListOrdersResponse:
        account_id = caller.account_id
        size = page_size(request.page_size)
        instrument_id = ((await self.instrument(request.instrument)).instrument_id
                         if request.instrument else None)
        if request.status not in opb.OrderStatusFilter.values():
            raise InvalidArgument("status must be an OrderStatusFilter value",
                                  reason="STATUS_FILTER_INVALID", field="status")
        # The account is among the filters: a token of another account's list is refused.
        filters = ("orders", account_id, instrument_id, request.status)
        position = self.page_tokens.decode(request.page_token, filters, (INT64_MAX,))
        before = position[0] if position else INT64_MAX
        rows = await self.store.list_orders(account_id, instrument_id, request.status, before,
                                            size + 1)
        more = len(rows) > size
        orders = []
        for row in rows[:size]:
            spec = await self.store.instrument_by_id(row["instrument_id"])
            assert spec is not None
            orders.append(order_from_row(spec, row))
        token = self.page_tokens.encode([rows[size - 1]["order_id"]], filters) if more else ""
        return opb.ListOrdersResponse(orders=orders, next_page_token=token)

    async def list_fills(self, caller: Caller,
                         request: opb.ListFillsRequest) -> opb.ListFillsResponse:
        account_id = caller.account_id
        size = page_size(request.page_size)
        instrument_id = ((await self.instrument(request.instrument)).instrument_id
                         if request.instrument else None)
        order_id = None
        if request.order_id:
            order_id = parse_id(request.order_id)
            if order_id is None:
                raise InvalidArgument("order_id is not an order id", reason="ORDER_ID_INVALID",
                                      field="order_id")
        filters = ("fills", account_id, instrument_id, order_id)
        # (trade id, liquidity: maker or taker) of the last fill of the previous page
        position = self.page_tokens.decode(request.page_token, filters,
                                           (INT64_MAX, cpb.LIQUIDITY_TAKER))
        before = ((position[0], position[1]) if position
                  else (INT64_MAX, cpb.LIQUIDITY_TAKER + 1))
        rows = await self.store.list_fills(account_id, instrument_id, order_id, before,
                                           size + 1)
        more = len(rows) > size
        fills = []
        for row in rows[:size]:
            spec = await self.store.instrument_by_id(row["instrument_id"])
            assert spec is not None
            fills.append(fill_from_row(spec, None, row))
        token = (self.page_tokens.encode([rows[size - 1]["trade_id"],
                                          rows[size - 1]["liquidity"]], filters)
                 if more else "")
        return opb.ListFillsResponse(fills=fills, next_page_token=token)


def _cancel_with(other: asyncio.Future[Any]) -> Callable[[asyncio.Future[Any]], None]:
    """A callback that cancels ``other`` when the future it is added to is cancelled (a
    caller that went away)."""
    def done(fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() and not other.done():
            other.cancel()
    return done


def _new_order_command(spec: InstrumentSpec, caller: Caller, order: ValidOrder,
                       hold: HoldResult, fees: tuple[int, int]) -> mpb.Command:
    return mpb.Command(new_order=mpb.NewOrder(
        instrument_id=spec.instrument_id, account_id=caller.account_id, side=order.side,
        type=order.type, time_in_force=order.time_in_force, price=order.price,
        quantity=order.quantity, client_order_id=order.client_order_id,
        post_only=order.post_only, max_open_orders=caller.tier.max_open_orders,
        held=hold.need, held_at_unix_nanos=hold.held_at_ns,
        protection_price=hold.protection or _stop_protection(spec, order), funds=order.funds,
        maker_fee_bps=fees[0], taker_fee_bps=fees[1],
        self_trade_prevention=order.self_trade_prevention, stop_price=order.stop_price,
        expire_time_unix_nanos=order.expire_ns))


def _stop_protection(spec: InstrumentSpec, order: ValidOrder) -> int:
    """A stop market buy's protection price (holds.stop_protection); 0 for other orders."""
    if (order.stop_price and order.type == cpb.ORDER_TYPE_MARKET
            and order.side == cpb.SIDE_BUY and not order.funds):
        return stop_protection(spec, order.stop_price)
    return 0


def hold_request(account_id: int, spec: InstrumentSpec, order: ValidOrder,
                 fees: tuple[int, int]) -> HoldRequest:
    """What ``order`` must put on hold (holds.py): a sell its base quantity, a buy its
    quote (limit x quantity with the fee; a market buy its funds, or its quantity
    priced by the statement at the protection price; a stop market buy its funds, or
    its quantity at its stop price's protection price, priced here)."""
    if not spec.has_money:
        raise FailedPrecondition(f"{spec.symbol} names an asset the exchange does not know",
                                 reason="INSTRUMENT_WITHOUT_ASSETS")
    fee_bps = max(fees[0], fees[1], 0)
    key = order.client_order_id
    if order.side == cpb.SIDE_SELL:
        return HoldRequest(account_id, key, spec.base_asset_id,
                           order.quantity * spec.lot_units, spec.quote_asset_id,
                           spec.instrument_id)
    quote, base = spec.quote_asset_id, spec.base_asset_id
    if order.funds:
        return HoldRequest(account_id, key, quote, order.funds, base, spec.instrument_id)
    if order.type == cpb.ORDER_TYPE_MARKET and order.stop_price:
        amount = order.quantity * unit(spec, stop_protection(spec, order.stop_price), fee_bps)
        if amount > INT64_MAX:
            raise InvalidArgument("the order's value is out of range",
                                  reason="NOTIONAL_TOO_LARGE", field="quantity")
        return HoldRequest(account_id, key, quote, amount, base, spec.instrument_id)
    if order.type == cpb.ORDER_TYPE_MARKET:
        return HoldRequest(account_id, key, quote, 0, base, spec.instrument_id,
                           market_lots=order.quantity, tick_lot_units=spec.tick_lot_units,
                           band_bps=protection_bps(spec), fee_bps=fee_bps)
    amount = order.quantity * unit(spec, order.price, fee_bps)
    if amount > INT64_MAX:
        raise InvalidArgument("the order's value is out of range", reason="NOTIONAL_TOO_LARGE",
                              field="quantity")
    return HoldRequest(account_id, key, quote, amount, base, spec.instrument_id)


def amend_extra_hold(spec: InstrumentSpec, row: Any, price: int, quantity: int) -> int:
    """How much more than it holds the order in ``row`` needs once amended to ``price``
    and ``quantity`` (0: keep) (engine.money.Terms.need)."""
    if not spec.has_money:
        return 0
    open_lots = (quantity or row["quantity"]) - row["filled"]
    if row["side"] == cpb.SIDE_SELL:
        need = open_lots * spec.lot_units
    else:
        fee_bps = max(row["maker_fee_bps"], row["taker_fee_bps"], 0)
        need = open_lots * unit(spec, price or row["price"], fee_bps)
    return max(0, need - row["held"])


def insufficient_funds(spec: InstrumentSpec, side: int, need: int,
                       available: int) -> FailedPrecondition:
    if side == cpb.SIDE_BUY:
        asset, text = spec.quote_asset, spec.quote_str
    else:
        asset, text = spec.base_asset, spec.base_str
    return FailedPrecondition(
        f"insufficient funds: the order needs {text(need)} {asset} on hold, "
        f"{text(available)} {asset} is available", reason="INSUFFICIENT_FUNDS",
        metadata={"asset": asset, "needed": text(need), "available": text(available)})


def matching_error(err: mpb.CommandError) -> Exception:
    """The caller's error for a command matching refused."""
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
    if err.code == mpb.ERROR_CODE_INSUFFICIENT_FUNDS:
        return FailedPrecondition(err.message, reason="INSUFFICIENT_FUNDS")
    if err.code == mpb.ERROR_CODE_HOLD_EXPIRED:
        return Unavailable("the order's hold expired on its way to matching; nothing was "
                           "placed, send it again", reason="HOLD_EXPIRED")
    if err.code == mpb.ERROR_CODE_POST_ONLY_WOULD_TAKE:
        return FailedPrecondition(err.message or "the new price would take liquidity",
                                  reason="POST_ONLY_WOULD_TAKE")
    return InvalidArgument(err.message or "rejected by the matching engine",
                           reason="MATCHING_REJECTED")
