"""Market-data fan-out: N subscribers to ``StreamOrderBook`` during the seed scenario.

For each N of ``--subscribers`` and each of "without" / "with" one deliberately slow
subscriber, a fresh exchange is started (embedded PostgreSQL and Redis, the three
services as real processes, ``exchange_dev.stack.Stack``), then:

* N subscribers, spread over ``--procs`` client processes (one HTTP/2 connection per
  ``--streams-per-connection`` subscribers), each keep a local L2 book from the stream
  (snapshot, then deltas), check that every delta's ``first_sequence`` is the previous
  message's ``sequence`` + 1, and time every delta when it is read. The client processes
  share the machine's cores with the server they measure, so by default they read with a
  minimal HTTP/2 reader on plain asyncio (``bench.h2stream``, one connection per subscriber),
  and parse each distinct message once per process (``ParsedUpdates``: the server sends the
  same bytes to every subscriber at the same point), each subscriber still checking its own
  sequences and applying every level to its own book; ``--client grpc`` reads with grpc.aio
  and parses per subscriber instead;
* the slow subscriber (its own process and connection) reads one message every
  ``--slow-interval`` seconds, so its queue on the server overflows and it is sent
  snapshots instead of its backlog (conflation); those snapshots are counted;
* an open-loop load of the seed mix (70% limit GTC / 30% market IOC, 0.01-0.5 BTC,
  limit prices uniform within +-2,000 of 70,000, both sides, ``--accounts`` accounts)
  arrives at ``--rate`` orders/s for ``--duration`` s, over one ``OrderEntry`` session
  per account (or unary ``CreateOrder`` with ``--entry unary``).

Delivery lag, and what "commit" means here. The matching pod commits a batch to
PostgreSQL, answers its callers, then its publisher task serializes the batch for Redis
and stamps it (``MarketDataBatch.time_unix_nanos = time.time_ns()``); market data copies
the stamp of the newest batch it merged into a delta into ``OrderBookDelta.time``. So
the closest clock to the commit that the system records is that publish stamp, taken
right after the commit returned (the interval commit -> stamp is not in the figures).
Two lags are measured per delta read by a subscriber, on the same machine clock:

* ``lag`` (the headline): read time - publish stamp of the *oldest* Redis entry the delta
  covers (looked up by its ``first_sequence`` in the instrument's Redis stream after the
  run), i.e. the wait of the oldest event in the delta;
* ``lag_newest``: read time - ``OrderBookDelta.time`` (the newest entry's stamp), which
  is what a client can compute by itself.

CPU: seconds of CPU of every process (market data, order, matching, PostgreSQL, Redis,
the load and subscriber processes) over the load window, as cores (CPU s / wall s).

    python -m bench.fanout --subscribers 100,1000 --rate 2000 --duration 60

Results: a table, a JSON file in bench/results/ (bench.results.write_result) and, with
``--plot``, a PNG of the lag percentiles beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.cpu import CpuProbe, Group
from bench.histogram import Histogram
from bench.results import write_result
from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange_client.book import Level, LocalOrderBook, SequenceGap, decode_levels

INSTRUMENT = "BTC-USD"
STREAM_METHOD = "/exchange.marketdata.v1.MarketDataService/StreamOrderBook"
def _account_keys(n: int) -> dict[str, str]:
    return {f"fanout-{i}": f"bench-fanout-key-{i:03d}-0123456789" for i in range(n)}


# ---------------------------------------------------------------------------
# Subscriber processes
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Update:
    """One StreamOrderBook message, decoded once for any number of subscribers (the
    levels are the client library's immutable ``Level``s; quantity 0 removes one)."""

    kind: str  # "snapshot", "delta" or "other"
    first_sequence: int = 0
    sequence: int = 0
    stamp: int = 0  # a delta's time, ns since the epoch
    bids: tuple[Level, ...] = ()
    asks: tuple[Level, ...] = ()


def decode(msg: md_pb2.StreamOrderBookResponse) -> Update:
    which = msg.WhichOneof("update")
    if which == "snapshot":
        snap = msg.snapshot
        return Update("snapshot", sequence=snap.sequence, bids=decode_levels(snap.bids),
                      asks=decode_levels(snap.asks))
    if which == "delta":
        d = msg.delta
        return Update("delta", d.first_sequence, d.sequence,
                      d.time.seconds * 1_000_000_000 + d.time.nanos,
                      decode_levels(d.bids), decode_levels(d.asks))
    return Update("other")


# A book's levels, best first, as (price, quantity): what the final check compares.
Levels = tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]


def book_levels(book: LocalOrderBook) -> Levels:
    return ([(lv.price, lv.quantity) for lv in book.bids()],
            [(lv.price, lv.quantity) for lv in book.asks()])


class Subscriber:
    """One subscriber: its local book (the client library's ``LocalOrderBook``) and what
    it read."""

    __slots__ = ("book", "ready", "messages", "gaps", "slow")

    def __init__(self, slow: bool = False) -> None:
        self.book = LocalOrderBook(INSTRUMENT)
        self.ready = asyncio.Event()
        self.messages = 0
        self.gaps = 0  # deltas that did not follow on (not applied)
        self.slow = slow

    @property
    def sequence(self) -> int:
        return -1 if self.book.sequence is None else self.book.sequence

    def apply(self, update: Update) -> bool:
        """Apply one message; True for a delta applied."""
        self.messages += 1
        if update.kind == "snapshot":
            self.book.replace(update.sequence, update.bids, update.asks)
            self.ready.set()
        elif update.kind == "delta":
            try:
                self.book.change(update.first_sequence, update.sequence, update.bids,
                                 update.asks)
            except SequenceGap:
                self.gaps += 1
                return False
            return True
        return False


def _channel(addr: str, *, slow: bool = False):
    import grpc

    options = [("grpc.use_local_subchannel_pool", 1),  # its own connection
               ("grpc.max_receive_message_length", -1)]
    if slow:
        # No BDP probing and a small stream window (lookahead): little is buffered in
        # the transport, as for a client that reads slowly, so that the server's queue
        # for it fills soon and conflation shows within a run.
        options += [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 4096)]
    return grpc.aio.insecure_channel(addr, options=options)


async def _follow(channel, sub: Subscriber, rec: tuple[array, array, array] | None,
                  slow_interval: float) -> None:
    parse = md_pb2.StreamOrderBookResponse.FromString
    stream = channel.unary_stream(
        STREAM_METHOD, request_serializer=md_pb2.StreamOrderBookRequest.SerializeToString,
        response_deserializer=None)
    call = stream(md_pb2.StreamOrderBookRequest(instrument=INSTRUMENT))
    try:
        async for raw in call:
            now = time.time_ns()
            update = decode(parse(raw))
            if sub.apply(update) and rec is not None:
                firsts, reads, stamps = rec
                firsts.append(update.first_sequence)
                reads.append(now)
                stamps.append(update.stamp)
            if slow_interval:
                await asyncio.sleep(slow_interval)
    except asyncio.CancelledError:
        call.cancel()
        raise


class ParsedUpdates:
    """Parse each distinct message once per process.

    The server sends the same bytes to every subscriber that is at the same point, so the
    subscribers of one process mostly receive identical messages. Each is parsed (protobuf)
    once, into an ``Update`` (levels, sequences, stamp); every subscriber still checks its
    own continuity and applies the levels to its own book.
    """

    def __init__(self, limit: int = 256) -> None:
        self._parse = md_pb2.StreamOrderBookResponse.FromString
        self._memo: dict[bytes, Update] = {}
        self._limit = limit
        self.parsed = 0

    def get(self, raw: bytes) -> Update:
        update = self._memo.get(raw)
        if update is None:
            update = decode(self._parse(raw))
            if len(self._memo) >= self._limit:
                self._memo.clear()
            self._memo[raw] = update
            self.parsed += 1
        return update


def _on_message(sub: Subscriber, rec: tuple[array, array, array] | None,
                updates: ParsedUpdates) -> Callable[[bytes, int], None]:
    """A raw-reader callback doing what ``_follow`` does for each message."""

    def on_message(raw: bytes, now: int) -> None:
        update = updates.get(raw)
        if sub.apply(update) and rec is not None:
            firsts, reads, stamps = rec
            firsts.append(update.first_sequence)
            reads.append(now)
            stamps.append(update.stamp)

    return on_message


async def _open_raw(addr: str, books: list[Subscriber], rec) -> list:
    """One raw HTTP/2 connection and StreamOrderBook call per subscriber."""
    from bench.h2stream import open_stream

    host, _, port = addr.rpartition(":")
    request = md_pb2.StreamOrderBookRequest(instrument=INSTRUMENT).SerializeToString()
    updates = ParsedUpdates()
    streams = []
    for i in range(0, len(books), 50):  # a few connects at a time: no accept-queue storm
        streams += await asyncio.gather(*(
            open_stream(host, int(port), STREAM_METHOD, request,
                        _on_message(book, rec, updates))
            for book in books[i:i + 50]))
    return streams


def _lag_histograms(rec: tuple[array, array, array], entry_times: dict[int, int]
                    ) -> tuple[Histogram, Histogram, int]:
    """(lag from the oldest entry's stamp, lag from the delta's own stamp, unmatched),
    in microseconds."""
    oldest, newest = Histogram(), Histogram()
    unmatched = 0
    firsts, reads, stamps = rec
    for first, read, stamp in zip(firsts, reads, stamps, strict=True):
        origin = entry_times.get(first)
        if origin is None:
            unmatched += 1
            origin = stamp
        oldest.record((read - origin) // 1000)
        newest.record((read - stamp) // 1000)
    return oldest, newest, unmatched


async def _subscriber_async(conn, addr: str, count: int, slow_interval: float,
                            streams_per_connection: int, client: str = "grpc") -> None:
    loop = asyncio.get_running_loop()
    slow = slow_interval > 0
    books = [Subscriber(slow) for _ in range(count)]
    rec = (array("q"), array("q"), array("q"))
    channels = []
    tasks = []
    raw_streams = []
    if client == "raw" and not slow:
        raw_streams = await _open_raw(addr, books, rec)
    else:
        channels = [_channel(addr, slow=slow)
                    for _ in range(math.ceil(count / max(1, streams_per_connection)))]
        tasks = [asyncio.create_task(_follow(channels[i // max(1, streams_per_connection)],
                                             book, None if slow else rec, slow_interval))
                 for i, book in enumerate(books)]
    try:
        await asyncio.wait_for(asyncio.gather(*(b.ready.wait() for b in books)), 120)
        conn.send(("ready", count))
        _, entry_times, final = await loop.run_in_executor(None, conn.recv)
        final_seq, final_levels = final
        # Let every subscriber catch up with the final book (the slow one never will).
        deadline = time.monotonic() + (0 if slow else 15)
        while time.monotonic() < deadline and any(b.sequence < final_seq for b in books):
            await asyncio.sleep(0.05)
        matched = sum(1 for b in books
                      if b.sequence == final_seq and book_levels(b.book) == final_levels)
        behind = sum(1 for b in books if b.sequence < final_seq)
        ended = sum(1 for st in raw_streams if st.done.done())
    finally:
        for st in raw_streams:
            st.close()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for ch in channels:
            await ch.close()
    result: dict[str, Any] = {
        "subscribers": count,
        "messages": sum(b.messages for b in books),
        "deltas": sum(b.book.deltas for b in books),
        # Every subscriber's first message is a snapshot; the others replaced a backlog.
        "snapshots_after_first": sum(b.book.snapshots - 1 for b in books),
        "gaps": sum(b.gaps for b in books),
        "books_equal_to_final": matched,
        "books_behind_final": behind,
        # Raw-reader streams the server ended before the run was over (should be 0).
        "streams_ended": ended,
    }
    if not slow:
        oldest, newest, unmatched = _lag_histograms(rec, entry_times)
        result.update(lag=oldest.encode(), lag_newest=newest.encode(),
                      unmatched_first_sequences=unmatched)
    conn.send(("result", result))


def subscriber_main(conn, addr: str, count: int, slow_interval: float,
                    streams_per_connection: int, client: str = "grpc") -> None:
    try:
        asyncio.run(_subscriber_async(conn, addr, count, slow_interval, streams_per_connection,
                                      client))
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        with contextlib.suppress(Exception):
            conn.send(("error", repr(err)))
        raise


# ---------------------------------------------------------------------------
# Load process: the seed mix, open loop
# ---------------------------------------------------------------------------


async def _load_async(conn, addr: str, keys: list[str], rate: float, duration: float,
                      seed: int, entry: str, linger: float) -> None:
    import grpc

    from bench.orders import SEED_MIX, OrderMaker
    from exchange.order.v1 import order_pb2 as opb
    from exchange.order.v1 import order_pb2_grpc as opb_grpc

    loop = asyncio.get_running_loop()
    maker = OrderMaker(SEED_MIX, seed)
    total = int(rate * duration)
    tag = f"fo{seed}"
    lat = Histogram()
    states: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    answered = 0
    all_answered = asyncio.Event()
    t0 = 0.0

    def answer(client_order_id: str, error: str | None, state: int = 0) -> None:
        nonlocal answered
        i = int(client_order_id.rsplit("-", 1)[1])
        late = time.perf_counter() - (t0 + i / rate)
        lat.record(int(late * 1e6))
        if error is not None:
            errors[error] += 1
        else:
            states[str(state)] += 1
        answered += 1
        if answered >= total:
            all_answered.set()

    channel = grpc.aio.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)])
    stub = opb_grpc.OrderServiceStub(channel)
    calls = []
    readers = []

    async def read(call) -> None:
        async for response in call:
            for ev in response.events:
                if ev.HasField("error"):
                    answer(ev.client_order_id, f"{ev.error.code} {ev.error.message[:60]}")
                else:
                    answer(ev.client_order_id, None, ev.order.state)

    if entry == "stream":
        for key in keys:
            call = stub.OrderEntry(metadata=(("x-api-key", key),))
            calls.append(call)
            readers.append(asyncio.create_task(read(call)))

    async def unary(i: int, request, key: str) -> None:
        try:
            reply = await stub.CreateOrder(request, metadata=(("x-api-key", key),), timeout=30)
            answer(request.client_order_id, None, reply.order.state)
        except grpc.aio.AioRpcError as err:
            answer(request.client_order_id, f"{err.code().name} {(err.details() or '')[:60]}")

    await channel.channel_ready()
    conn.send(("ready", None))
    await loop.run_in_executor(None, conn.recv)  # "go"
    pending: set[asyncio.Task] = set()
    t0 = time.perf_counter()
    sent = 0
    sessions = len(keys)
    while sent < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + 1)
        if due > sent:
            if entry == "stream":
                per: dict[int, list] = {}
                for i in range(sent, due):
                    per.setdefault(i % sessions, []).append(
                        opb.OrderEntryCommand(create=maker.create(f"{tag}-{i}")))
                for k, commands in per.items():
                    await calls[k].write(opb.OrderEntryRequest(commands=commands))
            else:
                for i in range(sent, due):
                    task = asyncio.create_task(
                        unary(i, maker.create(f"{tag}-{i}"), keys[i % sessions]))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            sent = due
        await asyncio.sleep(max(linger if entry == "stream" else 0.0,
                                t0 + sent / rate - time.perf_counter()))
    send_seconds = time.perf_counter() - t0
    conn.send(("sent", sent))
    for call in calls:
        await call.done_writing()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_answered.wait(), 60)
    for t in readers:
        t.cancel()
    await channel.close()
    conn.send(("result", {
        "orders_sent": sent, "orders_answered": answered, "send_seconds": round(send_seconds, 3),
        "ack_latency": lat.encode(), "states": dict(states), "errors": dict(errors)}))


def load_main(conn, addr: str, keys: list[str], rate: float, duration: float, seed: int,
              entry: str, linger: float = 0.0) -> None:
    try:
        asyncio.run(_load_async(conn, addr, keys, rate, duration, seed, entry, linger))
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        with contextlib.suppress(Exception):
            conn.send(("error", repr(err)))
        raise


# ---------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    subscribers: int
    slow: bool
    rate: float
    duration: float
    procs: int
    streams_per_connection: int
    slow_interval: float
    accounts: int
    entry: str
    seed: int
    linger_ms: float
    profile_dir: str = ""
    client: str = "raw"
    book_interval_ms: float | None = None
    md_workers: int = 1


async def _recv(conn, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, conn.poll, timeout):
        raise RuntimeError(f"no answer from {what} within {timeout:.0f} s")
    message = conn.recv()
    if message[0] == "error":
        raise RuntimeError(f"{what} failed: {message[1]}")
    return message


def _server_groups(stack) -> list[Group]:
    """The exchange's processes as bench.cpu groups (market data's other workers and
    PostgreSQL's backends included)."""
    groups = [Group(name, [proc.pid], children=name == "marketdata")
              for name, proc in stack.processes.items()]
    if stack.pg is not None and stack.pg.pid is not None:
        groups.append(Group("postgres", [stack.pg.pid], children=True))
    if stack.redis is not None and getattr(stack.redis, "pid", None):
        groups.append(Group("redis", [stack.redis.pid]))
    return groups


async def _entry_times(redis_url: str, instrument_id: int) -> dict[int, int]:
    """first_sequence -> publish stamp (ns) of every entry in the instrument's stream."""
    import redis.asyncio as redis_asyncio

    from exchange.matching.v1 import matching_pb2
    from exchange_common.streams import FIELD, stream_key

    client = redis_asyncio.from_url(redis_url)
    out: dict[int, int] = {}
    start = "-"
    try:
        while True:
            entries = await client.xrange(stream_key(instrument_id), min=start, count=10_000)
            if not entries:
                break
            for _eid, fields in entries:
                payload = (fields or {})[FIELD]
                assert isinstance(payload, bytes)  # the client does not decode responses
                batch = matching_pb2.MarketDataBatch.FromString(payload)
                out[batch.first_sequence] = batch.time_unix_nanos
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
    finally:
        await client.aclose()
    return out


async def _final_book(addr: str):
    import grpc

    from exchange.marketdata.v1 import marketdata_pb2_grpc as md_grpc

    async with grpc.aio.insecure_channel(
            addr, options=[("grpc.max_receive_message_length", -1)]) as ch:
        book = await md_grpc.MarketDataServiceStub(ch).GetOrderBook(
            md_pb2.GetOrderBookRequest(instrument=INSTRUMENT, depth=0), timeout=30)
    final = LocalOrderBook(INSTRUMENT)
    final.replace(book.sequence, decode_levels(book.bids), decode_levels(book.asks))
    return book.sequence, book_levels(final)


LAG_POINTS = (("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("p999_ms", 99.9))


def _pcts(encoded_list: list[bytes]) -> tuple[dict[str, float | None], Histogram]:
    """The merged histogram's count and percentiles in ms, and the histogram."""
    total = Histogram.merged(encoded_list)
    figures: dict[str, float | None] = {"count": total.count}
    return figures | total.percentiles(LAG_POINTS, divisor=1000, ndigits=2,
                                       max_key="max_ms"), total


async def one_run(spec: RunSpec, workdir: Path) -> dict:
    import asyncpg

    from exchange_dev.stack import Stack

    keys = _account_keys(spec.accounts)
    marketdata_env = {}
    if spec.book_interval_ms is not None:
        marketdata_env["EXCHANGE_BOOK_UPDATE_INTERVAL"] = f"{spec.book_interval_ms / 1000:g}"
    if spec.md_workers != 1:
        marketdata_env["EXCHANGE_MARKETDATA_WORKERS"] = str(spec.md_workers)
    stack = Stack(data_dir=workdir / "data", keys=keys, log_dir=workdir / "logs",
                  env={"EXCHANGE_LOG_LEVEL": "WARNING"},
                  service_env={"matching": {"EXCHANGE_STREAM_MAXLEN": "10000000"},
                               "marketdata": marketdata_env})
    ctx = mp.get_context("spawn")
    procs: list = []
    conns: dict[str, Connection] = {}
    t_start = time.perf_counter()
    await stack.start()
    try:
        conn = await asyncpg.connect(stack.database_url)
        instrument_id = await conn.fetchval(
            "SELECT instrument_id FROM instruments WHERE symbol = $1", INSTRUMENT)
        await conn.close()

        # Subscribers first (each must have its first snapshot), then the slow one.
        nprocs = max(1, min(spec.procs, spec.subscribers))
        shares = [spec.subscribers // nprocs + (1 if i < spec.subscribers % nprocs else 0)
                  for i in range(nprocs)]
        for i, share in enumerate(shares):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=subscriber_main, name=f"fanout-sub-{i}", daemon=True,
                            args=(child, stack.marketdata_addr, share, 0.0,
                                  spec.streams_per_connection, spec.client))
            p.start()
            procs.append(p)
            conns[f"sub-{i}"] = parent
        if spec.slow:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=subscriber_main, name="fanout-slow", daemon=True,
                            args=(child, stack.marketdata_addr, 1, spec.slow_interval, 1))
            p.start()
            procs.append(p)
            conns["slow"] = parent
        for name, c in conns.items():
            await _recv(c, 180, f"subscriber process {name}")
        subscribe_seconds = time.perf_counter() - t_start

        parent, child = ctx.Pipe()
        load = ctx.Process(target=load_main, name="fanout-load", daemon=True,
                           args=(child, stack.order_addr, list(keys.values()), spec.rate,
                                 spec.duration, spec.seed, spec.entry, spec.linger_ms / 1000))
        load.start()
        assert load.pid is not None  # started
        procs.append(load)
        conns["load"] = parent
        await _recv(parent, 60, "load process")

        probe = CpuProbe([
            *_server_groups(stack), Group("load client", [load.pid], server=False),
            Group("subscriber clients", [p.pid for p in procs if p.name.startswith("fanout-s")],
                  server=False)])
        spy = None
        if spec.profile_dir:
            profile = Path(spec.profile_dir) / (f"marketdata-{spec.subscribers}"
                                            f"{'-slow' if spec.slow else ''}.txt")
            profile.parent.mkdir(parents=True, exist_ok=True)
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                str(stack.processes["marketdata"].pid), "--duration",
                str(int(spec.duration)), "--rate", "50", "--native", "--format", "raw",
                "--output", str(profile), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
        sample0 = probe.sample()
        w0 = time.perf_counter()
        parent.send(("go",))
        _, sent = await _recv(parent, spec.duration * 3 + 60, "load process")
        wall = time.perf_counter() - w0
        sample1 = probe.sample()
        _, load_result = await _recv(parent, 120, "load process")
        if spy is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(spy.wait(), 30)

        await asyncio.sleep(1.0)  # the last batches reach market data
        final = await _final_book(stack.marketdata_addr)
        assert stack.redis_url is not None  # started
        entry_times = await _entry_times(stack.redis_url, instrument_id)
        for name, c in conns.items():
            if name != "load":
                c.send(("stop", entry_times, final))
        results = {name: (await _recv(c, 120, f"subscriber process {name}"))[1]
                   for name, c in conns.items() if name != "load"}
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
        await stack.stop()

    usage = probe.usage(sample0, sample1)
    other = usage.pop("other")
    cores = {name: round(seconds / wall, 3) for name, seconds in usage.items()}
    normal = [r for n, r in results.items() if n != "slow"]
    lag, lag_hist = _pcts([r["lag"] for r in normal])
    lag_newest, _ = _pcts([r["lag_newest"] for r in normal])
    ack, _ = _pcts([load_result["ack_latency"]])
    deltas = sum(r["deltas"] for r in normal)
    out = {
        "subscribers": spec.subscribers,
        "slow_subscriber": spec.slow,
        "orders_sent": sent,
        "orders_answered": load_result["orders_answered"],
        "order_rate_achieved": round(sent / wall, 1),
        "order_errors": load_result["errors"],
        "order_ack_p99_ms": ack["p99_ms"],
        "deltas_received": deltas,
        "deltas_per_subscriber_per_s": round(deltas / max(1, spec.subscribers) / wall, 1),
        "lag_ms": lag,
        "lag_newest_stamp_ms": lag_newest,
        "sequence_gaps": sum(r["gaps"] for r in normal),
        "snapshots_to_normal_subscribers": sum(r["snapshots_after_first"] for r in normal),
        "books_equal_to_final": sum(r["books_equal_to_final"] for r in normal),
        "books_behind_final": sum(r["books_behind_final"] for r in normal),
        "unmatched_first_sequences": sum(r["unmatched_first_sequences"] for r in normal),
        "streams_ended_early": sum(r.get("streams_ended", 0) for r in normal),
        "marketdata_cpu_cores": cores.get("marketdata"),
        # Market data's CPU per message it delivered to the normal subscribers.
        "marketdata_cpu_us_per_message": round(
            cores.get("marketdata", 0.0) * 1e6 / max(1.0, deltas / wall), 1),
        "cpu_cores": cores,
        "load_window_s": round(wall, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        # Everything the machine ran in the window, and what was not this benchmark's
        # (bench.cpu: busy = user + nice + system + irq + softirq; steal on its own).
        "machine_busy_cores": round(probe.busy(sample0, sample1) / wall, 2),
        "other_cpu_cores": round(other / wall, 2),
        "machine_steal_cores": round(probe.steal(sample0, sample1) / wall, 2),
        "setup_s": round(subscribe_seconds, 1),
        "_lag_hist": lag_hist,
    }
    if spec.slow:
        slow = results["slow"]
        out["slow_subscriber_messages"] = slow["messages"]
        out["slow_subscriber_snapshots"] = slow["snapshots_after_first"]
        out["slow_subscriber_gaps"] = slow["gaps"]
    return out


def _table(runs: list[dict]) -> str:
    head = (f"{'subs':>5} {'slow':>4} {'orders/s':>8} {'deltas/s':>8} {'lag p50':>8} "
            f"{'p99':>8} {'p99.9':>8} {'max':>8} {'newest p99':>10} {'gaps':>4} "
            f"{'snaps':>5} {'slow snaps':>10} {'md cpu':>6} {'us/msg':>6} {'all cpu':>7} "
            f"{'other':>5}")
    lines = [head, "-" * len(head)]
    for r in runs:
        lag = r["lag_ms"]
        total_cpu = sum(r["cpu_cores"].values())
        lines.append(
            f"{r['subscribers']:>5} {'yes' if r['slow_subscriber'] else 'no':>4} "
            f"{r['order_rate_achieved']:>8.0f} {r['deltas_per_subscriber_per_s']:>8.1f} "
            f"{lag['p50_ms']!s:>8} {lag['p99_ms']!s:>8} {lag['p999_ms']!s:>8} "
            f"{lag['max_ms']!s:>8} {r['lag_newest_stamp_ms']['p99_ms']!s:>10} "
            f"{r['sequence_gaps']:>4} {r['snapshots_to_normal_subscribers']:>5} "
            f"{r.get('slow_subscriber_snapshots', '-')!s:>10} "
            f"{r['marketdata_cpu_cores']!s:>6} {r['marketdata_cpu_us_per_message']!s:>6} "
            f"{total_cpu:>7.2f} {r['other_cpu_cores']:>5.2f}")
    return "\n".join(lines)


def _plot(runs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    pcts = [50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100]
    xs = [1 / (1 - p / 100) if p < 100 else 1e5 for p in pcts]
    for r in runs:
        h = r["_lag_hist"]
        ys = [h.value_at(p) / 1000 for p in pcts]
        label = f"{r['subscribers']} subscribers{' + slow one' if r['slow_subscriber'] else ''}"
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{p}" for p in pcts])
    ax.set_xlabel("percentile")
    ax.set_ylabel("delivery lag (ms)")
    ax.axhline(100, color="grey", linestyle="--", linewidth=1, label="target P99 100 ms")
    ax.set_title("StreamOrderBook delivery lag (publish stamp of the oldest entry -> read)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


async def main_async(args: argparse.Namespace) -> list[dict]:
    counts = [int(x) for x in str(args.subscribers).split(",") if x.strip()]
    variants = {"both": (False, True), "without": (False,), "with": (True,)}[args.slow]
    runs = []
    for n in counts:
        for slow in variants:
            procs = args.procs or max(1, min(8, math.ceil(n / 250)))
            spec = RunSpec(subscribers=n, slow=slow, rate=args.rate, duration=args.duration,
                           procs=procs, streams_per_connection=args.streams_per_connection,
                           slow_interval=args.slow_interval, accounts=args.accounts,
                           entry=args.entry, seed=args.seed, linger_ms=args.linger_ms,
                           profile_dir=args.profile or "", client=args.client,
                           book_interval_ms=args.book_interval_ms,
                           md_workers=args.md_workers)
            with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
                print(f"-- {n} subscribers in {procs} processes, "
                      f"{'with' if slow else 'without'} a slow subscriber, "
                      f"{args.rate:g} orders/s for {args.duration:g} s, "
                      f"{args.md_workers} market-data worker(s)", flush=True)
                result = await one_run(spec, Path(tmp))
            result["run"] = asdict(spec)
            runs.append(result)
            print(_table([result]).splitlines()[-1], flush=True)
            print(f"   order answers {result['orders_answered']}/{result['orders_sent']}, "
                  f"ack p99 {result['order_ack_p99_ms']} ms, errors {result['order_errors']}; "
                  f"cpu cores {result['cpu_cores']}; machine busy "
                  f"{result['machine_busy_cores']} cores, of which not this benchmark "
                  f"{result['other_cpu_cores']}",
                  flush=True)
    return runs


def command_line(args: argparse.Namespace) -> str:
    parts = ["python -m bench.fanout", f"--subscribers {args.subscribers}",
             f"--rate {args.rate:g}", f"--duration {args.duration:g}"]
    if args.slow != "both":
        parts.append(f"--slow {args.slow}")
    if args.entry != "stream":
        parts.append(f"--entry {args.entry}")
    if args.procs:
        parts.append(f"--procs {args.procs}")
    if args.streams_per_connection != 1:
        parts.append(f"--streams-per-connection {args.streams_per_connection}")
    if args.accounts != 8:
        parts.append(f"--accounts {args.accounts}")
    if args.linger_ms != 10.0:
        parts.append(f"--linger-ms {args.linger_ms:g}")
    if args.slow_interval != 1.0:
        parts.append(f"--slow-interval {args.slow_interval:g}")
    if args.client != "raw":
        parts.append(f"--client {args.client}")
    if args.book_interval_ms is not None:
        parts.append(f"--book-interval-ms {args.book_interval_ms:g}")
    if args.md_workers != 1:
        parts.append(f"--md-workers {args.md_workers}")
    return " ".join(parts)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", default="100,1000",
                   help="comma-separated subscriber counts (default 100,1000)")
    p.add_argument("--rate", type=float, default=2000.0, help="orders/s (default 2000)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--slow", choices=["both", "without", "with"], default="both",
                   help="run without and with the slow subscriber (default both)")
    p.add_argument("--slow-interval", type=float, default=1.0,
                   help="seconds the slow subscriber waits after each message (default 1)")
    p.add_argument("--procs", type=int, default=0,
                   help="subscriber processes (default: one per 250 subscribers, max 8)")
    p.add_argument("--streams-per-connection", type=int, default=1,
                   help="subscribers sharing one HTTP/2 connection (default 1)")
    p.add_argument("--accounts", type=int, default=8,
                   help="trading accounts, one order-entry session each (default 8)")
    p.add_argument("--entry", choices=["stream", "unary"], default="stream",
                   help="orders through OrderEntry sessions (default) or unary CreateOrder")
    p.add_argument("--linger-ms", type=float, default=10.0,
                   help="stream: orders due within this many ms share one OrderEntry message "
                        "(default 10; the arrival times, and latencies, stay per order)")
    p.add_argument("--client", choices=["raw", "grpc"], default="raw",
                   help="how the subscribers read: a minimal HTTP/2 reader on asyncio "
                        "(default; cheap, so they take less of the cores the server needs) "
                        "or grpc.aio (the slow subscriber always uses grpc.aio)")
    p.add_argument("--book-interval-ms", type=float, default=None,
                   help="market data's EXCHANGE_BOOK_UPDATE_INTERVAL in ms for the run "
                        "(default: the service's default)")
    p.add_argument("--md-workers", type=int, default=1,
                   help="market-data processes on the one port (EXCHANGE_MARKETDATA_WORKERS; "
                        "default 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", metavar="DIR",
                   help="record the market-data process with py-spy (native frames too, "
                        "which pauses it 50 times a second: profile in runs of their own) "
                        "during each load window; collapsed stacks in DIR, summarized by "
                        "python -m bench.fanout --summarize FILE")
    p.add_argument("--plot", action="store_true", help="also write a PNG of the lag percentiles")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    return p


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive shares of the functions in a py-spy raw (collapsed) profile."""
    self_n: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1]
                  + ")" if " (" in f else f for f in stack.split(";")]
        self_n[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    lines = [f"{path.name}: {total} samples", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in self_n.most_common(top)]
    lines += ["incl %  function"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--summarize"]:
        for name in argv[1:]:
            print(summarize_profile(Path(name)))
        return
    args = parser().parse_args(argv)
    runs = asyncio.run(main_async(args))
    print()
    print("delivery lag in ms: read time - publish stamp of the oldest stream entry in the "
          "delta; 'newest p99': from the delta's own time; cpu in cores over the load window "
          "('md' market data, 'us/msg' its CPU per message delivered, 'all' every process "
          "of the benchmark, 'other' the rest of the machine)")
    print(_table(runs))
    by_n: dict[int, dict[bool, dict]] = {}
    for r in runs:
        by_n.setdefault(r["subscribers"], {})[r["slow_subscriber"]] = r
    comparison = {}
    for n, pair in by_n.items():
        if False in pair and True in pair:
            a, b = pair[False]["lag_ms"], pair[True]["lag_ms"]
            comparison[str(n)] = {k: [a[k], b[k]] for k in ("p50_ms", "p99_ms", "max_ms")}
            print(f"{n} subscribers, others' lag without -> with the slow subscriber: "
                  f"p50 {a['p50_ms']} -> {b['p50_ms']} ms, p99 {a['p99_ms']} -> "
                  f"{b['p99_ms']} ms, max {a['max_ms']} -> {b['max_ms']} ms")
    if args.no_write:
        return
    figures = {"runs": runs,
               "slow_subscriber_comparison": comparison,
               "lag_definition": "read time - MarketDataBatch publish stamp of the oldest "
                                 "Redis entry covered by the delta (stamped by the matching "
                                 "pod right after the PostgreSQL commit)"}
    cmd = command_line(args)
    path = write_result("fanout", figures, cmd,
                        plot=(lambda png: _plot(runs, png)) if args.plot else None)
    print(f"written to {path}")
    if args.plot:
        print(f"plot: {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()

