"""What an OrderEntry session does on its own: cancel-on-disconnect and the dead-man timer
(SessionOptions; each options message replaces the previous one's settings).

Cancel-on-disconnect: while it is on, the session remembers the orders it places; when
the session ends without a goodbye, those still open are cancelled, each by id through
matching, as a CancelOrder would (orders whose create was still on its way are waited
for first). A goodbye is the client closing its side of the stream (a half-close):
after it, however the call ends, nothing is cancelled. grpc.aio ends the request stream
the same way when the client half-closes and when its connection drops or it cancels the
call (the read fails, and is reported as the end of the stream); in the second case the
call itself is cancelled as well, soon after but not in any fixed number of turns of the
event loop (seen later than five under load). So, with cancel_on_disconnect on, the end
of the request stream is taken as a goodbye only once the call has stayed alive for
``GOODBYE_GRACE`` seconds after it, and the session does not end before that: a session
with the option ends up to that long after its half-close.

Dead-man timer: ``dead_man_seconds`` (1-3600) arms it; unless options with a
dead_man_seconds come again within that time, every open order of the account is
cancelled (cancel_all.py) once, and the session is sent a response with notice
``DEAD_MAN_TIMER`` and the orders cancelled; then the timer is off. 0 turns it off. The
timer belongs to the session: it stops when the session ends (a dropped session is what
cancel_on_disconnect is for) or says goodbye.

Both live in the order-service process that holds the session: if that process dies,
nobody is left to cancel, and the timer dies with it (README, "The order-entry session").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from exchange.order.v1 import order_pb2 as opb
from exchange_common.errors import InvalidArgument, as_exchange_error
from order_service.auth import Caller
from order_service.cancel_all import CancelAllIncomplete, cancel_all
from order_service.convert import OPEN_STATES
from order_service.orders import Answer, Orders

log = logging.getLogger(__name__)

DEAD_MAN_NOTICE = "DEAD_MAN_TIMER"
MAX_DEAD_MAN_SECONDS = 3600
# Seconds the call must stay alive after the end of the request stream for it to count
# as a goodbye, with cancel_on_disconnect on (a dropped connection cancels the call soon
# after it ends the stream).
GOODBYE_GRACE = 1.0
# Orders named in one notice response (a dead-man timer that cancels more sends several).
MAX_ORDERS_PER_NOTICE = 1000
# A long session remembers many orders: once it remembers this many (and then twice as
# many as were still open at the last look), it forgets those no longer open.
PRUNE_AT = 10_000

# Work that must finish even though its session ended: the cancels of a session that
# dropped, a dead-man timer's mass cancel.
_background: set[asyncio.Task[Any]] = set()


def _run_detached(coro: Any) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def check_options(options: opb.SessionOptions) -> None:
    """Refuse settings out of range (nothing of the message is applied then)."""
    seconds = options.dead_man_seconds
    if not 0 <= seconds <= MAX_DEAD_MAN_SECONDS:
        raise InvalidArgument(
            f"dead_man_seconds must be 1-{MAX_DEAD_MAN_SECONDS}, or 0 to turn the timer off",
            reason="DEAD_MAN_SECONDS_INVALID", field="options.dead_man_seconds")


class SessionGuard:
    """``notify`` sends a response of the session's own (a notice) to the client."""

    def __init__(self, orders: Orders, caller: Caller, matching_timeout: float,
                 notify: Callable[[opb.OrderEntryResponse], None]) -> None:
        self.orders = orders
        self.caller = caller
        self.matching_timeout = matching_timeout
        self.notify = notify
        self.cancel_on_disconnect = False
        self.goodbye = False
        self.placed: set[int] = set()
        self.prune_at = PRUNE_AT
        self.in_flight: set[asyncio.Future[Answer]] = set()
        self.timer: asyncio.Task[None] | None = None

    def apply(self, options: opb.SessionOptions) -> None:
        """Take the settings of an options message (InvalidArgument if out of range)."""
        check_options(options)
        self.cancel_on_disconnect = options.cancel_on_disconnect
        self._stop_timer()
        if options.dead_man_seconds:
            self.timer = asyncio.ensure_future(self._dead_man(options.dead_man_seconds))

    # -- cancel on disconnect -------------------------------------------------------

    def placing(self, answers: Sequence[asyncio.Future[Answer]]) -> None:
        """Creates sent by this session: remembered if cancel_on_disconnect is on."""
        if not self.cancel_on_disconnect:
            return
        for answer in answers:
            self.in_flight.add(answer)
            answer.add_done_callback(self._placed)

    def _placed(self, answer: asyncio.Future[Answer]) -> None:
        self.in_flight.discard(answer)
        if answer.cancelled() or answer.exception() is not None:
            return
        order = answer.result()[0]
        if order.state in OPEN_STATES:
            self.placed.add(int(order.order_id))
            if len(self.placed) >= self.prune_at:
                self.prune_at = 2 * len(self.placed)  # no second look meanwhile
                _run_detached(self._prune())

    async def _prune(self) -> None:
        """Forget the remembered orders that are no longer open (filled, cancelled)."""
        looked = set(self.placed)
        still_open = set(await self.orders.store.open_among(self.caller.account_id,
                                                             sorted(looked)))
        self.placed = (self.placed - looked) | still_open
        self.prune_at = max(PRUNE_AT, 2 * len(self.placed))

    async def watch(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """``requests``, noting the goodbye when they end (see the module's docstring)."""
        async for request in requests:
            yield request
        if self.cancel_on_disconnect:
            # Not a timeout on anyone: the window in which a dropped connection's
            # cancellation arrives (the session stays open meanwhile, see above).
            await asyncio.sleep(GOODBYE_GRACE)
        self.goodbye = True
        self._stop_timer()

    def ended(self) -> None:
        """The session's call ended, however."""
        self._stop_timer()
        if self.goodbye or not self.cancel_on_disconnect:
            return
        if self.placed or self.in_flight:
            _run_detached(self._cancel_placed(set(self.placed), set(self.in_flight)))

    async def _cancel_placed(self, placed: set[int],
                             in_flight: set[asyncio.Future[Answer]]) -> None:
        if in_flight:
            await asyncio.wait(in_flight, timeout=self.matching_timeout)
        placed |= self.placed  # the creates that were on their way, once placed
        account_id = self.caller.account_id
        open_ids = await self.orders.store.open_among(account_id, sorted(placed))
        deadline = time.monotonic() + self.matching_timeout
        outcomes = await asyncio.gather(
            *(self.orders.cancel(self.caller, opb.CancelOrderRequest(order_id=str(oid)),
                                 deadline) for oid in open_ids), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        log.info("session of account %d ended without a goodbye: cancelled %d of its %d "
                 "open orders%s", account_id, len(open_ids) - len(failed), len(open_ids),
                 f" ({failed[0]})" if failed else "")

    # -- dead-man timer --------------------------------------------------------------

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def _dead_man(self, seconds: int) -> None:
        await asyncio.sleep(seconds)
        self.timer = None
        # Detached: the cancel goes on even if the session ends meanwhile.
        _run_detached(self._fire())

    async def _fire(self) -> None:
        account_id = self.caller.account_id
        error: Exception | None = None
        try:
            cancelled = await cancel_all(self.orders, account_id, "", 0,
                                         time.monotonic() + self.matching_timeout)
        except CancelAllIncomplete as err:
            cancelled, error = err.cancelled, err
        except Exception as err:  # noqa: BLE001 - told to the session, never raised
            cancelled, error = [], err
        log.info("dead-man timer of a session of account %d: cancelled %d orders%s",
                 account_id, len(cancelled), f" ({error})" if error else "")
        for start in range(0, max(len(cancelled), 1), MAX_ORDERS_PER_NOTICE):
            self.notify(opb.OrderEntryResponse(
                notice=DEAD_MAN_NOTICE,
                cancelled=cancelled[start:start + MAX_ORDERS_PER_NOTICE]))
        if error is not None:
            status = as_exchange_error(error, "OrderEntry").to_status_proto()
            self.notify(opb.OrderEntryResponse(events=[opb.OrderEntryEvent(error=status)]))
