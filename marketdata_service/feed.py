"""Keeps every instrument's market data current.

Start: load the instrument list and each instrument's initial state from PostgreSQL (retrying
until it works; ``ready`` is set then). Then one reader follows all the streams
``exchange:md:<instrument_id>`` with a blocking XREAD (COUNT 1000) from each instrument's last
applied entry. An entry whose first_sequence is the book's sequence + 1 is applied; one that is
already reflected is skipped; anything else is a gap (Redis lost entries, or a publish failed):
that instrument is rebuilt from PostgreSQL in the background (its stream is not read meanwhile)
and its subscribers are sent fresh snapshots. If Redis is down the reader retries with backoff
and the last state keeps being served. The instrument list is reloaded when it changes (a
change notification) and periodically, so an instrument added later is picked up, and a halt
shows in ListInstruments.

An outage (Redis, or PostgreSQL for the reloads and rebuilds) is logged once when it begins and
once when it ends. When tracing, applying a read's entries of one instrument (and handing the
changes to its subscribers) is one span ("apply"), in the trace of the first sampled entry's
commit (each entry carries its commit's traceparent) and linked to the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from exchange.matching.v1 import matching_pb2
from exchange_common import tracing
from exchange_common.streams import FIELD, STREAM_PREFIX, stream_key
from marketdata_service.market import Entry, InstrumentMarket
from marketdata_service.store import MarketStore
from marketdata_service.trades import TradeRecord

log = logging.getLogger(__name__)

APPLY_SPAN = "apply"


class Backoff:
    def __init__(self, first: float = 0.1, limit: float = 5.0) -> None:
        self.first = first
        self.limit = limit
        self.attempts = 0

    def next(self) -> float:
        delay = min(self.first * (2 ** self.attempts), self.limit)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


def _stream_entries(response) -> Iterable[tuple[bytes | str, list]]:
    """(key, entries) from an XREAD reply in either RESP2 (list) or RESP3 (dict) form."""
    if not response:
        return ()
    if isinstance(response, dict):
        return response.items()
    return ((key, entries) for key, entries in response)


def _parse(data: bytes | None) -> matching_pb2.MarketDataBatch | None:
    if data is None:
        return None
    try:
        return matching_pb2.MarketDataBatch.FromString(data)
    except DecodeError:
        return None


class MarketFeed:
    def __init__(self, store: MarketStore, redis: Redis, *, recent_trades: int,
                 book_interval: float = 0.0, interval_per_subscriber: float = 0.0,
                 block_ms: int = 1000, read_count: int = 1000,
                 reload_interval: float = 10.0, watchdog_interval: float = 2.0,
                 heartbeat: float = 1.0) -> None:
        self.store = store
        self.redis = redis
        self.recent_trades = recent_trades
        self.book_interval = book_interval
        self.interval_per_subscriber = interval_per_subscriber
        self.block_ms = block_ms
        self.read_count = read_count
        self.reload_interval = reload_interval
        self.watchdog_interval = watchdog_interval
        # A stream that sent nothing for this many seconds gets a heartbeat.
        self.heartbeat = heartbeat
        self.markets: dict[int, InstrumentMarket] = {}
        self.by_symbol: dict[str, InstrumentMarket] = {}
        # Set once every instrument's initial state is loaded.
        self.ready = asyncio.Event()
        self.redis_up = True
        # Set when the instruments table changed (a notification): reload at once.
        self.instruments_changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._prefix = STREAM_PREFIX.encode()
        # Instruments rebuilt from PostgreSQL since start.
        self.rebuilds = 0
        # Called with the seconds from each batch's publication to its application (the
        # service's metrics).
        self.on_lag: Callable[[float], None] = lambda seconds: None
        # Reloading the instrument list fails (logged when that begins and when it ends).
        self.reload_failing = False

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn(self._run(), "marketdata-feed")

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        for market in self.markets.values():
            market.close_subscribers()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = Backoff(limit=10.0)
        while True:
            try:
                await self.reload_instruments()
                break
            except Exception as err:  # noqa: BLE001 - any failure: keep trying, not ready yet
                delay = backoff.next()
                # Once: the end is the "loaded" line below.
                if backoff.attempts == 1:
                    log.warning("initial load from PostgreSQL failed (%r); retrying until it "
                                "works", err, exc_info=True)
                else:
                    log.debug("initial load failed again: %r", err)
                await asyncio.sleep(delay)
        log.info("market data loaded for %d instruments", len(self.markets))
        self.ready.set()
        self._spawn(self._reload_loop(), "marketdata-reload")
        self._spawn(self._watchdog_loop(), "marketdata-watchdog")
        self._spawn(self._tick_loop(), "marketdata-heartbeats")
        await self._read_loop()

    # -- instruments ------------------------------------------------------------------------

    async def reload_instruments(self) -> None:
        for spec in await self.store.instruments():
            market = self.markets.get(spec.instrument_id)
            if market is not None:
                if market.spec.symbol != spec.symbol:
                    self.by_symbol.pop(market.spec.symbol, None)
                    self.by_symbol[spec.symbol] = market
                market.update_spec(spec)
                continue
            state = await self.store.initial_state(spec.instrument_id, self.recent_trades)
            market = InstrumentMarket(spec, state, recent_trades=self.recent_trades,
                                      book_interval=self.book_interval,
                                      interval_per_subscriber=self.interval_per_subscriber)
            self.markets[spec.instrument_id] = market
            self.by_symbol[spec.symbol] = market
            if self.ready.is_set():
                log.info("new instrument %s at sequence %d", spec.symbol, state.sequence)

    async def _reload_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.instruments_changed.wait(), self.reload_interval)
            self.instruments_changed.clear()
            try:
                await self.reload_instruments()
            except Exception as err:  # noqa: BLE001
                if not self.reload_failing:
                    self.reload_failing = True
                    log.warning("reloading instruments failed (%r); keeping the current list",
                                err)
                continue
            if self.reload_failing:
                self.reload_failing = False
                log.info("reloading instruments works again")

    async def _watchdog_loop(self) -> None:
        """A book behind the committed sequence that made no progress for a whole
        interval missed entries that will never come (a publish lost with nothing
        after it): rebuild it from PostgreSQL."""
        seen: dict[int, int] = {}
        while True:
            await asyncio.sleep(self.watchdog_interval)
            try:
                committed = await self.store.committed_sequences()
            except Exception:  # noqa: BLE001 - PostgreSQL away: nothing to compare with
                continue
            for iid, market in self.markets.items():
                behind = committed.get(iid, 0) > market.sequence
                if behind and seen.get(iid) == market.sequence and not market.rebuilding:
                    log.warning("%s: stuck at sequence %d, committed %d; resynchronizing",
                                market.spec.symbol, market.sequence, committed[iid])
                    self.rebuild(market)
                seen[iid] = market.sequence

    async def _tick_loop(self) -> None:
        """Heartbeats (a stream idle for ``heartbeat`` seconds gets one within a quarter
        more) and the tickers' 24-hour windows moving on."""
        period = max(self.heartbeat / 4, 0.01)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            wall = time.time_ns()
            for market in self.markets.values():
                market.tick(now, wall, self.heartbeat)

    def market(self, symbol: str) -> InstrumentMarket | None:
        return self.by_symbol.get(symbol)

    # -- streams ----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        backoff = Backoff()
        while True:
            streams = {stream_key(iid): m.stream_pos for iid, m in self.markets.items()
                       if not m.rebuilding}
            if not streams:
                await asyncio.sleep(self.block_ms / 1000)
                continue
            try:
                response = await self.redis.xread(
                    streams, count=self.read_count, block=self.block_ms)  # type: ignore[arg-type]
            except (RedisError, OSError) as err:
                delay = backoff.next()
                if self.redis_up:
                    log.warning("reading streams from Redis failed (%s); serving the last "
                                "state, retrying", err)
                    self.redis_up = False
                await asyncio.sleep(delay)
                continue
            if not self.redis_up:
                # Entries may have been lost while it was away (or it came back
                # empty): resynchronize every book from PostgreSQL, which sends every
                # subscriber a fresh snapshot rather than leaving a silent gap.
                log.info("Redis is back; resynchronizing from PostgreSQL")
                self.redis_up = True
                for market in self.markets.values():
                    self.rebuild(market)
                continue
            backoff.reset()
            self.process(response)

    def process(self, response) -> None:
        """Apply one XREAD reply (synchronously: no other task sees a half-applied state)."""
        for key, entries in _stream_entries(response):
            raw = key if isinstance(key, bytes) else key.encode()
            if not raw.startswith(self._prefix):
                continue
            market = self.markets.get(int(raw[len(self._prefix):]))
            if market is None or market.rebuilding:
                continue
            parsed: list[Entry] = [(eid, _parse(fields.get(FIELD))) for eid, fields in entries]
            now = time.time_ns()
            for _, batch in parsed:
                if batch is not None and batch.time_unix_nanos:
                    self.on_lag(max(0, now - batch.time_unix_nanos) / 1e9)
            gap = self._apply_traced(market, parsed) if tracing.ENABLED else market.apply(parsed)
            if gap:
                self.rebuild(market)

    @staticmethod
    def _apply_traced(market: InstrumentMarket, parsed: list[Entry]) -> bool:
        """``market.apply(parsed)`` in its span (current meanwhile: a gap's log line
        carries its ids)."""
        batches = [batch for _, batch in parsed if batch is not None]
        commits = (tracing.parse_traceparent(b.traceparent) for b in batches if b.traceparent)
        attributes = {"exchange.instrument": market.spec.symbol, "exchange.batches": len(parsed)}
        if batches:
            attributes["exchange.sequence.first"] = batches[0].first_sequence
            attributes["exchange.sequence.last"] = batches[-1].last_sequence
        span = tracing.batch_span(APPLY_SPAN, commits, tracing.CONSUMER, attributes)
        with tracing.current(span):
            gap = market.apply(parsed)
        if gap:
            span.set_attribute("exchange.gap", True)
        span.end()
        return gap

    def rebuild(self, market: InstrumentMarket) -> None:
        """Rebuild ``market`` from PostgreSQL in the background; its stream is not read until
        that is done."""
        if market.rebuilding:
            return
        market.rebuilding = True
        self.rebuilds += 1
        self._spawn(self._rebuild(market), f"marketdata-rebuild-{market.instrument_id}")

    async def _rebuild(self, market: InstrumentMarket) -> None:
        # A gap right after a rebuild means PostgreSQL and the stream disagree (e.g. a stream
        # left over from another database): back off rather than spin.
        backoff = Backoff(first=0.1, limit=5.0)
        delay = 0.0 if market.consecutive_gaps <= 1 else min(
            0.1 * 2 ** (market.consecutive_gaps - 2), 5.0)
        try:
            while True:
                if delay:
                    await asyncio.sleep(delay)
                try:
                    state = await self.store.initial_state(market.instrument_id,
                                                           self.recent_trades)
                except Exception as err:  # noqa: BLE001
                    delay = backoff.next()
                    # Once per outage: its end is the "rebuilt" line (market.py).
                    if backoff.attempts == 1:
                        log.warning("rebuilding %s from PostgreSQL failed (%r); retrying "
                                    "until it works", market.spec.symbol, err)
                    else:
                        log.debug("rebuilding %s failed again: %r", market.spec.symbol, err)
                    continue
                market.reset(state)
                return
        finally:
            market.rebuilding = False

    # -- queries ----------------------------------------------------------------------------

    async def trades_page(self, market: InstrumentMarket, before_trade_id: int | None,
                          limit: int) -> list[TradeRecord]:
        """Up to ``limit`` trades older than ``before_trade_id``, newest first: from memory
        while the recent trades cover the page, else from PostgreSQL (never past the trades
        the served book reflects)."""
        page = market.trades.page(before_trade_id, limit)
        if page is not None:
            return page
        return await self.store.trades_before(market.instrument_id, before_trade_id,
                                              market.sequence, limit)

    def stats(self) -> dict[str, int]:
        return {
            "instruments": len(self.markets),
            "book_subscribers": sum(len(m.book_subscribers) for m in self.markets.values()),
            "trade_subscribers": sum(len(m.trade_subscribers) for m in self.markets.values()),
            "dropped_updates": sum(m.dropped for m in self.markets.values()),
        }
