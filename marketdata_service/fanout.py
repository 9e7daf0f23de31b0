"""Bounded, conflating subscriber queues (asyncio only; no gRPC, no I/O).

Each update is serialized once by its producer and the same ``bytes`` object is pushed to
every subscriber. A subscriber's queue holds at most ``limit`` updates. When it is full, the
backlog is thrown away and the subscriber is marked for a resync instead: the next message it
takes is built from the state at that moment (a fresh book snapshot, or the trades it has not
seen yet), and updates pushed after that follow on from it. The same happens when the oldest queued
update is older than ``max_age`` seconds, so a subscriber is never left far behind on a
short queue either. A subscriber that cannot keep up therefore costs the producer one
append and never slows anyone else.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

# resync(position) -> (new position, message or None when there is nothing to send)
Resync = Callable[[int], tuple[int, bytes | None]]


class SubscriptionClosed(Exception):
    """The subscription was closed by the server (shutdown)."""


class Subscriber:
    __slots__ = ("_queue", "_limit", "_max_age", "_wakeup", "_resync", "need_resync",
                 "position", "queued", "dropped", "closed")

    def __init__(self, limit: int, resync: Resync, *, position: int = 0,
                 initial: bytes | None = None, max_age: float = float("inf")) -> None:
        """``initial``, when given, is the first message (a snapshot as of ``position``)."""
        self._queue: deque[tuple[int, bytes, float]] = deque()
        if initial is not None:
            self._queue.append((position, initial, time.monotonic()))
        self._limit = limit
        self._max_age = max_age
        self._wakeup = asyncio.Event()
        self._resync = resync
        # When true, the next message is made by ``resync`` and the queue stays empty.
        self.need_resync = False
        # Sequence covered by the last message taken.
        self.position = position
        # Sequence covered by the last message queued (where the next update must start);
        # meaningless while ``need_resync``.
        self.queued = position
        # Updates thrown away because this subscriber was behind.
        self.dropped = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def oldest(self) -> float | None:
        """When (time.monotonic()) the oldest queued update was queued; None: none waits."""
        return self._queue[0][2] if self._queue else None

    def push(self, sequence: int, data: bytes, now: float | None = None) -> int:
        """Queue one update covering journal sequences up to ``sequence``; ``now`` is
        time.monotonic() (the producer reads the clock once for all subscribers).

        Returns the number of updates dropped by this push (0 when queued)."""
        if self.need_resync:
            self.dropped += 1
            return 1
        queue = self._queue
        if now is None:
            now = time.monotonic()
        if len(queue) >= self._limit or (queue and now - queue[0][2] > self._max_age):
            dropped = len(queue) + 1
            queue.clear()
            self.need_resync = True
            self.dropped += dropped
            self._wakeup.set()
            return dropped
        queue.append((sequence, data, now))
        self.queued = sequence
        self._wakeup.set()
        return 0

    def skip(self) -> int:
        """An update this subscriber does not get because a resync is due (returns 1)."""
        self.dropped += 1
        return 1

    def invalidate(self) -> None:
        """Throw away what is queued; the next message is a resync (after a rebuild)."""
        self.dropped += len(self._queue)
        self._queue.clear()
        self.need_resync = True
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def next(self) -> bytes:
        """The next message to send; waits for one."""
        while True:
            if self.closed:
                raise SubscriptionClosed
            if self.need_resync:
                self.need_resync = False
                self.position, data = self._resync(self.position)
                self.queued = self.position
                if data is not None:
                    return data
                continue
            if self._queue:
                self.position, data, _ = self._queue.popleft()
                return data
            self._wakeup.clear()
            await self._wakeup.wait()
