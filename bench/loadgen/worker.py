"""One load-generator worker process: its own asyncio loop and gRPC channels.

The parent starts the workers (multiprocessing, ``spawn``), waits until each
says ``ready`` (channels connected, sessions open), then sets the common start
time ``t0`` (``time.monotonic``, which is system-wide on Linux) and the start
event. Each worker sends its share of the schedule (``spec.schedule``), sends
a progress message every second, and at the end one result message with its
histograms and counters.

Latency of an order = time its answer arrived - its *scheduled* send time.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import os
import random
import time
from typing import Any

import grpc

from bench.cpu import own_seconds
from bench.histogram import Histogram
from bench.loadgen.spec import RunSpec, schedule
from bench.orders import OrderMaker
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc

# Latencies in microseconds, up to 5 minutes.
HIST_MAX_US = 300_000_000
RESTING = (cpb.ORDER_STATE_NEW, cpb.ORDER_STATE_PARTIALLY_FILLED)
CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}
BIN = 0.1  # seconds per bin of the completion counters

CREATE, CANCEL = 0, 1
STATE_NAMES = {v: k for k, v in cpb.OrderState.items()}


def new_hist(digits: int = 3) -> Histogram:
    return Histogram(HIST_MAX_US, digits)


def channel_options(index: int) -> list[tuple[str, Any]]:
    return [
        # A connection of its own for each channel (not a shared subchannel).
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.primary_user_agent", f"bench-loadgen/{index}"),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


class Session:
    """One OrderEntry session (one account): a writer task, a reader task."""

    def __init__(self, worker: Worker, stub: opb_grpc.OrderServiceStub, key: str,
                 index: int) -> None:
        self.worker = worker
        self.stub = stub
        self.key = key
        self.index = index
        self.meta = (("x-api-key", key),)
        # client_order_id -> (kind, scheduled time, order index)
        self.pending: dict[str, tuple[int, float, int]] = {}
        self.buf: list[opb.OrderEntryCommand] = []
        self.buf_since = 0.0
        self.queue: asyncio.Queue[opb.OrderEntryRequest | None] = asyncio.Queue()
        self.call = None
        self.tasks: list[asyncio.Task] = []
        self.restarts = 0
        self.closed = False

    def open(self) -> None:
        self.call = self.stub.OrderEntry(metadata=self.meta)
        self.queue = asyncio.Queue()
        self.tasks = [asyncio.create_task(self._write(self.call, self.queue)),
                      asyncio.create_task(self._read(self.call))]

    async def _write(self, call, queue: asyncio.Queue) -> None:
        w = self.worker
        try:
            while True:
                msg = await queue.get()
                if msg is None:
                    await call.done_writing()
                    return
                await call.write(msg)
                w.messages_sent += 1
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            return  # the reader sees the failure

    async def _read(self, call) -> None:
        w = self.worker
        try:
            async for response in call:
                now = time.monotonic()
                w.responses_received += 1
                for event in response.events:
                    entry = self.pending.pop(event.client_order_id, None)
                    if entry is None:
                        w.unmatched += 1
                        continue
                    kind, ts, idx = entry
                    if event.HasField("error"):
                        w.failed(kind, ts, now, CODE_NAMES.get(event.error.code,
                                                               str(event.error.code)),
                                 event.error.message, idx)
                    else:
                        w.succeeded(kind, ts, now, idx, event.order, self)
            code = None
            detail = ""
        except grpc.aio.AioRpcError as err:
            code, detail = err.code().name, err.details() or ""
        except asyncio.CancelledError:
            raise
        if self.closed and not self.pending:
            return
        # The session ended with commands unanswered: they failed with its code.
        now = time.monotonic()
        lost, self.pending = self.pending, {}
        for kind, ts, idx in lost.values():
            w.failed(kind, ts, now, code or "STREAM_ENDED", detail, idx)
        w.session_failures += 1
        if not self.closed and self.restarts < 20:
            self.restarts += 1
            await asyncio.sleep(0.2)
            if not self.closed:
                self.open()

    def submit(self, command: opb.OrderEntryCommand, coid: str, kind: int, ts: float,
               idx: int) -> None:
        self.pending[coid] = (kind, ts, idx)
        if not self.buf:
            self.buf_since = time.monotonic()
        self.buf.append(command)
        if len(self.buf) >= self.worker.spec.batch:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.worker.commands_sent += len(self.buf)
            self.queue.put_nowait(opb.OrderEntryRequest(commands=self.buf))
            self.buf = []

    async def close(self) -> None:
        self.closed = True
        self.flush()
        self.queue.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 5)
        if self.call is not None:
            self.call.cancel()


class Worker:
    def __init__(self, spec: RunSpec, wid: int, out_q, start_evt, t0_val, abort_evt) -> None:
        self.spec = spec
        self.wid = wid
        self.out_q = out_q
        self.start_evt = start_evt
        self.t0_val = t0_val
        self.abort_evt = abort_evt
        self.t0 = 0.0
        self.maker = OrderMaker(spec.mix, spec.seed * 1_000_003 + wid)
        self.rng = random.Random(spec.seed * 7919 + wid)
        # figures
        self.hist = {CREATE: new_hist(), CANCEL: new_hist()}
        self.interval = new_hist(2)  # since the last progress message
        self.per_second: dict[int, Histogram] = {}  # creates, by scheduled second
        self.done_bins: collections.Counter[int] = collections.Counter()  # by completion time
        self.ok_bins: collections.Counter[int] = collections.Counter()  # creates answered OK
        self.ok_ops_bins: collections.Counter[int] = collections.Counter()  # all answered OK
        self.sent_seconds: collections.Counter[int] = collections.Counter()
        self.err_seconds: collections.Counter[int] = collections.Counter()  # by scheduled s
        self.errors: collections.Counter[str] = collections.Counter()
        self.error_examples: dict[str, str] = {}  # code -> the first message seen
        self.states: collections.Counter[str] = collections.Counter()
        self.issued = {CREATE: 0, CANCEL: 0}
        self.done = {CREATE: 0, CANCEL: 0}
        self.ok = {CREATE: 0, CANCEL: 0}
        self.cancel_too_late = 0
        self.cancels_waiting = 0
        self.acked = array.array("q")
        self.messages_sent = 0
        self.commands_sent = 0
        self.responses_received = 0
        self.unmatched = 0
        self.session_failures = 0
        self.late_issues = 0  # orders issued > 10 ms after their scheduled time
        self.max_issue_lag = 0.0
        self.sessions: list[Session] = []
        self.stubs: list[opb_grpc.OrderServiceStub] = []
        self.channels: list[grpc.aio.Channel] = []
        self.sem: asyncio.Semaphore | None = None
        self.aborted = False
        self.finished = False  # after the drain: outcomes no longer count
        self.metas = [(("x-api-key", k),) for k in spec.keys]
        # Per instrument (index into spec.markets): creates sent, their latency,
        # those answered OK (by completion bin) and those that failed.
        n = max(1, len(spec.markets))
        self.inst_sent = [0] * n
        self.inst_hist = [new_hist(2) for _ in range(n)]
        self.inst_ok_bins: list[collections.Counter[int]] = [collections.Counter()
                                                             for _ in range(n)]
        self.inst_errors = [0] * n

    # -- outcomes ------------------------------------------------------------

    def _record(self, kind: int, ts: float, now: float, ok: bool,
                idx: int | None = None) -> None:
        if self.finished:
            return  # counted as NO_ANSWER already
        us = max(1, int((now - ts) * 1e6))
        if kind == CREATE and idx is not None:
            m = idx % len(self.inst_hist)
            self.inst_hist[m].record(us)
            if ok:
                self.inst_ok_bins[m][int((now - self.t0) / BIN)] += 1
            else:
                self.inst_errors[m] += 1
        self.hist[kind].record(us)
        self.interval.record(us)
        if kind == CREATE:
            sec = int(ts - self.t0)
            h = self.per_second.get(sec)
            if h is None:
                h = self.per_second[sec] = new_hist(2)
            h.record(us)
        self.done[kind] += 1
        b = int((now - self.t0) / BIN)
        self.done_bins[b] += 1
        if ok:
            self.ok[kind] += 1
            self.ok_ops_bins[b] += 1
            if kind == CREATE:
                self.ok_bins[b] += 1

    def failed(self, kind: int, ts: float, now: float, code: str, detail: str = "",
               idx: int | None = None) -> None:
        if self.finished:
            return
        if detail and len(self.error_examples) < 20:
            self.error_examples.setdefault(code, detail[:300])
        if kind == CANCEL and code == "FAILED_PRECONDITION":
            # Filled (or expired) before the cancel reached it: a normal outcome.
            self.cancel_too_late += 1
            self._record(kind, ts, now, True)
            return
        self.errors[("cancel " if kind == CANCEL else "") + code] += 1
        self.err_seconds[int(ts - self.t0)] += 1
        self._record(kind, ts, now, False, idx)

    def succeeded(self, kind: int, ts: float, now: float, idx: int, order: opb.Order,
                  session: Session | None, meta=None) -> None:
        if self.finished:
            return
        self._record(kind, ts, now, True, idx)
        if kind == CANCEL:
            self.states["cancel->" + STATE_NAMES.get(order.state, str(order.state))] += 1
            return
        self.acked.append(idx)
        self.states[STATE_NAMES.get(order.state, str(order.state))] += 1
        mix = self.spec.mix
        if (mix.cancel_fraction > 0 and order.state in RESTING
                and self.rng.random() < mix.cancel_fraction):
            due = now + mix.cancel_delay_ms / 1000.0
            self.cancels_waiting += 1
            asyncio.get_running_loop().call_at(
                due, self._cancel, due, idx, order.order_id, order.client_order_id,
                session, meta)

    # -- sending -----------------------------------------------------------------

    def coid(self, idx: int) -> str:
        return f"{self.spec.tag}-{self.wid}-{idx}"

    def issue_create(self, ts: float, idx: int) -> None:
        self.issued[CREATE] += 1
        coid = self.coid(idx)
        markets = self.spec.markets
        self.inst_sent[idx % len(markets)] += 1
        request = self.maker.create(coid, markets[idx % len(markets)])
        if self.spec.mode == "unary":
            meta = self.metas[self.rng.randrange(len(self.metas))]
            stub = self.stubs[idx % len(self.stubs)]
            asyncio.get_running_loop().create_task(
                self._unary(CREATE, stub.CreateOrder, request, meta, ts, idx))
        else:
            session = self.sessions[idx % len(self.sessions)]
            session.submit(opb.OrderEntryCommand(create=request), coid, CREATE, ts, idx)

    def _cancel(self, ts: float, idx: int, order_id: str, coid: str, session: Session | None,
                meta) -> None:
        self.cancels_waiting -= 1
        self.issued[CANCEL] += 1
        if session is None:
            stub = self.stubs[idx % len(self.stubs)]
            request = opb.CancelOrderRequest(order_id=order_id)
            asyncio.get_running_loop().create_task(
                self._unary(CANCEL, stub.CancelOrder, request, meta, ts, idx))
        else:
            # By client_order_id: an error answer then still names the order.
            session.submit(opb.OrderEntryCommand(
                cancel=opb.CancelOrderRequest(client_order_id=coid)), coid, CANCEL, ts, idx)

    async def _unary(self, kind: int, method, request, meta, ts: float, idx: int) -> None:
        assert self.sem is not None
        async with self.sem:
            try:
                response = await method(request, metadata=meta, timeout=self.spec.timeout)
            except grpc.aio.AioRpcError as err:
                self.failed(kind, ts, time.monotonic(), err.code().name, err.details() or "",
                            idx)
                return
        self.succeeded(kind, ts, time.monotonic(), idx, response.order, None, meta)

    # -- the run -------------------------------------------------------------------

    async def setup(self) -> None:
        spec = self.spec
        self.sem = asyncio.Semaphore(spec.max_inflight)
        for i in range(max(1, spec.channels)):
            ch = grpc.aio.insecure_channel(spec.addr, options=channel_options(
                self.wid * 100 + i))
            await asyncio.wait_for(ch.channel_ready(), 15)
            self.channels.append(ch)
            self.stubs.append(opb_grpc.OrderServiceStub(ch))
        if spec.mode == "stream":
            mine = [s for s in range(max(spec.sessions, spec.procs))
                    if s % spec.procs == self.wid]
            for n, s in enumerate(mine):
                session = Session(self, self.stubs[n % len(self.stubs)],
                                  spec.keys[s % len(spec.keys)], s)
                session.open()
                self.sessions.append(session)

    def inflight(self) -> int:
        return sum(self.issued.values()) - sum(self.done.values())

    def progress(self) -> dict:
        msg = {"wid": self.wid, "issued": self.issued[CREATE] + self.issued[CANCEL],
               "done": self.done[CREATE] + self.done[CANCEL],
               "ok": self.ok[CREATE] + self.ok[CANCEL],
               "errors": sum(self.errors.values()), "inflight": self.inflight(),
               "hist": self.interval.encode()}
        self.interval.reset()
        return msg

    async def progress_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.out_q.put(("progress", self.progress()))
            if self.abort_evt.is_set():
                self.aborted = True

    async def run(self) -> dict:
        spec = self.spec
        await self.setup()
        self.out_q.put(("ready", {"wid": self.wid, "pid": os.getpid()}))
        while not self.start_evt.is_set():
            await asyncio.sleep(0.005)
        self.t0 = self.t0_val.value
        cpu0 = own_seconds()
        reporter = asyncio.create_task(self.progress_loop())
        await asyncio.sleep(max(0.0, self.t0 - time.monotonic()))
        stream = spec.mode == "stream"
        linger = spec.linger_ms / 1000.0
        times = schedule(spec.segments, self.wid, spec.procs)
        nxt = next(times, None)
        idx = 0
        while nxt is not None and not self.aborted:
            now = time.monotonic()
            rel = now - self.t0
            burst = 0
            while nxt is not None and nxt <= rel and burst < 2000:
                lag = rel - nxt
                if lag > 0.010:
                    self.late_issues += 1
                    if lag > self.max_issue_lag:
                        self.max_issue_lag = lag
                self.sent_seconds[int(nxt)] += 1
                self.issue_create(self.t0 + nxt, idx)
                idx += 1
                burst += 1
                nxt = next(times, None)
            if stream and linger > 0:
                for s in self.sessions:
                    if s.buf and now - s.buf_since >= linger:
                        s.flush()
            if nxt is None:
                break
            await asyncio.sleep(max(0.0, min(self.t0 + nxt - time.monotonic(), 0.005)))
        # Drain: answers to what was sent, and the cancels still to come.
        deadline = time.monotonic() + spec.drain_timeout
        while (self.inflight() > 0 or self.cancels_waiting > 0) and time.monotonic() < deadline:
            for s in self.sessions:
                s.flush()
            await asyncio.sleep(0.01)
        now = time.monotonic()
        for s in self.sessions:
            s.closed = True
            lost, s.pending = s.pending, {}
            for kind, ts, i in lost.values():
                self.failed(kind, ts, now, "NO_ANSWER", "", i)
        await asyncio.gather(*(s.close() for s in self.sessions))
        unanswered = self.inflight()  # unary calls still open after the drain
        if unanswered > 0:
            self.errors["NO_ANSWER"] += unanswered
        self.finished = True
        reporter.cancel()
        cpu1 = own_seconds()
        for ch in self.channels:
            await ch.close()
        return self.result(idx, cpu1 - cpu0)

    def result(self, created: int, cpu: float) -> dict:
        return {
            "wid": self.wid,
            "hist_create": self.hist[CREATE].encode(),
            "hist_cancel": self.hist[CANCEL].encode(),
            "per_second": {s: h.encode() for s, h in self.per_second.items()},
            "done_bins": dict(self.done_bins),
            "ok_bins": dict(self.ok_bins),
            "ok_ops_bins": dict(self.ok_ops_bins),
            "sent_seconds": dict(self.sent_seconds),
            "err_seconds": dict(self.err_seconds),
            "errors": dict(self.errors),
            "error_examples": self.error_examples,
            "states": dict(self.states),
            "issued_create": self.issued[CREATE], "issued_cancel": self.issued[CANCEL],
            "done_create": self.done[CREATE], "done_cancel": self.done[CANCEL],
            "ok_create": self.ok[CREATE], "ok_cancel": self.ok[CANCEL],
            "cancel_too_late": self.cancel_too_late,
            "acked": self.acked.tobytes(),
            "messages_sent": self.messages_sent, "commands_sent": self.commands_sent,
            "responses_received": self.responses_received,
            "unmatched": self.unmatched, "session_failures": self.session_failures,
            "late_issues": self.late_issues, "max_issue_lag": self.max_issue_lag,
            "aborted": self.aborted, "cpu_seconds": cpu,
            "inst_sent": self.inst_sent,
            "inst_hist": [h.encode() for h in self.inst_hist],
            "inst_ok_bins": [dict(c) for c in self.inst_ok_bins],
            "inst_errors": self.inst_errors,
        }


def worker_main(spec_dict: dict, wid: int, out_q, start_evt, t0_val, abort_evt) -> None:
    """Entry point of a worker process."""
    spec = RunSpec.from_dict(spec_dict)
    try:
        result = asyncio.run(Worker(spec, wid, out_q, start_evt, t0_val, abort_evt).run())
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        import traceback

        out_q.put(("failed", {"wid": wid, "error": repr(err),
                              "traceback": traceback.format_exc()}))
        raise SystemExit(1) from None
    out_q.put(("result", result))
