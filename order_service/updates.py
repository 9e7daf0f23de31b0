"""The caller's order updates, exactly once and resumable (StreamOrderUpdates, and the
OrderEntry session's ``order_updates`` option).

The matching commit numbers each account's updates 1, 2, 3, ... in the statement that
journals their events (matching_service/store.py), and the matching pod then publishes
each account's new latest sequence on Redis (``ORDER_UPDATES_CHANNEL``,
exchange_common/streams.py). Here PostgreSQL is the only source of updates: a
subscriber holds a position (the last sequence it sent) and reads the rows after it,
in pages of at most ``PAGE``, in sequence order; it sends only a run that follows its
position without a gap, so it can never skip or repeat one. Notifications only say when
to read:

* ``UpdateFeed`` (one per process) keeps one Redis connection subscribed to that
  channel and wakes the subscribers of the accounts a message names; when that
  connection is lost and comes back, it wakes every subscriber, since messages may have
  been missed meanwhile (Redis pub/sub keeps nothing for an absent subscriber);
* a subscriber with nothing to send for ``heartbeat`` seconds reads PostgreSQL anyway,
  and when there is still nothing, sends a heartbeat with the account's latest sequence
  (its position): a lost message delays an update by at most that, never loses it.

A subscriber's queue is the position and a flag: however far behind it is, it holds no
backlog in memory, and a slow one costs the others nothing (it reads its pages when it
gets to them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common.errors import InvalidArgument, OutOfRange
from exchange_common.ids import SEQUENCE_BITS
from exchange_common.streams import ORDER_UPDATES_CHANNEL
from order_service.convert import update_from_row
from order_service.store import Store

log = logging.getLogger(__name__)

# Updates in one read (and one response message).
PAGE = 1000
# Seconds without anything to send before a subscriber reads anyway and, finding
# nothing, sends a heartbeat.
HEARTBEAT = 5.0
EV_TRADE = 2  # journal.kind of a trade

# The rows after a position, with the event's time (journal), the order's unchanging
# columns (orders) and a fill's (trades); the order id carries the instrument.
UPDATES_SELECT = f"""
SELECT u.sequence, u.kind, (u.order_id >> {SEQUENCE_BITS})::integer AS instrument_id,
       u.state, u.price, u.quantity, u.filled, u.filled_notional, u.reason, u.held,
       j.created_at, o,
       t.trade_id, t.price AS trade_price, t.quantity AS trade_quantity,
       CASE WHEN t.maker_order_id = u.order_id THEN {cpb.LIQUIDITY_MAKER}
            ELSE {cpb.LIQUIDITY_TAKER} END AS liquidity,
       CASE WHEN t.maker_order_id = u.order_id THEN t.maker_fee ELSE t.taker_fee END AS fee
  FROM order_updates u
  JOIN orders o ON o.order_id = u.order_id
  JOIN journal j ON j.instrument_id = (u.order_id >> {SEQUENCE_BITS})::integer
                AND j.sequence = u.journal_sequence
  LEFT JOIN trades t ON u.kind = {EV_TRADE}
                    AND t.trade_id = (u.order_id >> {SEQUENCE_BITS} << {SEQUENCE_BITS})
                                     | u.journal_sequence
 WHERE u.account_id = $1 AND u.sequence > $2
 ORDER BY u.sequence
 LIMIT $3
"""
LATEST_SELECT = "SELECT last_sequence FROM account_update_sequences WHERE account_id = $1"


class _Waiter:
    """One subscriber's wake-up, and the last sequence it sent."""

    __slots__ = ("position", "wake")

    def __init__(self) -> None:
        self.position = 0
        self.wake = asyncio.Event()


class UpdateFeed:
    """The process's Redis subscription and the subscribers it wakes."""

    def __init__(self, redis_url: str, store: Store, *, heartbeat: float = HEARTBEAT,
                 retry: float = 1.0) -> None:
        self.redis_url = redis_url
        self.store = store
        self.heartbeat = heartbeat
        self.retry = retry
        self.waiters: dict[int, set[_Waiter]] = {}
        self.live = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="order-updates-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            redis = Redis.from_url(self.redis_url, socket_connect_timeout=2.0,
                                   health_check_interval=self.heartbeat)
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(ORDER_UPDATES_CHANNEL)
                self.live = True
                self._wake_all()  # anything may have been committed while not subscribed
                while True:
                    message = await pubsub.get_message(timeout=self.heartbeat)
                    if message is not None and message["type"] == "message":
                        self._notified(message["data"])
            except (RedisError, OSError) as err:
                log.warning("order updates: the Redis subscription was lost (%s); "
                            "subscribers read PostgreSQL every %.0f s meanwhile", err,
                            self.heartbeat)
            finally:
                self.live = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await redis.aclose()
            await asyncio.sleep(self.retry)

    def _notified(self, payload: bytes) -> None:
        """Wake the subscribers of the accounts ``payload`` names, if it is news to
        them ('<account>:<latest sequence>,...')."""
        waiters = self.waiters
        for item in payload.split(b","):
            account, _, sequence = item.partition(b":")
            if not (account.isdigit() and sequence.isdigit()):
                continue
            subscribed = waiters.get(int(account))
            if subscribed:
                latest = int(sequence)
                for waiter in subscribed:
                    if latest > waiter.position:
                        waiter.wake.set()

    def _wake_all(self) -> None:
        for subscribed in self.waiters.values():
            for waiter in subscribed:
                waiter.wake.set()

    @contextlib.contextmanager
    def _registered(self, account_id: int):
        waiter = _Waiter()
        self.waiters.setdefault(account_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            subscribed = self.waiters[account_id]
            subscribed.discard(waiter)
            if not subscribed:
                del self.waiters[account_id]

    async def latest(self, account_id: int) -> int:
        """The account's latest update sequence (0: none yet)."""
        return await self.store.pool.fetchval(LATEST_SELECT, account_id) or 0

    async def page(self, account_id: int, after: int, limit: int = PAGE
                   ) -> list[opb.OrderUpdate]:
        """The account's updates after ``after`` that follow it without a gap (at most
        ``limit``)."""
        rows = await self.store.pool.fetch(UPDATES_SELECT, account_id, after, limit)
        out = []
        expected = after + 1
        for row in rows:
            if row["sequence"] != expected:
                break  # not visible yet (never expected: see the module's docstring)
            spec = await self.store.instrument_by_id(row["instrument_id"])
            assert spec is not None
            out.append(update_from_row(spec, row))
            expected += 1
        return out

    async def start_position(self, account_id: int, after: int | None) -> int:
        """Where a subscription starts: after ``after``, or (None) after the latest.
        Refuses a negative one (INVALID_ARGUMENT) and one beyond the account's latest
        sequence (OUT_OF_RANGE: no such update was ever sent)."""
        if after is not None and after < 0:
            raise InvalidArgument("after_sequence must be 0 or more",
                                  reason="AFTER_SEQUENCE_INVALID", field="after_sequence")
        latest = await self.latest(account_id)
        if after is None:
            return latest
        if after > latest:
            raise OutOfRange(f"after_sequence {after} is beyond the account's latest update "
                             f"({latest})", reason="AFTER_SEQUENCE_AHEAD",
                             metadata={"last_sequence": str(latest)})
        return after

    async def follow(self, account_id: int, after: int | None
                     ) -> AsyncGenerator[opb.StreamOrderUpdatesResponse]:
        """The subscription: every update after ``after`` (None: from the next one) in
        sequence order, in messages of up to PAGE; a heartbeat first when there is
        nothing to replay, and after ``heartbeat`` seconds of silence."""
        with self._registered(account_id) as waiter:
            # Registered first: a commit notified from here on wakes this subscriber, and
            # the reads below see every one committed before.
            position = waiter.position = await self.start_position(account_id, after)
            read = heartbeat_due = True
            while True:
                if read:
                    waiter.wake.clear()  # before reading: a later commit wakes it again
                    updates = await self.page(account_id, position)
                    if updates:
                        position = waiter.position = updates[-1].sequence
                        heartbeat_due = False
                        yield opb.StreamOrderUpdatesResponse(updates=updates,
                                                             last_sequence=position)
                        if len(updates) == PAGE:
                            continue  # more wait
                    elif heartbeat_due:
                        heartbeat_due = False
                        yield opb.StreamOrderUpdatesResponse(last_sequence=position)
                try:
                    await asyncio.wait_for(waiter.wake.wait(), self.heartbeat)
                    read = True
                except TimeoutError:
                    read = heartbeat_due = True
