"""Where a reader of the caller's order updates stands (``order_updates`` of both
clients): the last sequence it yielded, so that it subscribes again after it and never
yields a duplicate or skips one."""

from __future__ import annotations

from exchange.order.v1 import order_pb2


class Resubscribe(Exception):
    """Subscribe again after ``UpdateCursor.position``: the stream skipped a sequence,
    or a heartbeat says the account has updates the stream did not send (neither is
    expected from the server; the reader recovers from it all the same)."""


class UpdateCursor:
    def __init__(self, after: int | None) -> None:
        # The last sequence yielded (None: live only and nothing seen yet).
        self.position = after
        # Subscriptions that failed in a row (for the backoff).
        self.failures = 0

    def take(self, message: order_pb2.StreamOrderUpdatesResponse
             ) -> list[order_pb2.OrderUpdate]:
        """The updates of ``message`` to yield, in order; raises Resubscribe."""
        self.failures = 0
        out = []
        for update in message.updates:
            if self.position is not None:
                if update.sequence <= self.position:
                    continue  # seen
                if update.sequence != self.position + 1:
                    raise Resubscribe
            self.position = update.sequence
            out.append(update)
        if self.position is None:
            self.position = message.last_sequence
        elif not message.updates and message.last_sequence > self.position:
            raise Resubscribe
        return out

    def backoff(self, most: float) -> float:
        """Seconds to wait before subscribing again (none after a first failure)."""
        self.failures += 1
        return 0.0 if self.failures == 1 else min(0.1 * 2 ** (self.failures - 2), most)
