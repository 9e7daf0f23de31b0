"""The book checksum: the server's, the client library's, and one written here from the
definition in docs/marketdata.md, agree; and the docs' worked example holds."""

from __future__ import annotations

import binascii
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange_client.book import LocalOrderBook, book_checksum
from marketdata_service.checksum import checksum_depth, checksum_levels, checksum_strings
from marketdata_service.wire import UnitFormatter

PRICE = UnitFormatter(Decimal("0.01"), 2)
QTY = UnitFormatter(Decimal("0.0001"), 4)

# docs/marketdata.md, "Worked example".
DOC_BIDS = [("70000.00", "0.0100"), ("69999.99", "2.0000")]
DOC_ASKS = [("70001.00", "0.5000"), ("70002.50", "1.2500")]
DOC_STRING = "700010050007000250125007000000100699999920000"
DOC_CHECKSUM = 1028761202


def independent(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> int:
    """From the definition, by other means: the integer units of each wire string (ticks
    and lots scaled to the decimals shown) are its digits without leading zeros."""
    def digits(units: int, step: Decimal, places: int) -> str:
        value = Decimal(units) * step
        return str(int(value.scaleb(places)))

    text = ""
    for side in (sorted(asks)[:10], sorted(bids, reverse=True)[:10]):
        for price, qty in side:
            text += digits(price, Decimal("0.01"), 2) + digits(qty, Decimal("0.0001"), 4)
    return binascii.crc32(text.encode())


def test_the_docs_worked_example() -> None:
    assert checksum_strings(DOC_BIDS, DOC_ASKS) == DOC_CHECKSUM
    assert book_checksum(DOC_BIDS, DOC_ASKS) == DOC_CHECKSUM
    assert binascii.crc32(DOC_STRING.encode()) == DOC_CHECKSUM
    local = LocalOrderBook(verify=True)
    local.apply(md_pb2.StreamOrderBookResponse(snapshot=md_pb2.OrderBookSnapshot(
        sequence=1, bids=[md_pb2.PriceLevel(price=p, quantity=q, order_count=1)
                          for p, q in DOC_BIDS],
        asks=[md_pb2.PriceLevel(price=p, quantity=q, order_count=1) for p, q in DOC_ASKS],
        checksum=DOC_CHECKSUM)))
    assert local.checksum() == DOC_CHECKSUM


def test_empty_book_and_depths() -> None:
    assert checksum_strings([], []) == binascii.crc32(b"") == 0
    assert [checksum_depth(d) for d in (0, 1, 5, 10, 25)] == [10, 1, 5, 10, 10]


levels = st.dictionaries(st.integers(1, 10_000_000), st.integers(1, 10**9), max_size=30)


@given(bids=levels, asks=levels)
def test_server_client_and_independent_agree(bids: dict[int, int], asks: dict[int, int]) -> None:
    bid_levels = sorted(((p, q, 1) for p, q in bids.items()), reverse=True)[:10]
    ask_levels = sorted((p, q, 1) for p, q in asks.items())[:10]
    server = checksum_levels(PRICE, QTY, bid_levels, ask_levels)
    assert server == independent(list(bids.items()), list(asks.items()))
    local = LocalOrderBook()
    local.replace(1, [], [])
    from exchange_client.book import Level
    local.replace(1, [Level(Decimal(PRICE(p)), Decimal(QTY(q)), 1) for p, q in bids.items()],
                  [Level(Decimal(PRICE(p)), Decimal(QTY(q)), 1) for p, q in asks.items()])
    assert local.checksum() == server
