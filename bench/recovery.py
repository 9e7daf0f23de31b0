"""Recovery time of a matching pod for a book of N resting orders.

Builds a journal with N resting orders (non-crossing limit orders on both
sides, committed in large batches through the same Store the service uses),
then times ``Store.load_book`` (what a matching pod runs when it takes an
instrument over):

* ``snapshot``: the latest snapshot + the journal tail after it (``--tail``
  more events of orders placed and cancelled);
* ``journal``: no snapshot, the whole journal replayed: the N orders plus
  ``--churn`` events of orders placed and cancelled (a long journal).

It also times a real ``matching_service`` process from start to owning the
instrument (health SERVING with the book loaded).

    python -m bench.recovery --orders 100000

Uses an embedded PostgreSQL unless EXCHANGE_DATABASE_URL names a server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import time

import asyncpg

from bench.database import database_url
from bench.results import write_result
from exchange_common import db
from exchange_dev.accounts import ensure_account
from matching_service.engine import BUY, GTC, LIMIT, SELL, OrderBook
from matching_service.recovery import encode_snapshot
from matching_service.store import Store

INSTRUMENT = 1


async def build(url: str, orders: int, churn: int, tail: int, seed: int) -> None:
    conn = await asyncpg.connect(url)
    await db.migrate(conn)
    await db.seed_instruments(conn)
    accounts = [await ensure_account(conn, f"bench-{i}") for i in range(50)]
    await conn.execute("UPDATE instrument_state SET owner_epoch = 1 WHERE instrument_id = $1",
                       INSTRUMENT)
    await conn.close()
    pool = await db.create_pool(url)
    store = Store(pool)
    rng = random.Random(seed)
    book = OrderBook(INSTRUMENT)

    def one(cancel: bool) -> None:
        side = rng.choice((BUY, SELL))
        # bids 68,000-69,999.99, asks 70,000.01-72,000: never crossing
        price = rng.randint(6_800_000, 6_999_999) if side == BUY else rng.randint(
            7_000_001, 7_200_000)
        acct = rng.choice(accounts)
        now = time.time_ns() // 1000 * 1000
        out = book.new_order(acct, side, LIMIT, GTC, price, rng.randint(1, 5000),
                             f"b{book.sequence}", False, now)
        if cancel:
            assert out.order is not None, out.error_message  # a resting limit order
            book.cancel(acct, out.order.order_id, now)

    async def run(events: int, cancel: bool) -> None:
        per_command = 2 if cancel else 1
        for start in range(0, events, 5000):
            for _ in range(min(5000, events - start) // per_command):
                one(cancel)
            await store.commit(INSTRUMENT, 1, book.drain_changes())

    await run(orders, cancel=False)  # the resting book
    await run(churn, cancel=True)  # orders placed and cancelled: the journal grows
    await store.write_snapshot(INSTRUMENT, book.sequence, len(book.orders),
                               encode_snapshot(book))
    await run(tail, cancel=True)
    await pool.close()


async def _journal_length(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM journal")
    finally:
        await conn.close()


async def time_load(url: str, with_snapshot: bool, repeat: int) -> tuple[list[float], int]:
    pool = await db.create_pool(url)
    if not with_snapshot:
        await pool.execute("DELETE FROM book_snapshots")
    store = Store(pool)
    times, resting = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        book = await store.load_book(INSTRUMENT)
        times.append(time.perf_counter() - t0)
        resting = len(book.orders)
    await pool.close()
    return times, resting


async def time_process(url: str) -> float:
    """Seconds from spawning matching_service to health SERVING (book loaded)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from exchange_dev.embedded import free_port

    port = free_port()
    env = {**os.environ, "EXCHANGE_DATABASE_URL": url,
           "EXCHANGE_REDIS_URL": "redis://127.0.0.1:1/0",  # publication is not timed
           "EXCHANGE_MATCHING_LISTEN": f"127.0.0.1:{port}",
           "EXCHANGE_MATCHING_ADVERTISE": f"127.0.0.1:{port}",
           "EXCHANGE_MATCHING_INSTRUMENTS": "BTC-USD", "EXCHANGE_LOG_FORMAT": "text",
           # Nothing calls its commands here, but it will not start without service auth.
           "EXCHANGE_INTERNAL_TOKEN": os.environ.get("EXCHANGE_INTERNAL_TOKEN")
           or secrets.token_urlsafe(16)}
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "matching_service", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                try:
                    # (the published stubs declare no methods on HealthStub)
                    r = await stub.Check(  # type: ignore[attr-defined]
                        health_pb2.HealthCheckRequest(), timeout=1)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.perf_counter() - t0
                except grpc.aio.AioRpcError:
                    pass
                if proc.returncode is not None:
                    raise RuntimeError("matching_service exited")
                await asyncio.sleep(0.02)
    finally:
        proc.terminate()
        await proc.wait()


async def main_async(args: argparse.Namespace) -> dict:
    with database_url("bench-recovery-", "bench_recovery") as url:
        t0 = time.perf_counter()
        await build(url, args.orders, args.churn, args.tail, args.seed)
        build_s = time.perf_counter() - t0
        snap_times, resting = await time_load(url, True, args.repeat)
        events = await _journal_length(url)
        process_s = await time_process(url)
        journal_times, _ = await time_load(url, False, args.repeat)
    return {
        "resting_orders": resting,
        "journal_events": events,
        "tail_events": args.tail,
        "build_seconds": round(build_s, 2),
        "load_snapshot_plus_tail_seconds_median": round(statistics.median(snap_times), 3),
        "load_journal_only_seconds_median": round(statistics.median(journal_times), 3),
        "process_start_to_serving_seconds": round(process_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--churn", type=int, default=300_000,
                        help="place-and-cancel events before the snapshot (journal length)")
    parser.add_argument("--tail", type=int, default=10_000,
                        help="place-and-cancel events after the snapshot (default 10,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    for k, v in result.items():
        print(f"{k:42} {v}")
    path = write_result("recovery", result,
                        f"python -m bench.recovery --orders {args.orders} --churn {args.churn} "
                        f"--tail {args.tail}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
