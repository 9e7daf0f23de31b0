"""Failover time: from the owner's death (SIGKILL) or hang (SIGSTOP) to the
first order accepted through the order service by the standby.

Runs the exchange with two matching processes that may both own BTC-USD
(embedded PostgreSQL and Redis), and repeats: kill (or pause) the current
owner while a client keeps placing orders, time until an order is accepted
again, restart the dead one as the new standby.

    python -m bench.failover --rounds 5 [--mode kill|stop]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc

from bench.results import write_result
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.stack import Stack

KEYS = {"alice": "bench-alice-key", "bob": "bench-bob-key"}


async def owner_of(conn: asyncpg.Connection) -> str:
    return await conn.fetchval(
        "SELECT owner_address FROM instrument_state WHERE instrument_id = 1")


async def one_round(stack: Stack, orders, conn, mode: str, names: dict[str, str],
                    n: int) -> float:
    address = await owner_of(conn)
    victim = names[address]
    meta = (("x-api-key", KEYS["alice"]),)
    request = opb.CreateOrderRequest(instrument="BTC-USD", side=cpb.SIDE_BUY,
                                     type=cpb.ORDER_TYPE_LIMIT, price="60000",
                                     quantity="0.001")
    await orders.CreateOrder(request, metadata=meta, timeout=10)  # owner is serving
    if mode == "kill":
        stack.kill_service(victim)
    else:
        stack.pause_service(victim)
    t0 = time.perf_counter()
    i = 0
    while True:
        i += 1
        try:
            request.client_order_id = f"r{n}-{i}"
            await orders.CreateOrder(request, metadata=meta, timeout=1)
            elapsed = time.perf_counter() - t0
            break
        except grpc.aio.AioRpcError:
            if time.perf_counter() - t0 > 30:
                raise RuntimeError("no failover within 30 s") from None
    if mode == "stop":
        await stack.stop_service(victim)
    await stack.start_service(victim)  # back as the standby
    return elapsed


async def main_async(args: argparse.Namespace) -> dict:
    env = {"EXCHANGE_OWNERSHIP_POLL": str(args.poll),
           "EXCHANGE_OWNER_SESSION_TIMEOUT": str(args.session_timeout),
           "EXCHANGE_LOG_FORMAT": "text"}
    stack = Stack(data_dir=Path(tempfile.mkdtemp(prefix="bench-failover-")), keys=KEYS,
                  service_env={"matching": env})
    stack.add_matching("matching-b", env=env)
    await stack.start()
    times = []
    try:
        names = {stack.addr(name): name for name in ("matching", "matching-b")}
        conn = await asyncpg.connect(stack.database_url)
        async with grpc.aio.insecure_channel(stack.order_addr) as ch:
            orders = opb_grpc.OrderServiceStub(ch)
            for n in range(args.rounds):
                t = await one_round(stack, orders, conn, args.mode, names, n)
                times.append(t)
                print(f"round {n + 1}: {args.mode} -> order accepted after {t:.3f} s")
        await conn.close()
    finally:
        await stack.stop()
    return {"mode": args.mode, "rounds": args.rounds,
            "ownership_poll_s": args.poll, "owner_session_timeout_s": args.session_timeout,
            "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
            "all_s": [round(t, 3) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mode", choices=["kill", "stop"], default="kill",
                        help="kill: SIGKILL the owner; stop: SIGSTOP it (a hung owner)")
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--session-timeout", type=float, default=3.0)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(f"failover ({args.mode}): median {result['median_s']} s, max {result['max_s']} s")
    path = write_result(f"failover-{args.mode}", result,
                        f"python -m bench.failover --rounds {args.rounds} --mode {args.mode}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
