"""A queue in front of the journal? NATS JetStream appends against the group commit.

What a durable queue in the order's acknowledgement path would cost, measured on one
machine: batches of seed-mix orders (``bench.commit``'s mix; each order is the
``matching.v1.NewOrder`` command a queue in front of matching would carry, padded to the
size of a journal row, ``--message-bytes``) appended
to a JetStream stream (file storage, one replica, publish with acknowledgement, the
batch's messages published asynchronously and their acks awaited together), against
the same batches committed by the matching pod's ``Store`` (the fenced group commit,
one statement per batch) on PostgreSQL with fsync and synchronous_commit on, and the
two in series (append, then commit: the queue in front of the database, an order
answered when both are durable). A fourth target, ``fsync``, appends the batch's bytes
to a file and fsyncs it: the floor any log that is durable on one disk pays.

    python -m bench.queue_compare --batch 1,10,100 --messages 10000 --sync default,always

``--sync default`` uses the JetStream server at ``--nats-url`` (``NATS_URL``, default
nats://127.0.0.1:4222) as it is configured: JetStream's default ``sync_interval`` is
2 minutes, so its acknowledgement means "in the server's memory and the OS page cache",
not on disk (the figures say so in ``durable``). ``--sync always`` starts a private
``nats-server`` (``--nats-server``, default the one on PATH or /usr/sbin/nats-server)
with ``sync_interval: always`` on a free port and a store in a temporary directory; a
server older than 2.10 refuses that setting, and the rows are skipped with a message.

Reports, per target and batch size: per-message latency P50/P99 (from the batch's
start to the message's ack; for a commit every message of the batch waits for the
commit), batch latency P50/P99, messages/s, the server's CPU per message (the process
listening on the port, when it is on this machine) and this process's CPU per message.
Without nats-py or without a reachable JetStream server it prints why and exits 0
without writing a result. PostgreSQL: embedded unless EXCHANGE_DATABASE_URL is set
(a scratch database, dropped afterwards), as ``bench.commit``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.commit import (
    INSTRUMENT,
    place_seed_order,
    postgres_processes,
    prepare_database,
    reset_instrument,
)
from bench.cpu import own_seconds, processes_seconds
from bench.database import database_url, scratch_database
from bench.histogram import Histogram
from bench.results import write_result
from exchange.common.v1 import common_pb2
from exchange.matching.v1 import matching_pb2
from exchange_common import db
from matching_service.engine import BUY, GTC, IOC, LIMIT, MARKET, Changes, OrderBook
from matching_service.store import Store

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
SYNC_DEFAULT = "default"
SYNC_ALWAYS = "always"
TARGETS = ("fsync", "nats", "postgres", "nats+postgres")
START_NATS = ("a JetStream server (nats-server -js -a 127.0.0.1 -p 4222), or name one with "
              "NATS_URL or --nats-url")

SIDES = {BUY: common_pb2.SIDE_BUY}
TYPES = {LIMIT: common_pb2.ORDER_TYPE_LIMIT, MARKET: common_pb2.ORDER_TYPE_MARKET}
TIFS = {GTC: common_pb2.TIME_IN_FORCE_GTC, IOC: common_pb2.TIME_IN_FORCE_IOC}

PERCENTILES = (("p50", 50.0), ("p99", 99.0))

# The seed mix's journal rows as PostgreSQL stores them: pg_column_size(journal.*) averages
# 170 bytes for every kind of event (accepted, trade, cancelled, expired), about two events
# per order.
JOURNAL_ROW_BYTES = 170


def command_bytes(number: int, order: tuple[int, int, int, int, int, int], now: int,
                  pad_to: int) -> bytes:
    """The NewOrder command of a placed seed order as an order service sends it (a
    client_order_id of UUID length, the hold it took, fees), serialized; padded with
    zero bytes to ``pad_to`` bytes when shorter."""
    account, side, kind, tif, price, lots = order
    data = matching_pb2.NewOrder(
        instrument_id=INSTRUMENT, account_id=account,
        side=SIDES.get(side, common_pb2.SIDE_SELL), type=TYPES[kind], time_in_force=TIFS[tif],
        price=price, quantity=lots, client_order_id=f"bench-{number:030x}",
        held=price * lots or 7_200_000 * lots, held_at_unix_nanos=now,
        maker_fee_bps=10, taker_fee_bps=20).SerializeToString()
    return data + bytes(pad_to - len(data)) if len(data) < pad_to else data


@dataclass
class Batch:
    """One batch: its commands (``payloads``) and what the book made of them."""

    payloads: list[bytes]
    changes: Changes


class Seed:
    """Batches of the seed mix, placed on a book as the matching loop would."""

    def __init__(self, accounts: list[int], seed: int, pad_to: int = 0) -> None:
        self.accounts, self.rng, self.pad_to = accounts, random.Random(seed), pad_to
        self.book, self.done = OrderBook(INSTRUMENT), 0

    def batch(self, size: int) -> Batch:
        now = time.time_ns() // 1000 * 1000
        payloads = []
        for _ in range(size):
            order = place_seed_order(self.book, self.rng, self.accounts, self.done, now)
            payloads.append(command_bytes(self.done, order, now, self.pad_to))
            self.done += 1
        return Batch(payloads, self.book.drain_changes())


# An appender takes a batch and returns, per message, the seconds from the batch's start
# to its acknowledgement.
Append = Callable[[Batch], Awaitable[list[float]]]


async def nats_appender(js: Any, subject: str) -> Append:
    async def append(batch: Batch) -> list[float]:
        t0 = time.perf_counter()
        done: list[float] = []
        futures = []
        for payload in batch.payloads:
            future = await js.publish_async(subject, payload)
            future.add_done_callback(lambda _f: done.append(time.perf_counter() - t0))
            futures.append(future)
        await asyncio.gather(*futures)  # raises if one was refused
        return done
    return append


def postgres_appender(store: Store) -> Append:
    async def append(batch: Batch) -> list[float]:
        t0 = time.perf_counter()
        await store.commit(INSTRUMENT, 1, batch.changes)
        return [time.perf_counter() - t0] * len(batch.payloads)
    return append


def series_appender(first: Append, second: Append) -> Append:
    async def append(batch: Batch) -> list[float]:
        t0 = time.perf_counter()
        await first(batch)
        await second(batch)
        return [time.perf_counter() - t0] * len(batch.payloads)
    return append


def fsync_appender(path: Path) -> Append:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    async def append(batch: Batch) -> list[float]:
        t0 = time.perf_counter()
        os.write(fd, b"".join(len(p).to_bytes(4, "big") + p for p in batch.payloads))
        os.fsync(fd)
        return [time.perf_counter() - t0] * len(batch.payloads)
    return append


async def measure(append: Append, seed: Seed, batch: int, messages: int,
                  servers: list[psutil.Process]) -> dict[str, Any]:
    per_message, per_batch = Histogram(), Histogram()
    for _ in range(3):  # warm up (connections, statements, the stream's first block)
        await append(seed.batch(batch))
    srv0, me0, t0 = processes_seconds(servers), own_seconds(), time.perf_counter()
    sent, payload_bytes = 0, 0
    while sent < messages:
        b = seed.batch(min(batch, messages - sent))
        payload_bytes += sum(len(p) for p in b.payloads)
        times = await append(b)
        for t in times:
            per_message.record(round(t * 1e6))
        per_batch.record(round(max(times) * 1e6))
        sent += len(b.payloads)
    wall = time.perf_counter() - t0
    srv1, me1 = processes_seconds(servers), own_seconds()
    return {
        "batch": batch, "messages": sent,
        "payload_bytes_mean": round(payload_bytes / sent, 1),
        "message_ms": per_message.percentiles(PERCENTILES, divisor=1000),
        "batch_ms": per_batch.percentiles(PERCENTILES, divisor=1000),
        "messages_per_second": round(sent / wall),
        "server_cpu_us_per_message": round((srv1 - srv0) * 1e6 / sent, 1) if servers else None,
        "client_cpu_us_per_message": round((me1 - me0) * 1e6 / sent, 1),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nats_binary(given: str | None) -> str | None:
    if given:
        return given
    found = shutil.which("nats-server")
    if found:
        return found
    return "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None


@asynccontextmanager
async def private_nats(binary: str | None, sync: str) -> AsyncIterator[tuple[str | None, str]]:
    """A nats-server of this run with JetStream ``sync_interval: <sync>`` in a temporary
    store: yields (its URL, "") or (None, why it could not start)."""
    if binary is None:
        yield None, "no nats-server binary (--nats-server)"
        return
    directory = Path(tempfile.mkdtemp(prefix="bench-queue-nats-"))
    port = free_port()
    config = directory / "nats.conf"
    config.write_text(f'listen: "127.0.0.1:{port}"\n'
                      f'jetstream {{ store_dir: "{directory / "js"}", '
                      f'sync_interval: "{sync}" }}\n')
    try:
        check = subprocess.run([binary, "-c", str(config), "-t"], capture_output=True,
                               text=True, timeout=30)
        if check.returncode != 0:
            version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                     timeout=30).stdout.strip()
            why = (check.stderr or check.stdout).replace(str(config), "its config")
            lines = why.strip().splitlines()
            yield None, f"{version}: {lines[-1] if lines else 'config refused'}"
            return
        proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            yield f"nats://127.0.0.1:{port}", ""
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def connect_jetstream(url: str) -> tuple[Any, Any, str] | str:
    """(connection, JetStream context, server version), or why not."""
    try:
        import nats
    except ImportError:
        return "nats-py is not installed (the bench extra: pip install -e '.[bench]')"
    parts = urlsplit(url)
    try:  # nats-py retries a refused first connection for ever: ask the port first
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222),
                                 timeout=2).close()
    except OSError as e:
        return f"no NATS server at {url} ({e})"

    async def quiet(_e: Exception) -> None:
        pass

    try:
        nc = await asyncio.wait_for(
            nats.connect(url, connect_timeout=2, allow_reconnect=False, error_cb=quiet),
            timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure to connect means "skip"
        return f"no NATS server at {url} ({type(e).__name__}: {e})"
    js = nc.jetstream(publish_async_max_pending=100_000)
    try:
        await js.account_info()
    except Exception as e:  # noqa: BLE001
        await nc.close()
        return f"the NATS server at {url} has no JetStream ({type(e).__name__}: {e})"
    return nc, js, str(nc._server_info.get("version", "?"))


async def probe(url: str) -> str:
    """Why JetStream at ``url`` cannot be measured, or ""."""
    got = await connect_jetstream(url)
    if isinstance(got, str):
        return got
    await got[0].close()
    return ""


@asynccontextmanager
async def jetstream_stream(js: Any) -> AsyncIterator[str]:
    """A stream of this run (file storage, one replica, limits retention): yields the
    subject to publish to; deleted afterwards."""
    from nats.js.api import StorageType, StreamConfig
    name = f"BENCHQ_{uuid.uuid4().hex[:8]}"
    subject = f"benchq.{name}.{INSTRUMENT}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"benchq.{name}.>"],
                                     storage=StorageType.FILE, num_replicas=1))
    try:
        yield subject
    finally:
        await js.delete_stream(name)


def port_of(url: str) -> int:
    return urlsplit(url).port or 4222


async def run(args: argparse.Namespace, pg_server_url: str) -> dict[str, Any] | None:
    shared = await connect_jetstream(args.nats_url)
    if isinstance(shared, str):
        print(f"skipped: {shared}. It needs {START_NATS}")
        return None
    nc, js, version = shared
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    unavailable: set[str] = set()
    servers: dict[str, dict[str, Any]] = {
        SYNC_DEFAULT: {"url": args.nats_url, "version": version,
                       "sync_interval": "the server's setting (JetStream's default: 2 min)",
                       "durable": "acknowledged from memory and the page cache"}}
    work = Path(tempfile.mkdtemp(prefix="bench-queue-"))

    def show(row: dict[str, Any]) -> None:
        print(f"  {row['target']:<24} batch={row['batch']:<4} "
              f"msg p50={row['message_ms']['p50']} p99={row['message_ms']['p99']} ms  "
              f"batch p50={row['batch_ms']['p50']} p99={row['batch_ms']['p99']} ms  "
              f"{row['messages_per_second']}/s  server cpu "
              f"{row['server_cpu_us_per_message']} us/msg  client cpu "
              f"{row['client_cpu_us_per_message']} us/msg", flush=True)

    try:
        async with scratch_database(pg_server_url, "bench_queue") as url:
            await prepare_database(url)
            pg_port = urlsplit(pg_server_url).port or 5432
            pool = await db.create_pool(url, min_size=1, max_size=1)
            try:
                for batch in args.batch:
                    # PostgreSQL alone, and the fsync floor
                    for target in ("postgres", "fsync"):
                        if target not in args.targets:
                            continue
                        seed = Seed(await reset_instrument(url), args.seed,
                                    args.message_bytes)
                        if target == "postgres":
                            append = postgres_appender(Store(pool))
                            procs = postgres_processes(pg_port)
                        else:
                            append = fsync_appender(work / f"log-{batch}")
                            procs = []
                        row = {"target": target, "sync": "",
                               **await measure(append, seed, batch, args.messages, procs)}
                        show(row)
                        rows.append(row)
                    for sync in args.sync:
                        if not {"nats", "nats+postgres"} & set(args.targets):
                            break
                        if sync in unavailable:
                            continue
                        async with nats_for(sync, args, nc, js) as target_nats:
                            if isinstance(target_nats, str):
                                unavailable.add(sync)
                                print(f"skipped: sync {sync}: {target_nats}")
                                skipped.append(f"sync {sync}: {target_nats}")
                                continue
                            sjs, surl, sversion = target_nats
                            if sync != SYNC_DEFAULT:
                                servers[sync] = {"url": "private", "version": sversion,
                                                 "sync_interval": sync,
                                                 "durable": "fsynced before the ack"}
                            # (the processes listening on the server's port)
                            nats_procs = postgres_processes(port_of(surl))
                            async with jetstream_stream(sjs) as subject:
                                nats_append = await nats_appender(sjs, subject)
                                for target in ("nats", "nats+postgres"):
                                    if target not in args.targets:
                                        continue
                                    seed = Seed(await reset_instrument(url), args.seed,
                                                args.message_bytes)
                                    if target == "nats":
                                        append, procs = nats_append, nats_procs
                                    else:
                                        append = series_appender(
                                            nats_append, postgres_appender(Store(pool)))
                                        procs = nats_procs + postgres_processes(pg_port)
                                    row = {"target": f"{target} (sync {sync})", "sync": sync,
                                           **await measure(append, seed, batch,
                                                           args.messages, procs)}
                                    show(row)
                                    rows.append(row)
            finally:
                await pool.close()
    finally:
        await nc.close()
        shutil.rmtree(work, ignore_errors=True)
    return {"nats": servers, "skipped": skipped, "runs": rows, "added": added(rows)}


def added(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a queue in front adds to an order, per sync setting and batch size: the
    ``nats+postgres`` latency percentiles minus the ``postgres`` ones."""
    alone = {r["batch"]: r for r in rows if r["target"] == "postgres"}
    out = []
    for r in rows:
        base = alone.get(r["batch"])
        if not r["target"].startswith("nats+postgres") or base is None:
            continue
        diff = {k: round(r["message_ms"][k] - base["message_ms"][k], 3)
                for k in ("p50", "p99")
                if r["message_ms"][k] is not None and base["message_ms"][k] is not None}
        out.append({"sync": r["sync"], "batch": r["batch"], "added_ms": diff})
        shown = ", ".join(f"{v:+} ms {k.upper()}" for k, v in diff.items())
        print(f"  a queue in front (sync {r['sync']}), batch {r['batch']}: {shown} per order",
              flush=True)
    return out


@asynccontextmanager
async def nats_for(sync: str, args: argparse.Namespace, nc: Any,
                   js: Any) -> AsyncIterator[tuple[Any, str, str] | str]:
    """The JetStream context to measure ``sync`` on: the shared server for the default,
    a private server for the others; or why there is none."""
    if sync == SYNC_DEFAULT:
        yield js, args.nats_url, str(nc._server_info.get("version", "?"))
        return
    async with private_nats(nats_binary(args.nats_server), sync) as (url, why):
        if url is None:
            yield why
            return
        got = await connect_jetstream(url)
        if isinstance(got, str):
            yield got
            return
        pnc, pjs, version = got
        try:
            yield pjs, url, version
        finally:
            await pnc.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    names = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--batch", default="1,10,100", type=ints,
                   help="messages per batch, a list (default 1,10,100)")
    p.add_argument("--messages", type=int, default=10_000,
                   help="messages per target and batch size (default 10,000)")
    p.add_argument("--sync", default="default,always", type=names,
                   help="JetStream fsync settings: default (the server at --nats-url as "
                        "configured), always (a private server with sync_interval: always, "
                        "nats-server 2.10 or later), or a duration such as 100ms")
    p.add_argument("--targets", default=",".join(TARGETS), type=names,
                   help=f"what to measure (default {','.join(TARGETS)})")
    p.add_argument("--nats-url", default=os.environ.get("NATS_URL", DEFAULT_NATS_URL))
    p.add_argument("--nats-server", default=None,
                   help="the nats-server binary for the private servers")
    p.add_argument("--message-bytes", type=int, default=JOURNAL_ROW_BYTES,
                   help="pad every message to at least this many bytes (default "
                        f"{JOURNAL_ROW_BYTES}: a journal row; 0: the NewOrder command as it "
                        "is, 71-79 bytes)")
    p.add_argument("--seed", type=int, default=1)
    return p


def main() -> None:
    args = parser().parse_args()
    if unknown := set(args.targets) - set(TARGETS):
        parser().error(f"unknown targets {sorted(unknown)}")
    why = asyncio.run(probe(args.nats_url))
    if why:
        print(f"skipped: {why}. It needs {START_NATS}")
        return
    with database_url("bench-queue-") as pg_url:
        figures = asyncio.run(run(args, pg_url))
    if figures is None:
        return
    path = write_result(
        "queue-compare", figures,
        f"python -m bench.queue_compare --batch {','.join(map(str, args.batch))} "
        f"--messages {args.messages} --sync {','.join(args.sync)} "
        f"--message-bytes {args.message_bytes} "
        f"--targets {','.join(args.targets)}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
