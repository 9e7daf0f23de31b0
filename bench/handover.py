"""The pause of a live hand-over (issue 15): how long an instrument answers nothing while
``AdminService.MoveInstrument`` moves it from one matching pod to another.

Runs the exchange with two matching pods (``matching-0``, home of every instrument, and
``matching-1``, a standby; embedded PostgreSQL and Redis). Clients place BTC-USD orders
back to back, each retried with its client_order_id on a retryable refusal, while the
instrument is moved back and forth. Per move it reports how long MoveInstrument took, the
pause (the longest time between two acknowledgements, from the move's start to the first
acknowledgement after it) and the slowest order answered across the move; the same gap
statistic without moves is the baseline.

    python -m bench.handover --moves 10 [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from bench.results import write_result
from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.stack import Stack

KEYS = {"alice": "bench-handover-alice-key", "bob": "bench-handover-bob-key"}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED}


class Flow:
    """Acknowledgement times and latencies of the clients' orders."""

    def __init__(self) -> None:
        self.acks: list[float] = []
        self.latencies: list[tuple[float, float]] = []  # (first send, answer)
        self.stop = asyncio.Event()

    async def client(self, stub: opb_grpc.OrderServiceStub, who: str, prefix: str) -> None:
        n = 0
        while not self.stop.is_set():
            side = n % 2
            price = 70_000 - 3 + n % 7 if side == 0 else 70_000 + 3 - n % 7
            req = opb.CreateOrderRequest(
                instrument="BTC-USD", side=(cpb.SIDE_BUY, cpb.SIDE_SELL)[side],
                type=cpb.ORDER_TYPE_LIMIT, time_in_force=cpb.TIME_IN_FORCE_GTC,
                price=f"{price}.00", quantity="0.0010", client_order_id=f"{prefix}-{n}")
            first = time.perf_counter()
            while True:
                try:
                    await stub.CreateOrder(req, metadata=(("x-api-key", KEYS[who]),),
                                           timeout=5)
                    break
                except grpc.aio.AioRpcError as err:
                    if err.code() not in RETRYABLE:
                        raise
                    await asyncio.sleep(0.01)
            done = time.perf_counter()
            self.acks.append(done)
            self.latencies.append((first, done))
            n += 1

    def pause_after(self, start: float) -> float:
        """The longest gap between acknowledgements from ``start`` to the first
        acknowledgement after the gap that the move made (the next 0.5 s)."""
        acks = [start] + [t for t in self.acks if start < t <= start + 0.5]
        return max((b - a for a, b in zip(acks, acks[1:], strict=False)), default=0.0)

    def slowest(self, start: float, end: float) -> float:
        return max((done - first for first, done in self.latencies
                    if first <= end and done >= start), default=0.0)


async def main_async(args: argparse.Namespace) -> dict:
    common = {"EXCHANGE_LOG_FORMAT": "text", "EXCHANGE_SHUTDOWN_GRACE": "1"}
    stack = Stack(data_dir=Path(tempfile.mkdtemp(prefix="bench-handover-")), keys=KEYS,
                  service_env={"matching": {**common, "EXCHANGE_MATCHING_NAME": "matching-0",
                                            "EXCHANGE_MATCHING_HOME": "*"}})
    stack.add_matching("matching-1", env={**common, "EXCHANGE_MATCHING_NAME": "matching-1"})
    await stack.start()
    flow = Flow()
    moves, pauses, slowest, quiet = [], [], [], []
    try:
        async with grpc.aio.insecure_channel(stack.order_addr) as ch:
            orders = opb_grpc.OrderServiceStub(ch)
            admin = apb_grpc.AdminServiceStub(ch)
            tasks = [asyncio.create_task(flow.client(orders, who, f"{who}-{i}"))
                     for i in range(args.clients // 2 or 1) for who in KEYS]
            await asyncio.sleep(2.0)
            for n in range(args.moves):
                # the baseline: the same gap statistic over a second without a move
                t = time.perf_counter()
                await asyncio.sleep(1.0)
                quiet.append(flow.pause_after(t))
                to = ("matching-1", "matching-0")[n % 2]
                start = time.perf_counter()
                moved = await admin.MoveInstrument(
                    apb.MoveInstrumentRequest(symbol="BTC-USD", to=to, timeout_ms=15_000),
                    metadata=(("x-admin-key", stack.admin_key),), timeout=20)
                end = time.perf_counter()
                await asyncio.sleep(0.6)
                moves.append(end - start)
                pauses.append(flow.pause_after(start))
                slowest.append(flow.slowest(start, end))
                print(f"move {n + 1}: {moved.previous_owner} (epoch {moved.previous_epoch}) -> "
                      f"{moved.instrument.owner_pod} (epoch {moved.instrument.owner_epoch}): "
                      f"MoveInstrument {moves[-1] * 1000:.0f} ms, pause "
                      f"{pauses[-1] * 1000:.0f} ms, slowest order {slowest[-1] * 1000:.0f} ms")
            flow.stop.set()
            await asyncio.gather(*tasks)
    finally:
        await stack.stop()

    def ms(values: list[float]) -> dict[str, float]:
        return {"median_ms": round(statistics.median(values) * 1000, 1),
                "max_ms": round(max(values) * 1000, 1)}

    return {"moves": args.moves, "clients": len(KEYS) * (args.clients // 2 or 1),
            "orders": len(flow.acks), "move_instrument": ms(moves), "pause": ms(pauses),
            "slowest_order_across_a_move": ms(slowest),
            "gap_without_move": ms(quiet),
            "all_pauses_ms": [round(p * 1000, 1) for p in pauses]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(f"hand-over: pause median {result['pause']['median_ms']} ms, max "
          f"{result['pause']['max_ms']} ms (without a move: "
          f"{result['gap_without_move']['median_ms']} ms); MoveInstrument median "
          f"{result['move_instrument']['median_ms']} ms")
    path = write_result("handover", result, f"python -m bench.handover --moves {args.moves} "
                                            f"--clients {args.clients}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
