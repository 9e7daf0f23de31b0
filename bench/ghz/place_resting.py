"""Place the resting orders that ``bench/ghz/cancel_order.json`` cancels.

ghz can only cancel orders whose ids it can name from a template, so this places buy
limit orders with the client_order_ids ``<prefix>-0`` ... ``<prefix>-<count>`` (one more
than ``--count``, whichever number ghz's request numbering starts from), far below the
seed price band so that nothing trades with them, through one ``OrderEntry`` session.
``cancel_order.json`` then cancels ``ghz-rest-{{.RequestNumber}}``.

A client_order_id is an account's idempotency key for good: after a run has cancelled
them, use a new ``--prefix`` and pass the same prefix to ghz (the command is printed).

    python -m bench.ghz.place_resting --count 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from collections import Counter

DEFAULT_PREFIX = "ghz-rest"
DEFAULT_KEY = "ghz-alice-key-0123456789"


def client_order_id(prefix: str, number: int) -> str:
    return f"{prefix}-{number}"


async def place(addr: str, key: str, prefix: str, count: int, price: str, quantity: str,
                per_message: int = 100) -> Counter:
    import grpc

    from exchange.common.v1 import common_pb2 as cpb
    from exchange.order.v1 import order_pb2 as opb
    from exchange.order.v1 import order_pb2_grpc as opb_grpc

    outcome: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(addr) as channel:
        call = opb_grpc.OrderServiceStub(channel).OrderEntry(metadata=(("x-api-key", key),))
        numbers = list(range(count + 1))
        for start in range(0, len(numbers), per_message):
            await call.write(opb.OrderEntryRequest(commands=[
                opb.OrderEntryCommand(create=opb.CreateOrderRequest(
                    instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
                    time_in_force=cpb.TIME_IN_FORCE_GTC, price=price, quantity=quantity,
                    client_order_id=client_order_id(prefix, n)))
                for n in numbers[start:start + per_message]]))
        await call.done_writing()
        async for response in call:
            for event in response.events:
                if event.HasField("error"):
                    outcome[f"error: {event.error.message}"] += 1
                else:
                    outcome[cpb.OrderState.Name(event.order.state)] += 1
    return outcome


def ghz_command(prefix: str, count: int, key: str) -> str:
    cmd = ["ghz", "--config", "bench/ghz/cancel_order.json", "--total", str(count)]
    if prefix != DEFAULT_PREFIX:
        cmd += ["-d", json.dumps({"client_order_id": prefix + "-{{.RequestNumber}}"})]
    if key != DEFAULT_KEY:
        cmd += ["-m", json.dumps({"x-api-key": key})]
    return " ".join(shlex.quote(c) for c in cmd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ghz.place_resting", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", default="127.0.0.1:50051", help="order service (127.0.0.1:50051)")
    p.add_argument("--key", default=os.environ.get("EXCHANGE_API_KEY", DEFAULT_KEY),
                   help="API key (default $EXCHANGE_API_KEY, else the guide's alice key)")
    p.add_argument("--count", type=int, default=2000,
                   help="cancels the ghz run will make (its --total; default 2000)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX)
    p.add_argument("--price", default="50000.00")
    p.add_argument("--quantity", default="0.0100")
    args = p.parse_args(argv)
    outcome = asyncio.run(place(args.addr, args.key, args.prefix, args.count, args.price,
                                args.quantity))
    for what, n in sorted(outcome.items()):
        print(f"{n:>7}  {what}")
    resting = outcome.get("ORDER_STATE_NEW", 0)
    if resting < args.count + 1:
        print(f"only {resting} of {args.count + 1} orders are resting: the prefix "
              f"{args.prefix!r} was used before (take a new --prefix), or see the errors",
              file=sys.stderr)
    print("now run:\n  " + ghz_command(args.prefix, args.count, args.key))
    return 0 if resting >= args.count else 1


if __name__ == "__main__":
    raise SystemExit(main())
