"""One statement at a time for everyone who waits: the order service's way of turning
many concurrent requests into few database round trips (the holds of new orders,
order_service/holds.py; client_order_id look-ups, order_service/store.py).

A ``Coalescer`` runs its statement (``execute``) for all the items submitted while the
previous one ran, and starts one at most every ``min_interval`` seconds: under load a
statement serves many requests, and PostgreSQL spends less per request; an idle
coalescer runs a lone request's statement at the next turn of the loop.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from exchange_common.errors import Unavailable

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Subclasses say what one statement does for a batch of items (``execute``: one
    result per item, in their order)."""

    def __init__(self, min_interval: float = 0.0) -> None:
        self.min_interval = min_interval
        self.started = float("-inf")  # loop time the latest statement started
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.running = False  # a statement is in flight

    async def execute(self, items: list[Item]) -> list[Result]:
        raise NotImplementedError

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """A future of ``item``'s result (or of the statement's error)."""
        if not self.running and not self.waiting:
            self._flush_soon()
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, fut))
        return fut

    def _flush_soon(self) -> None:
        """Run at the next turn of the loop, or once ``min_interval`` has passed since
        the latest statement started."""
        loop = asyncio.get_running_loop()
        loop.call_at(max(loop.time(), self.started + self.min_interval), self._flush)

    def _flush(self) -> None:
        if self.running or not self.waiting:
            return
        batch, self.waiting = self.waiting, []
        self.running = True
        self.started = asyncio.get_running_loop().time()
        asyncio.ensure_future(self._run(batch))

    def _done(self) -> None:
        self.running = False
        if self.waiting:
            self._flush_soon()

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self.execute([item for item, _ in batch])
        except BaseException as err:  # every waiter gets it
            self._done()
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err if isinstance(err, Exception) else Unavailable(
                        "the order service is stopping", reason="SHUTTING_DOWN"))
            if not isinstance(err, Exception):
                raise
            return
        self._done()
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
