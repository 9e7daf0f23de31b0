"""The client's book follower on a real grpc.aio server that sends one bad checksum (the
exchange itself never does): it resubscribes, counts it, and ends with the right book."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.marketdata.v1 import marketdata_pb2_grpc as md_grpc
from exchange_client import AsyncExchangeClient, ExchangeClient, LocalOrderBook


def _level(price: str, qty: str) -> md_pb2.PriceLevel:
    return md_pb2.PriceLevel(price=price, quantity=qty, order_count=1)


def _script(first: int, bad: bool) -> list[md_pb2.StreamOrderBookResponse]:
    """A snapshot, two deltas and a heartbeat; with ``bad`` the second delta's checksum
    is off by one. Checksums from an independent replica of the book."""
    msgs = [
        md_pb2.StreamOrderBookResponse(instrument="BTC-USD", snapshot=md_pb2.OrderBookSnapshot(
            sequence=first, bids=[_level("100.00", "1.0000")], asks=[_level("101.00", "2.0000")])),
        md_pb2.StreamOrderBookResponse(instrument="BTC-USD", delta=md_pb2.OrderBookDelta(
            first_sequence=first + 1, sequence=first + 1, bids=[_level("100.50", "0.5000")])),
        md_pb2.StreamOrderBookResponse(instrument="BTC-USD", delta=md_pb2.OrderBookDelta(
            first_sequence=first + 2, sequence=first + 3, asks=[_level("101.00", "0")])),
        md_pb2.StreamOrderBookResponse(instrument="BTC-USD",
                                       heartbeat=md_pb2.Heartbeat(sequence=first + 3)),
    ]
    replica = LocalOrderBook(verify=False)
    for msg in msgs[:3]:
        replica.apply(msg)
        getattr(msg, msg.WhichOneof("update")).checksum = replica.checksum()
    if bad:
        msgs[2].delta.checksum = (msgs[2].delta.checksum + 1) % (1 << 32)
    return msgs


class BadOnce(md_grpc.MarketDataServiceServicer):
    def __init__(self) -> None:
        self.subscriptions = 0

    async def StreamOrderBook(self, request, context):
        self.subscriptions += 1
        assert (request.depth, request.interval_ms) == (5, 200)
        for msg in _script(10 * self.subscriptions, bad=self.subscriptions == 1):
            yield msg


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[str, BadOnce]]:
    servicer = BadOnce()
    srv = grpc.aio.server()
    md_grpc.add_MarketDataServiceServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await srv.stop(None)


def _levels(book: LocalOrderBook) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return ([(f"{lv.price:f}", f"{lv.quantity:f}") for lv in book.bids()],
            [(f"{lv.price:f}", f"{lv.quantity:f}") for lv in book.asks()])


async def test_async_follower_resubscribes_on_a_bad_checksum(server) -> None:
    addr, servicer = server
    async with AsyncExchangeClient(marketdata_addr=addr) as client:
        seen = [book.sequence async for book in
                client.watch_order_book("BTC-USD", depth=5, interval_ms=200)]
    # First stream: 10, 11, then the bad delta; second stream: 20, 21, 23 and the heartbeat.
    assert seen == [10, 11, 20, 21, 23, 23]
    assert servicer.subscriptions == 2


async def test_counts_and_final_book(server) -> None:
    addr, servicer = server
    book = LocalOrderBook("BTC-USD")
    async with AsyncExchangeClient(marketdata_addr=addr) as client:
        async for _ in client.watch_order_book("BTC-USD", book=book, depth=5, interval_ms=200):
            pass
    assert (book.resubscribes, book.checksum_mismatches, book.heartbeats) == (1, 1, 1)
    assert book.sequence == 23
    assert _levels(book) == ([("100.50", "0.5000"), ("100.00", "1.0000")], [])


async def test_sync_follower_resubscribes_on_a_bad_checksum(server) -> None:
    addr, servicer = server
    book = LocalOrderBook("BTC-USD")

    def follow() -> list[int | None]:  # in a thread: the server runs on this loop
        with ExchangeClient(marketdata_addr=addr) as client:
            return [b.sequence for b in client.watch_order_book(
                "BTC-USD", book=book, depth=5, interval_ms=200)]

    sequences = await asyncio.to_thread(follow)
    assert sequences == [10, 11, 20, 21, 23, 23]
    assert (book.resubscribes, book.checksum_mismatches) == (1, 1)
