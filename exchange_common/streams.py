"""The Redis stream contract between matching pods and market data.

One stream per instrument, ``exchange:md:<instrument_id>``. After each
committed batch the owning matching pod adds one entry with id
``<last_sequence>-0`` and one field ``b``: a serialized
``exchange.matching.v1.MarketDataBatch``. Every committed batch is published,
even one with no visible change, so that ``first_sequence`` of an entry is
always ``last_sequence + 1`` of the entry before it; a reader that sees a gap
(Redis lost entries, or a publish failed) rebuilds from PostgreSQL.
Explicit ids also make a repeated publish of the same batch harmless: Redis
refuses an id that is not greater than the last one.
"""

from __future__ import annotations

STREAM_PREFIX = "exchange:md:"
FIELD = b"b"

# The Redis channel on which a matching pod, after each commit that made order updates,
# publishes each account's latest update sequence ('<account>:<sequence>,...', in the
# same pipeline as the batch's stream entry); order services wake their subscribers of
# those accounts (order_service/updates.py). Only a wake-up: the updates themselves are
# read from PostgreSQL, so a message lost with Redis delays an update, never loses it.
ORDER_UPDATES_CHANNEL = "exchange:order-updates"


def stream_key(instrument_id: int) -> str:
    return f"{STREAM_PREFIX}{instrument_id}"


def entry_id(last_sequence: int) -> str:
    return f"{last_sequence}-0"
