"""One single-writer loop per owned instrument: batch, match, commit, answer, publish.

Commands are taken in arrival order, in batches of up to ``batch_max``; a
commit starts at most every ``commit_min_interval`` seconds, so under load the
commands arriving meanwhile join the batch. The
whole batch is matched, then its events, order changes and trades are
committed in one transaction (group commit); only after that commit are the
callers answered, in order. The batch is then handed to a publisher task
that adds it to the instrument's Redis stream (and publishes the accounts'
latest order updates, the order services' wake-up), so Redis never slows
matching and nothing acknowledged depends on it.

If the commit fails, nobody is acknowledged: every caller of the batch gets
UNAVAILABLE, and the book is reloaded from PostgreSQL (the in-memory book
had already applied the batch). While PostgreSQL is unreachable, commands
are refused at once with UNAVAILABLE; the loop keeps trying to reload and
resumes by itself. If the commit is fenced out, another pod owns the
instrument now: callers get NOT_OWNER and the loop stops.

Good-till-time orders expire by this loop's clock: at the start of every batch, before
any of its commands, each order whose expiry is at or before the batch's time expires (a
TIMED_OUT event, journaled like a command), and an idle loop wakes by itself at the next
expiry. An order past its expiry therefore never trades, and it expires exactly once: a
replay re-executes the journaled expiries, and after a restart or a failover the new
owner's first batch expires whatever came due meanwhile.

When tracing (``exchange_common.tracing``), each command is a span ("match") from its
arrival to the end of its matching, the queue wait included, a child of the order
service's span the command names (its ``traceparent``). A batch's journal commit is one
span, and so is each Redis publish: a commit (or publish) is one piece of work for all of
its commands, so its span's parent is the first sampled command's span (that order's
trace then holds the whole path) and it links to the others', rather than one span per
command for the same commit. The published MarketDataBatch carries the commit span's
context, so market data's span of applying it joins that trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import cast

import asyncpg
from opentelemetry.trace import Span, SpanContext
from redis.asyncio import Redis

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange_common import tracing
from exchange_common.errors import NotFound
from exchange_common.ids import sequence_of
from exchange_common.instruments import InstrumentSpec
from exchange_common.streams import FIELD, ORDER_UPDATES_CHANNEL, entry_id, stream_key
from matching_service.engine import (
    ERR_DUPLICATE,
    ERR_INSUFFICIENT_FUNDS,
    ERR_ORDER_NOT_OPEN,
    ERR_POST_ONLY_WOULD_TAKE,
    GTC,
    GTT,
    HALTED,
    LIMIT,
    TAKER,
    TRADING,
    Changes,
    Order,
    OrderBook,
    Outcome,
)
from matching_service.engine.enums import (
    CANCELLED,
    EXPIRED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
)
from matching_service.metrics import MatchingMetrics
from matching_service.recovery import book_response, encode_snapshot
from matching_service.store import FencedOut, Store, terms_of

log = logging.getLogger(__name__)

BASIS_POINTS = 10_000

Deliver = Callable[[mpb.Result], None]

# Span names: a command's queue wait and match, a batch's commit, a Redis publish.
MATCH_SPAN = "match"
COMMIT_SPAN = "journal commit"
PUBLISH_SPAN = "publish"

ERROR_CODES = {
    ERR_ORDER_NOT_OPEN: mpb.ERROR_CODE_ORDER_NOT_OPEN,
    ERR_DUPLICATE: mpb.ERROR_CODE_DUPLICATE_CLIENT_ORDER_ID,
    ERR_POST_ONLY_WOULD_TAKE: mpb.ERROR_CODE_POST_ONLY_WOULD_TAKE,
    ERR_INSUFFICIENT_FUNDS: mpb.ERROR_CODE_INSUFFICIENT_FUNDS,
}

# A command whose hold was taken longer ago than this is refused (HOLD_EXPIRED): the
# order service's sweeper releases holds older than twice this that no order took
# (order_service/holds.py), so a hold is never swept while its command may still be
# committed.
HOLD_MAX_AGE_NS = 30 * 1_000_000_000
# An idle loop waits at most this long (seconds) for the next good-till-time expiry
# before it looks at the clock again.
EXPIRY_WAIT_MAX = 60.0

# Errors that mean "the database did not take the commit" (or we cannot know).
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ConnectionError,
             asyncio.TimeoutError)


def error_result(request_id: int, code: mpb.ErrorCode, message: str,
                 order_id: int = 0) -> mpb.Result:
    return mpb.Result(request_id=request_id,
                      error=mpb.CommandError(code=code, message=message, order_id=order_id))


def order_report(order: Order, fills=(), duplicate: bool = False) -> dict:
    """An OrderReport, as the dict a message constructor takes (cheaper than
    building the nested messages one by one)."""
    return {
        "order_id": order.order_id, "state": order.state, "quantity": order.quantity,
        "filled": order.filled, "filled_notional": str(order.filled_notional),
        "reason": order.reason,
        "create_time_unix_nanos": order.created_ns, "update_time_unix_nanos": order.updated_ns,
        "fills": [{"trade_id": f.trade_id, "price": f.price, "quantity": f.quantity,
                   "liquidity": TAKER, "time_unix_nanos": f.created_ns, "fee": f.taker_fee}
                  for f in fills],
        "duplicate": duplicate, "side": order.side, "type": order.order_type,
        "time_in_force": order.time_in_force, "price": order.price,
        "client_order_id": order.client_order_id, "post_only": order.post_only,
        "held": order.held, "funds": order.funds, "stop_price": order.stop_price,
        "expire_time_unix_nanos": order.expire_ns,
        "self_trade_prevention": order.self_trade_prevention,
    }


def _not_owner_now(instrument_id: int) -> NotFound:
    return NotFound(f"this matching pod no longer owns instrument {instrument_id}",
                    reason="NOT_OWNER")


class InstrumentLoop:
    def __init__(self, spec: InstrumentSpec, book: OrderBook, store: Store, redis: Redis,
                 epoch: int, *, batch_max: int, stream_maxlen: int, snapshot_interval: int,
                 publish_backlog: int, on_lost: Callable[[int], None],
                 metrics: MatchingMetrics, commit_min_interval: float = 0.0) -> None:
        self.spec = spec
        self.metrics = metrics
        self.book = book
        self.store = store
        self.redis = redis
        self.epoch = epoch
        self.batch_max = batch_max
        self.stream_maxlen = stream_maxlen
        self.snapshot_interval = snapshot_interval
        self.publish_backlog = publish_backlog
        # Commits start at most this often (seconds; loop time of the latest start below).
        self.commit_min_interval = commit_min_interval
        self._commit_started = float("-inf")
        self.snapshot_task: asyncio.Task | None = None
        # Events since the latest snapshot (recovery started from it).
        self.events_since_snapshot = book.sequence - book.snapshot_sequence
        # GetBook callers, answered between batches (when the book is the committed one).
        self.book_waiters: list[asyncio.Future] = []
        self.on_lost = on_lost
        # Commands waiting for the next batch, with their span when tracing.
        self.pending: deque[tuple[mpb.Command, Deliver, Span | None]] = deque()
        self.wake = asyncio.Event()
        self.available = True
        self.stopped = False
        # The status the instrument should have (instruments.status); the loop journals a
        # STATUS event at the start of its next batch when the book's differs.
        self.wanted_status = spec.status_number
        # Committed batches to publish, with the loop time of their commit, when tracing
        # the commit span's context, and the accounts' latest order updates (published
        # on ORDER_UPDATES_CHANNEL in the same pipeline: order services wake on it).
        self.to_publish: deque[tuple[Changes, float, SpanContext | None, str]] = deque()
        self.publish_wake = asyncio.Event()
        # Publishing fails (logged when that begins and ends), and the batches dropped since.
        self.publish_failing = False
        self.publish_dropped = 0
        self._tasks: list[asyncio.Task] = []
        # The order path's holds the batch's commands took over (accounts, hold keys).
        self.holds_used: tuple[list[int], list[str]] = ([], [])
        # Figures for metrics and benchmarks.
        self.batches = 0
        self.commands = 0

    @property
    def instrument_id(self) -> int:
        return self.spec.instrument_id

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"match-{self.spec.symbol}"),
                       asyncio.create_task(self._publish(), name=f"publish-{self.spec.symbol}")]

    async def stop(self) -> None:
        """Finish the batch in progress, refuse the rest, flush publication."""
        self.stopped = True
        self.wake.set()
        self.publish_wake.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        waiters, self.book_waiters = self.book_waiters, []
        for fut in waiters:  # the loop ended without answering them (fenced, reloading)
            if not fut.done():
                fut.set_exception(_not_owner_now(self.instrument_id))

    def update_spec(self, spec: InstrumentSpec) -> None:
        """New limits (the price band) apply to the next command; a new status is
        journaled at the start of the next batch, before any command of it."""
        self.spec = spec
        wanted = spec.status_number
        if wanted != self.wanted_status:
            self.wanted_status = wanted
            self.wake.set()

    def submit(self, command: mpb.Command, deliver: Deliver) -> None:
        if self.stopped:
            deliver(error_result(command.request_id, mpb.ERROR_CODE_NOT_OWNER,
                                 "matching pod is stopping"))
            return
        if not self.available:
            deliver(error_result(command.request_id, mpb.ERROR_CODE_UNAVAILABLE,
                                 "journal database unavailable"))
            return
        self.pending.append((command, deliver,
                             self._command_span(command) if tracing.ENABLED else None))
        self.wake.set()

    # -- the writer loop -------------------------------------------------------

    async def _run(self) -> None:
        pending = self.pending
        clock = asyncio.get_running_loop().time
        while True:
            if self.book_waiters:
                self._answer_book_waiters()
            status_change = self.wanted_status != self.book.status and self.available
            expiry = self.book.next_expiry() if self.available else 0
            due = 0 < expiry <= time.time_ns()
            if not pending and not status_change and not due:
                if self.stopped:
                    break
                self.wake.clear()
                if expiry:  # wake by itself when the next good-till-time order expires
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), min(
                            (expiry - time.time_ns()) / 1e9, EXPIRY_WAIT_MAX))
                else:
                    await self.wake.wait()
                continue
            # Under load, let the batch fill up a little: fewer, bigger commits.
            wait = self._commit_started + self.commit_min_interval - clock()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            n = min(len(pending), self.batch_max)
            batch = [pending.popleft() for _ in range(n)]
            now = time.time_ns() // 1000 * 1000  # PostgreSQL keeps microseconds
            if status_change:
                self.book.set_status(self.wanted_status, now)
                log.info("%s: status %s at sequence %d", self.spec.symbol, self.spec.status,
                         self.book.sequence)
            if expiry and expiry <= now:
                # Good-till-time orders due by the batch's time expire before any of its
                # commands (a TIMED_OUT event each): an order past its expiry never trades.
                self.book.expire_due(now)
            traced = tracing.ENABLED
            if traced:
                answers = self._apply_traced(batch, now)
            else:
                answers = [(deliver, self._apply(cmd, now)) for cmd, deliver, _ in batch]
            changes = self.book.drain_changes()
            changes.holds_used, self.holds_used = self.holds_used, ([], [])
            changes.reference_price = self._reference_price()
            commit_span = self._commit_span(batch, changes) if traced else None
            self._commit_started = started = clock()
            try:
                done = await self.store.commit(self.instrument_id, self.epoch, changes,
                                               self.book.terms)
            except FencedOut as err:
                if commit_span is not None:
                    tracing.end(commit_span, err)
                self.metrics.commit_failures("fenced").inc()
                log.error("%s: %s; giving the instrument up", self.spec.symbol, err)
                self._fail(answers, mpb.ERROR_CODE_NOT_OWNER, "instrument moved to another pod")
                self._refuse_pending(mpb.ERROR_CODE_NOT_OWNER, "instrument moved to another pod")
                self.stopped = True
                self.publish_wake.set()
                self.on_lost(self.instrument_id)
                return
            except DB_ERRORS as err:
                if commit_span is not None:
                    tracing.end(commit_span, err)
                self.metrics.commit_failures("database").inc()
                log.error("%s: commit failed (%s); nothing acknowledged, reloading",
                          self.spec.symbol, err)
                self._fail(answers, mpb.ERROR_CODE_UNAVAILABLE, "journal commit failed")
                if not await self._reload():
                    return
                continue
            committed = clock()
            commit_context = None
            if commit_span is not None:
                commit_span.end()
                commit_context = commit_span.get_span_context()
            for deliver, result in answers:
                deliver(result)
            self.batches += 1
            self.commands += n
            self.metrics.committed(self.spec.symbol, n, committed - started, changes)
            if changes.events:
                self.to_publish.append((changes, committed, commit_context,
                                        done.latest_updates))
                self.publish_wake.set()
                self.events_since_snapshot += len(changes.events)
                interval = self.snapshot_interval
                if interval and self.events_since_snapshot >= interval:
                    self._snapshot()

    async def get_book(self) -> mpb.GetBookResponse:
        """The committed book: answered by the loop between batches, where the book
        in memory is exactly what PostgreSQL holds. NOT_FOUND once the loop stops (the
        instrument is being handed over, or the pod stops)."""
        if self.stopped:
            raise _not_owner_now(self.instrument_id)
        fut = asyncio.get_running_loop().create_future()
        self.book_waiters.append(fut)
        self.wake.set()
        return await fut

    # -- spans (tracing only) ----------------------------------------------------

    def _command_span(self, cmd: mpb.Command) -> Span | None:
        """A command's span, from its arrival: a child of the order service's span that
        sent it (its traceparent), or the root of a trace of its own. None when the order
        service sampled the trace out (the traceparent's flags are 00): nothing below an
        unsampled span is recorded, so not even a non-recording span is made for it."""
        if cmd.traceparent.endswith("-00"):
            return None
        which = cmd.WhichOneof("command") or "command"
        parent = tracing.parse_traceparent(cmd.traceparent) if cmd.traceparent else None
        span = tracing.start(MATCH_SPAN, parent or tracing.NEW_TRACE, tracing.SERVER,
                             {"exchange.instrument": self.spec.symbol,
                              "exchange.command": which})
        if span.is_recording():
            if which == "new_order":
                o = cmd.new_order
                span.set_attributes(tracing.order_attributes(self.spec.symbol, o.side,
                                                             o.type))
            elif which in ("cancel_order", "amend_order"):
                span.set_attribute("exchange.order_id",
                                   str(getattr(cmd, which).order_id))
        return span

    def _apply_traced(self, batch: list[tuple[mpb.Command, Deliver, Span | None]],
                      now: int) -> list[tuple[Deliver, mpb.Result]]:
        """``_apply`` each command of ``batch``, ending its span once it is matched."""
        answers = []
        for cmd, deliver, span in batch:
            result = self._apply(cmd, now)
            answers.append((deliver, result))
            if span is None:
                continue
            if span.is_recording():
                if result.WhichOneof("result") == "error":
                    span.set_attribute("exchange.error.code",
                                       mpb.ErrorCode.Name(result.error.code))
                else:
                    span.set_attribute("exchange.order_id", str(result.order.order_id))
                    span.set_attribute("exchange.fills", len(result.order.fills))
            span.end()
        return answers

    def _commit_span(self, batch: list[tuple[mpb.Command, Deliver, Span | None]],
                     changes: Changes) -> Span:
        """The span of a batch's journal commit (see the module's docstring)."""
        return tracing.batch_span(COMMIT_SPAN, (span for _, _, span in batch),
                                  tracing.INTERNAL, {
                                      "exchange.instrument": self.spec.symbol,
                                      "exchange.batch.commands": len(batch),
                                      "exchange.batch.events": len(changes.events),
                                      "exchange.batch.trades": len(changes.trades),
                                      "exchange.sequence.first": changes.first_sequence,
                                      "exchange.sequence.last": changes.last_sequence})

    def _answer_book_waiters(self) -> None:
        if not self.available:
            return  # reloading: answered once the committed book is back
        response = book_response(self.book, self.epoch)
        waiters, self.book_waiters = self.book_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(response)

    def _snapshot(self) -> None:
        """Encode the book now (it equals the committed state between batches) and
        write it in the background; one write at a time, a failed one is retried at
        the next interval."""
        if self.snapshot_task is not None and not self.snapshot_task.done():
            return
        self.events_since_snapshot = 0
        started = time.monotonic()
        data = encode_snapshot(self.book)
        encoded = time.monotonic() - started
        sequence, count = self.book.sequence, self.book.order_count

        async def write() -> None:
            try:
                began = time.monotonic()
                await self.store.write_snapshot(self.instrument_id, sequence, count, data)
                self.metrics.snapshot_seconds.observe(encoded + time.monotonic() - began)
                log.info("%s: snapshot at sequence %d (%d orders)", self.spec.symbol, sequence,
                         count)
            except DB_ERRORS as err:
                log.warning("%s: snapshot at %d not written: %s", self.spec.symbol, sequence,
                            err)

        self.snapshot_task = asyncio.create_task(write())

    def _apply(self, cmd: mpb.Command, now: int) -> mpb.Result:
        which = cmd.WhichOneof("command")
        status = self.book.status
        if status != TRADING and (status == HALTED or (which != "cancel_order"
                                                      and which != "cancel_all")):
            if status == HALTED:
                return error_result(cmd.request_id, mpb.ERROR_CODE_HALTED,
                                    f"trading in {self.spec.symbol} is halted")
            return error_result(cmd.request_id, mpb.ERROR_CODE_CANCEL_ONLY,
                                f"{self.spec.symbol} accepts cancels only")
        if which == "new_order":
            o = cmd.new_order
            if o.type == LIMIT:
                refused = self._outside_band(cmd.request_id, o.price)
                if refused is not None:
                    return refused
            # Orders that may stay open (resting, or stops waiting) count against the cap.
            if (o.max_open_orders and (o.stop_price or o.type == LIMIT and o.time_in_force
                                       in (GTC, GTT, 0))
                    and self.book.open_orders(o.account_id) >= o.max_open_orders):
                return error_result(
                    cmd.request_id, mpb.ERROR_CODE_OPEN_ORDER_LIMIT,
                    f"the account has {o.max_open_orders} open orders in "
                    f"{self.spec.symbol}, as many as its tier allows")
            if o.held and now - o.held_at_unix_nanos > HOLD_MAX_AGE_NS:
                return error_result(cmd.request_id, mpb.ERROR_CODE_HOLD_EXPIRED,
                                    "the order's hold is too old; send it again")
            # PostgreSQL keeps microseconds: an expiry is rounded up to one, which the
            # batch times (whole microseconds) reach exactly when they reach the expiry.
            expire = -(-o.expire_time_unix_nanos // 1000) * 1000
            out = self.book.new_order(o.account_id, o.side, o.type, o.time_in_force, o.price,
                                      o.quantity, o.client_order_id, o.post_only, now,
                                      o.held, o.protection_price, o.funds, o.maker_fee_bps,
                                      o.taker_fee_bps, o.self_trade_prevention, o.stop_price,
                                      expire)
            if o.held and out.order is not None and not out.error and not out.duplicate:
                self.holds_used[0].append(o.account_id)
                self.holds_used[1].append(o.client_order_id)
        elif which == "cancel_order":
            c = cmd.cancel_order
            out = self.book.cancel(c.account_id, c.order_id, now)
        elif which == "cancel_all":
            everything = cmd.cancel_all
            cancelled = self.book.cancel_all(everything.account_id, everything.side, now)
            return mpb.Result(request_id=cmd.request_id, cancelled=mpb.CancelledOrders(
                orders=[order_report(o) for o in cancelled]))
        elif which == "amend_order":
            a = cmd.amend_order
            if a.price:
                refused = self._outside_band(cmd.request_id, a.price)
                if refused is not None:
                    return refused
            if a.extra_held and now - a.held_at_unix_nanos > HOLD_MAX_AGE_NS:
                return error_result(cmd.request_id, mpb.ERROR_CODE_HOLD_EXPIRED,
                                    "the amendment's hold is too old; send it again")
            out = self.book.amend(a.account_id, a.order_id, a.price, a.quantity, now,
                                  a.extra_held)
            if a.extra_held and not out.error:
                self.holds_used[0].append(a.account_id)
                self.holds_used[1].append(a.hold_key)
        else:
            return error_result(cmd.request_id, mpb.ERROR_CODE_INVALID, "empty command")
        return self._result(cmd.request_id, out)

    def _reference_price(self) -> int | None:
        """What market buys' protection is computed from: the last trade's price, or
        before any trade the best ask, then the best bid (None: an empty book)."""
        book = self.book
        if book.last_price is not None:
            return book.last_price
        ask = book.best_ask()
        return ask if ask is not None else book.best_bid()

    def _outside_band(self, request_id: int, price: int) -> mpb.Result | None:
        """The refusal of a limit price outside the band around the last trade's price
        (None when it is inside, or there is no band or no trade yet)."""
        band, reference = self.spec.price_band_bps, self.book.last_price
        if not band or reference is None:
            return None
        if abs(price - reference) * BASIS_POINTS <= reference * band:
            return None
        low = -(-reference * (BASIS_POINTS - band) // BASIS_POINTS)  # rounded up
        high = reference * (BASIS_POINTS + band) // BASIS_POINTS
        return error_result(
            request_id, mpb.ERROR_CODE_PRICE_OUTSIDE_BAND,
            f"price {self.spec.price_str(price)} is outside the band "
            f"{self.spec.price_str(max(low, 1))}-{self.spec.price_str(high)} "
            f"({band} bps around the last trade, {self.spec.price_str(reference)})")

    @staticmethod
    def _result(request_id: int, out: Outcome) -> mpb.Result:
        if out.error:
            code = ERROR_CODES.get(out.error, mpb.ERROR_CODE_INVALID)
            return error_result(request_id, code, out.error_message,
                                out.order.order_id if out.order is not None else 0)
        assert out.order is not None
        return mpb.Result(request_id=request_id,
                          order=order_report(out.order, out.fills, out.duplicate))

    def _fail(self, answers, code: mpb.ErrorCode, message: str) -> None:
        for deliver, result in answers:
            deliver(error_result(result.request_id, code, message))

    def _refuse_pending(self, code: mpb.ErrorCode, message: str) -> None:
        while self.pending:
            cmd, deliver, span = self.pending.popleft()
            if span is not None:
                span.set_attribute("exchange.error.code", mpb.ErrorCode.Name(code))
                span.end()
            deliver(error_result(cmd.request_id, code, message))

    async def _reload(self) -> bool:
        """Rebuild the book from what PostgreSQL committed; retry until it answers.
        Returns False if the loop should end (fenced out or stopping)."""
        self.available = False
        self._refuse_pending(mpb.ERROR_CODE_UNAVAILABLE, "journal database unavailable")
        delay = 0.05
        while not self.stopped:
            try:
                still_owner = await self.store.still_owner(self.instrument_id, self.epoch)
                if not still_owner:
                    self.stopped = True
                    self.on_lost(self.instrument_id)
                    return False
                self.book = await self.store.load_book(self.instrument_id,
                                                       terms_of(self.spec))
                self.events_since_snapshot = self.book.sequence - self.book.snapshot_sequence
                self.available = True
                log.info("%s: book reloaded at sequence %d", self.spec.symbol,
                         self.book.sequence)
                return True
            except DB_ERRORS as err:
                # The outage was logged when the commit failed; its end is the reload.
                log.debug("%s: database still unavailable: %s", self.spec.symbol, err)
                self._refuse_pending(mpb.ERROR_CODE_UNAVAILABLE, "journal database unavailable")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        return False

    # -- market data publication ----------------------------------------------

    async def _publish(self) -> None:
        """Publish committed batches in order. While Redis is down they wait here
        (up to ``publish_backlog``; past that the oldest are dropped and market data
        notices the gap and resynchronizes from PostgreSQL). A batch published twice
        is refused by Redis (its entry id is not greater), which is harmless."""
        key = stream_key(self.instrument_id)
        clock = asyncio.get_running_loop().time
        delay = 0.05
        while True:
            if not self.to_publish:
                if self.stopped:
                    return
                self.publish_wake.clear()
                await self.publish_wake.wait()
                continue
            batch = list(self.to_publish)
            span = None
            if tracing.ENABLED:
                span = tracing.batch_span(PUBLISH_SPAN, (ctx for _, _, ctx, _ in batch),
                                          tracing.PRODUCER, {
                                              "exchange.instrument": self.spec.symbol,
                                              "exchange.batches": len(batch)})
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for changes, _, commit, latest_updates in batch:
                        pipe.xadd(key, {FIELD: self._md_batch(changes, commit)},
                                  id=entry_id(changes.last_sequence),
                                  maxlen=self.stream_maxlen, approximate=True)
                        if latest_updates:
                            pipe.publish(ORDER_UPDATES_CHANNEL, latest_updates)
                    await pipe.execute(raise_on_error=False)
            except Exception as err:  # noqa: BLE001 - Redis away: keep the batches, retry
                if span is not None:
                    tracing.end(span, err)
                if self.stopped:
                    return
                self.metrics.publish_failures.inc()
                dropped = 0
                while len(self.to_publish) > self.publish_backlog:
                    self.to_publish.popleft()
                    dropped += 1
                self.metrics.publish_dropped.inc(dropped)
                self._publish_failed(err, dropped)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if span is not None:
                span.end()
            if self.publish_failing:
                self.publish_failing = False
                log.info("%s: publishing to Redis again; %d batches caught up%s",
                         self.spec.symbol, len(batch),
                         f", {self.publish_dropped} dropped meanwhile (market data "
                         "resynchronizes from PostgreSQL)" if self.publish_dropped else "")
                self.publish_dropped = 0
            delay = 0.05
            published = clock()
            for _ in batch:
                _, committed, _, _ = self.to_publish.popleft()
                self.metrics.publish_lag.observe(published - committed)

    def _publish_failed(self, err: Exception, dropped: int) -> None:
        """Log a publishing outage once when it begins, and the first batches it drops
        (the end is logged when a publish succeeds again)."""
        if not self.publish_failing:
            self.publish_failing = True
            log.warning("%s: publishing to Redis failed (%s); committed batches wait (at "
                        "most %d) and are published when it answers", self.spec.symbol, err,
                        self.publish_backlog)
        if dropped:
            if not self.publish_dropped:
                log.warning("%s: more than %d batches wait for Redis: dropping the oldest "
                            "(market data resynchronizes from PostgreSQL)", self.spec.symbol,
                            self.publish_backlog)
            self.publish_dropped += dropped

    def _md_batch(self, changes: Changes, commit: SpanContext | None = None) -> bytes:
        msg = mpb.MarketDataBatch(
            instrument_id=self.instrument_id,
            first_sequence=changes.first_sequence,
            last_sequence=changes.last_sequence,
            time_unix_nanos=time.time_ns(),
            bids=[mpb.LevelUpdate(price=p, quantity=q, order_count=c) for p, q, c in changes.bids],
            asks=[mpb.LevelUpdate(price=p, quantity=q, order_count=c) for p, q, c in changes.asks],
            trades=[mpb.TradeEvent(trade_id=t.trade_id, sequence=t.sequence, price=t.price,
                                   quantity=t.quantity,
                                   taker_side=cast(cpb.Side, t.taker_side),
                                   time_unix_nanos=t.created_ns)
                    for t in changes.trades],
            traceparent=tracing.traceparent(commit),
            orders=_order_changes(changes),
        )
        return msg.SerializeToString()


# By name: an untriggered stop (its own state) is in neither.
_RESTING = (NEW, PARTIALLY_FILLED)
_CLOSED = (FILLED, CANCELLED, EXPIRED, REJECTED)


def _order_changes(changes: Changes) -> list[mpb.OrderChange]:
    """The batch's changed orders as the public L3 book sees them: a resting order with
    its open quantity and priority; a closed one with quantity 0 if it existed before
    the batch (and so may have rested). An order that arrived and closed within the
    batch never showed, and an untriggered stop is not on the book: both are left out.
    Market data ignores the removal of an order it does not hold (a stop that was
    cancelled or triggered and filled at once)."""
    first = changes.first_sequence
    out = []
    for o in changes.orders:
        if o.state in _RESTING:
            out.append(mpb.OrderChange(order_id=o.order_id, side=cast(cpb.Side, o.side),
                                       price=o.price, quantity=o.quantity - o.filled,
                                       priority=o.priority))
        elif o.state in _CLOSED and sequence_of(o.order_id) < first:
            out.append(mpb.OrderChange(order_id=o.order_id, side=cast(cpb.Side, o.side),
                                       price=o.price, quantity=0, priority=o.priority))
    return out
