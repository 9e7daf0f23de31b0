"""The client's position in the order updates (exchange_client/updates.py): what a
message gives, what makes it subscribe again, table-driven."""

from __future__ import annotations

import pytest

from exchange.order.v1 import order_pb2 as opb
from exchange_client.updates import Resubscribe, UpdateCursor


def message(sequences: list[int], last: int) -> opb.StreamOrderUpdatesResponse:
    return opb.StreamOrderUpdatesResponse(
        updates=[opb.OrderUpdate(sequence=s) for s in sequences], last_sequence=last)


# (after, messages (sequences, last_sequence), what each yields (None: Resubscribe),
# position after)
CASES = [
    ("replay then live", 0, [([], 0), ([1, 2], 2), ([3], 3)], [[], [1, 2], [3]], 3),
    ("duplicates after resubscribing are dropped", 2, [([1, 2, 3], 3), ([3, 4], 4)],
     [[3], [4]], 4),
    ("live only: the first heartbeat sets the position", None, [([], 7), ([8], 8)],
     [[], [8]], 8),
    ("live only: the first update sets it", None, [([5, 6], 6)], [[5, 6]], 6),
    ("a gap subscribes again from the last yielded", 1, [([2, 4], 4)], [None], 2),
    ("a heartbeat ahead subscribes again", 3, [([], 5)], [None], 3),
    ("a heartbeat at the position is quiet", 3, [([], 3)], [[]], 3),
]


@pytest.mark.parametrize("name,after,messages,yields,position", CASES,
                         ids=[c[0] for c in CASES])
def test_cursor(name, after, messages, yields, position) -> None:
    cursor = UpdateCursor(after)
    for (sequences, last), expected in zip(messages, yields, strict=True):
        if expected is None:
            with pytest.raises(Resubscribe):
                cursor.take(message(sequences, last))
        else:
            assert [u.sequence for u in cursor.take(message(sequences, last))] == expected
    assert cursor.position == position


def test_backoff_grows_to_its_bound_and_resets() -> None:
    cursor = UpdateCursor(0)
    assert [cursor.backoff(1.0) for _ in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    cursor.take(message([], 0))
    assert cursor.backoff(1.0) == 0.0
