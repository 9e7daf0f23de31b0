"""Group commit alone: what a batch of seed-mix orders costs PostgreSQL.

Runs the seed mix (70% limit / 30% market, 0.01-0.5 BTC, limit prices within
+-2,000 of 70,000, many accounts) through the matching engine in batches of
``--batch`` orders and commits every batch with the ``Store`` the matching
pod uses (one statement per batch), one after another.
Reports, per order: PostgreSQL CPU (every backend and helper process of the
server), this process's CPU (the matching side: engine plus commit encoding),
and the wall time per commit.

    python -m bench.commit --batch 1,10,100,1000 --orders 20000

Uses an embedded PostgreSQL (fsync and synchronous_commit on) unless
EXCHANGE_DATABASE_URL names a server; either way it works in a database of its
own, created and dropped by the run. A server's CPU is counted when it runs on
this machine (its processes are found by the port it listens on).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from urllib.parse import urlsplit

import asyncpg
import psutil

from bench.cpu import own_seconds, processes_seconds
from bench.database import database_url, scratch_database
from bench.results import write_result
from exchange_common import db
from exchange_dev.accounts import ensure_account
from matching_service.engine import BUY, GTC, IOC, LIMIT, MARKET, SELL, OrderBook
from matching_service.store import Store

INSTRUMENT = 1
ACCOUNTS = 200


def postgres_processes(port: int) -> list[psutil.Process]:
    """The processes of the PostgreSQL server listening on ``port`` (postmaster and
    children)."""
    for conn in psutil.net_connections(kind="tcp"):
        # (laddr is an empty tuple for a socket without an address)
        if (conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
                and conn.pid):
            root = psutil.Process(conn.pid)
            return [root, *root.children(recursive=True)]
    return []


async def reset_instrument(url: str) -> list[int]:
    """Empty the scratch database's order tables, make ``INSTRUMENT`` owned at epoch 1
    from sequence 0, checkpoint; returns the accounts to trade from."""
    conn = await asyncpg.connect(url)
    await conn.execute("TRUNCATE journal, orders, trades, book_snapshots, order_updates, "
                       "account_update_sequences")  # own database
    await conn.execute("UPDATE instrument_state SET owner_epoch = 1, last_sequence = 0 "
                       "WHERE instrument_id = $1", INSTRUMENT)
    accounts = [r["account_id"] for r in await conn.fetch(
        "SELECT account_id FROM accounts ORDER BY account_id LIMIT $1", ACCOUNTS)]
    await conn.execute("CHECKPOINT")
    await conn.close()
    return accounts


def place_seed_order(book: OrderBook, rng: random.Random, accounts: list[int], number: int,
                     now: int) -> tuple[int, int, int, int, int, int]:
    """Place order ``number`` of the seed mix on ``book``; returns what it was:
    (account, side, type, time in force, price, lots)."""
    side = rng.choice((BUY, SELL))
    lots = rng.randint(100, 5000)  # 0.01-0.5 BTC at a lot of 0.0001
    if rng.random() < 0.7:
        price = rng.randint(6_800_000, 7_200_000)  # cents, 68,000-72,000
        account = rng.choice(accounts)  # (drawn in this order since the first runs)
        book.new_order(account, side, LIMIT, GTC, price, lots, f"c{number}", False, now)
        return account, side, LIMIT, GTC, price, lots
    account = rng.choice(accounts)
    book.new_order(account, side, MARKET, IOC, 0, lots, f"c{number}", False, now)
    return account, side, MARKET, IOC, 0, lots


async def run_batch_size(url: str, port: int, batch: int, orders: int, seed: int) -> dict:
    accounts = await reset_instrument(url)
    pool = await db.create_pool(url, min_size=1, max_size=1)
    store, book, rng = Store(pool), OrderBook(INSTRUMENT), random.Random(seed)
    await pool.fetchval("SELECT 1")  # warm the connection
    pg0, me0, t0 = processes_seconds(postgres_processes(port)), own_seconds(), time.perf_counter()
    done = 0
    while done < orders:
        now = time.time_ns() // 1000 * 1000
        for _ in range(min(batch, orders - done)):
            place_seed_order(book, rng, accounts, done, now)
            done += 1
        await store.commit(INSTRUMENT, 1, book.drain_changes())
    wall = time.perf_counter() - t0
    me1 = own_seconds()
    pg1 = processes_seconds(postgres_processes(port))
    await pool.close()
    commits = -(-orders // batch)
    return {
        "batch": batch,
        "orders": orders,
        "events": book.sequence,
        "commits": commits,
        "wall_ms_per_commit": round(wall * 1000 / commits, 3),
        "orders_per_second": round(orders / wall),
        "postgres_cpu_us_per_order": round((pg1 - pg0) * 1e6 / orders, 1),
        "matching_cpu_us_per_order": round(
            (me1 - me0) * 1e6 / orders, 1),
        "postgres_cpu_us_per_commit": round((pg1 - pg0) * 1e6 / commits, 1),
    }


async def prepare_database(url: str) -> None:
    """Migrate the scratch database of ``url``, seed its instruments and accounts."""
    conn = await asyncpg.connect(url)
    await db.migrate(conn)
    await db.seed_instruments(conn)
    for i in range(ACCOUNTS):
        await ensure_account(conn, f"bench-commit-{i}")
    await conn.close()


async def run(server_url: str, batches: list[int], orders: int, seed: int) -> list[dict]:
    """Run every batch size in a fresh database on the server of ``server_url``
    (dropped afterwards)."""
    async with scratch_database(server_url, "bench_commit") as url:
        port = urlsplit(server_url).port or 5432
        await prepare_database(url)
        out = []
        for batch in batches:
            row = await run_batch_size(url, port, batch, orders, seed)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            out.append(row)
        return out


async def main_async(args: argparse.Namespace) -> list[dict]:
    with database_url("bench-commit-") as url:
        return await run(url, args.batch, args.orders, args.seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="1,10,100,1000",
                        type=lambda s: [int(x) for x in s.split(",")],
                        help="orders per commit, a list (default 1,10,100,1000)")
    parser.add_argument("--orders", type=int, default=20_000, help="orders per batch size")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    path = write_result("commit", {"runs": rows},
                        f"python -m bench.commit --batch {','.join(map(str, args.batch))} "
                        f"--orders {args.orders}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
