"""An OrderEntry session's order updates (``SessionOptions.order_updates``): the feed of
StreamOrderUpdates (updates.py) on the session, in ``OrderEntryResponse.updates`` and
``updates_last_sequence`` (a heartbeat: no updates, the latest sequence).

Options with ``order_updates`` start it, after ``updates_after_sequence`` when given
(as StreamOrderUpdates' ``after_sequence``), else from the next update; options with
``updates_after_sequence`` while it runs start it again from there; options without
``order_updates`` stop it. A refused start (a bad ``updates_after_sequence``) is an
error event of the session, which goes on.

A client that reads slowly holds no backlog here: the feed reads its next page from
PostgreSQL only once the session has written all but ``MAX_WAITING`` of its responses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from exchange.order.v1 import order_pb2 as opb
from exchange_common.errors import Unavailable, as_exchange_error
from exchange_common.sessions import AnswerPump
from order_service.updates import UpdateFeed

# Responses of the session waiting to be written before the feed reads on.
MAX_WAITING = 2


class SessionUpdates:
    def __init__(self, feed: UpdateFeed | None, account_id: int, pump: AnswerPump,
                 send: Callable[[opb.OrderEntryResponse], None]) -> None:
        self.feed = feed
        self.account_id = account_id
        self.pump = pump
        self.send = send
        self.task: asyncio.Task | None = None

    def apply(self, options: opb.SessionOptions) -> None:
        after = (options.updates_after_sequence if options.HasField("updates_after_sequence")
                 else None)
        if not options.order_updates:
            self.stop()
        elif self.task is None or self.task.done() or after is not None:
            self.stop()
            self.task = asyncio.create_task(self._follow(after))
            self.pump.tasks.add(self.task)  # cancelled when the session ends
            self.task.add_done_callback(self.pump.tasks.discard)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _follow(self, after: int | None) -> None:
        try:
            if self.feed is None:
                raise Unavailable("order updates are not served here", reason="NOT_SERVED")
            async with contextlib.aclosing(self.feed.follow(self.account_id, after)) as feed:
                async for message in feed:
                    self.send(opb.OrderEntryResponse(
                        updates=message.updates, updates_last_sequence=message.last_sequence))
                    while len(self.pump.out) > MAX_WAITING:
                        await self.pump.written()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - an error event; the session goes on
            status = as_exchange_error(err, "OrderEntry").to_status_proto()
            self.send(opb.OrderEntryResponse(events=[opb.OrderEntryEvent(error=status)]))
