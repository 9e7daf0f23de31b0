"""Admission control: refuse new orders early and cheaply while this process is behind.

A gRPC asyncio server takes calls from gRPC's core one at a time, each after a trip
through the event loop. When calls arrive faster than the process takes them, they wait in
core's queue of calls received and not yet taken, latency grows without bound, and core
ends by refusing calls at random with a bare ``CANCELLED``. Instead, this process refuses
the excess itself, before any database or matching work, with ``RESOURCE_EXHAUSTED``
(reason ``OVERLOADED``, a ``RetryInfo`` delay). A refusal costs a part of what an order
does, so refusing lets the process catch up, and the orders it admits keep their latency.

The signal is that queue, measured (``exchange_common.backlog``): core counts the calls it
has received, a server interceptor counts the calls this process has taken, and the
difference is the backlog. Every ``SAMPLE`` seconds the smallest backlog of the last
``STANDING`` seconds (the queue that stood all that time, CoDel's idea) and the rate at
which calls were taken give the time a call now waits before any handler sees it; while
that exceeds ``max_wait``, every new order is refused. A queue that builds up while the
event loop is held up for a moment (a collection, a burst of answers) and drains right
after is not a standing one: it refuses nothing.

A second bound, for when matching or the database is what cannot keep up: the orders
admitted and not yet answered. Their limit adapts to their answers, as the concurrency
limiters of large services do: when an answer in the last ``SAMPLE`` took longer than
``max_latency``, the limit falls to what is answered within ``max_latency`` at the rate
answers came over the last ``RATE_WINDOW`` (Little's law; at most 90% of the orders then in
flight, at least ``MIN_LIMIT``), and from then on only the answers of orders admitted
after the fall count; when such answers came, all in time, it grows by a quarter, up to
``max_in_flight`` (from the floor to the top in about half a second, so that a pause of
matching refuses orders only while it lasts; an order sent again to a new owner, as in a
failover, does not count at all: ``forget``). So the orders admitted are answered within
about ``max_latency`` plus the bottleneck's own delay, and the rest are refused at once.

Cancels are never refused for overload (they take load off the book); neither are queries
(they have their rate limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from exchange_common.backlog import Backlog
from exchange_common.errors import ResourceExhausted

log = logging.getLogger(__name__)

RETRY_AFTER = 0.05  # seconds: the RetryInfo delay
SAMPLE = 0.02  # seconds between two measures of the backlog and the answers
# Seconds a backlog must stand to count. 0.05 (the default max_wait) refused about 1% of
# the seed scenario's orders at 2,000/s, in bursts of 200-400 in one second whose admitted
# orders all took less than 90 ms: the loop had been held up for tens of milliseconds.
STANDING = 0.2
MIN_LIMIT = 32  # orders in flight always allowed
RATE_WINDOW = 0.5  # seconds over which the rate of answers is measured


class Admission:
    def __init__(self, backlog: Backlog | None, *, max_wait: float, max_latency: float,
                 max_in_flight: int, enabled: bool = True) -> None:
        self.backlog = backlog
        self.max_wait = max_wait
        self.max_latency = max_latency
        self.max_in_flight = max_in_flight
        self.limit = max_in_flight  # of orders in flight, adapted to their answers
        self.enabled = enabled
        self.in_flight = 0
        self.slowest = 0.0  # the longest answer since the last measure, seconds
        self._cut_at = 0.0  # when the limit was last lowered
        self._answered = 0  # orders admitted since then and answered in this measure
        self._all_answered = 0
        self.refused = 0
        self.waiting = 0  # calls received and not taken, at the last measure
        self.wait = 0.0  # seconds the last of them will wait, at the rate calls are taken
        self.overloaded = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if not self.enabled:
            return
        if self.backlog is None or self.backlog.received() is None:
            log.warning("channelz cannot count the calls received: overload control by the "
                        "answers of the orders in flight only")
        self._task = asyncio.create_task(self._measure())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _measure(self) -> None:
        backlog = self.backlog
        # (time, calls received, calls taken) over the last STANDING seconds at least
        window: deque[tuple[float, int, int]] = deque()
        began: int | None = None  # self.refused when refusing began
        quiet_since = time.monotonic()
        answers: deque[tuple[float, int]] = deque()  # (time, self._all_answered)
        while True:
            await asyncio.sleep(SAMPLE)
            now = time.monotonic()
            answers.append((now, self._all_answered))
            while len(answers) > 2 and now - answers[1][0] >= RATE_WINDOW:
                answers.popleft()
            if self.slowest > self.max_latency:
                # As many as are answered within max_latency at the rate answers come
                # (Little's law), never more than were in flight.
                span = now - answers[0][0]
                rate = (self._all_answered - answers[0][1]) / span if span > 0 else 0.0
                self.limit = max(MIN_LIMIT, min(int(self.in_flight * 0.9),
                                                int(rate * self.max_latency)))
                self._cut_at = now
            elif self._answered and self.limit < self.max_in_flight:
                self.limit = min(self.max_in_flight, max(self.limit + 1, self.limit * 5 // 4))
            self.slowest = 0.0
            self._answered = 0
            received = backlog.received() if backlog is not None else None
            now = time.monotonic()
            if backlog is not None and received is not None:
                window.append((now, received, backlog.taken))
                while len(window) > 2 and now - window[1][0] >= STANDING:
                    window.popleft()
                # The queue that stood through the whole window (its smallest size: calls
                # pass through it all the time, a standing queue is what stays), and how
                # long that takes at the rate calls were taken meanwhile (CoDel's idea).
                # (callsStarted may count a call an instant before the interceptor.)
                standing = min(max(0, r - t) for _, r, t in window)
                first, _, taken_first = window[0]
                rate = (window[-1][2] - taken_first) / (now - first) if now > first else 0.0
                self.waiting = standing
                if now - first < STANDING:
                    self.wait = 0.0  # not measured long enough yet
                elif standing == 0:
                    self.wait = 0.0
                else:  # (a rate of 0: nothing taken for the whole window, stalled)
                    self.wait = standing / rate if rate > 0 else now - first
                self.overloaded = self.wait > self.max_wait
            # One log line when refusing begins and one when it ends, not one per order.
            if self.overloaded or self.in_flight >= self.limit:
                quiet_since = now
                if began is None:
                    began = self.refused
                    log.warning("overloaded: %d calls wait %.0f ms before a handler, %d orders "
                                "in flight (limit %d); refusing new orders with OVERLOADED",
                                self.waiting, self.wait * 1000, self.in_flight, self.limit)
            elif began is not None and now - quiet_since > 1.0:
                log.info("no longer overloaded: %d orders refused", self.refused - began)
                began = None

    def admit(self, count: int = 1) -> int:
        """How many of ``count`` new orders to admit now (the first ones); the caller
        answers the rest with ``refusal()`` and calls ``done`` for each admitted one
        once it is answered."""
        if not self.enabled:
            return count
        admitted = 0 if self.overloaded else max(0, min(count, self.limit - self.in_flight))
        self.in_flight += admitted
        self.refused += count - admitted
        return admitted

    def forget(self) -> None:
        """The orders admitted until now wait for something other than load (a new owner of
        their instrument): their answers do not count for the limit."""
        self._cut_at = time.monotonic()

    def done(self, started: float, count: int = 1) -> None:
        """``count`` admitted orders, admitted at ``started`` (``time.monotonic()``), are
        answered."""
        if self.enabled:
            self.in_flight -= count
            self._all_answered += count
            if started > self._cut_at:  # admitted under the present limit
                self.slowest = max(self.slowest, time.monotonic() - started)
                self._answered += count

    @staticmethod
    def refusal() -> ResourceExhausted:
        return ResourceExhausted(
            f"the order service is overloaded; retry in {RETRY_AFTER:.3f} s (with the same "
            "client_order_id), or on another connection", reason="OVERLOADED",
            retry_after=RETRY_AFTER)


# The status of a refused unary call, made once: a refusal must cost little.
REFUSAL = Admission.refusal().to_status()
