"""One timed run: start the workers, show progress, sample CPU, compute the figures."""

from __future__ import annotations

import array
import math
import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.cpu import CpuProbe, Group, Sample
from bench.histogram import Histogram
from bench.loadgen.spec import RunSpec
from bench.loadgen.worker import BIN, HIST_MAX_US, new_hist, worker_main

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99_9", 99.9))


def percentiles_ms(h: Histogram) -> dict[str, float | None]:
    """Microseconds in, milliseconds out: P50 ... P99.9, max and count."""
    return h.percentiles(PERCENTILES, divisor=1000) | {"count": h.count}


def _merge(encoded: list[bytes], digits: int = 3) -> Histogram:
    return Histogram.merged(encoded, HIST_MAX_US, digits)


class Progress:
    """The live progress line (a rewritten line on a terminal, else one line
    every ``every`` seconds)."""

    def __init__(self, label: str, every: float = 5.0, stream=sys.stderr) -> None:
        self.label = label
        self.tty = stream.isatty()
        self.stream = stream
        self.every = 1.0 if self.tty else every
        self.last_print = 0.0
        self.so_far = new_hist(2)
        self.workers: dict[int, dict] = {}
        self.done_hist: list[tuple[float, int]] = []  # (time, total done)

    def update(self, msg: dict) -> None:
        self.workers[msg["wid"]] = msg
        self.so_far.add_encoded(msg["hist"])

    def line(self, t: float, target: float) -> str:
        done = sum(m["done"] for m in self.workers.values())
        issued = sum(m["issued"] for m in self.workers.values())
        errors = sum(m["errors"] for m in self.workers.values())
        inflight = sum(m["inflight"] for m in self.workers.values())
        now = time.monotonic()
        self.done_hist.append((now, done))
        while len(self.done_hist) > 2 and now - self.done_hist[0][0] > 3.0:
            self.done_hist.pop(0)
        (t_a, d_a), (t_b, d_b) = self.done_hist[0], self.done_hist[-1]
        rate = (d_b - d_a) / (t_b - t_a) if t_b > t_a else 0.0
        p99 = self.so_far.value_at(99) / 1000.0 if self.so_far.count else 0.0
        return (f"[{self.label}] {t:5.1f}s  rate {rate:7.0f}/s (target {target:.0f})  "
                f"sent {issued}  done {done}  in flight {inflight}  errors {errors}  "
                f"p99 so far {p99:.1f} ms")

    def maybe_print(self, t: float, target: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_print < self.every:
            return
        self.last_print = now
        text = self.line(t, target)
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def windows_of(spec: RunSpec) -> list[tuple[str, float, float]]:
    """CPU windows: the steady state of a constant run; each step of a ramp
    (after its first two seconds)."""
    if spec.ramp:
        return [(f"{s.rate:.0f}/s", s.start + min(2.0, (s.end - s.start) / 5), s.end)
                for s in spec.segments]
    return [("steady", spec.warmup, spec.duration)]


def rate_at(spec: RunSpec, t: float) -> float:
    for s in spec.segments:
        if s.start <= t < s.end:
            return s.rate
    return 0.0


def run(spec: RunSpec, groups: list[Group], check_alive: Callable[[], None]) -> dict:
    """Run ``spec`` and return its figures (and ``_acked``: the client_order_ids
    acknowledged, for the durability check)."""
    ctx = mp.get_context("spawn")
    out_q = ctx.Queue()
    start_evt, abort_evt = ctx.Event(), ctx.Event()
    t0_val = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=worker_main, daemon=True,
                         args=(spec.to_dict(), w, out_q, start_evt, t0_val, abort_evt),
                         name=f"loadgen-{w}")
             for w in range(spec.procs)]
    for p in procs:
        p.start()
    try:
        return _run(spec, groups, check_alive, procs, out_q, start_evt, abort_evt, t0_val)
    finally:
        abort_evt.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)


def _get(out_q, timeout: float):
    try:
        return out_q.get(timeout=max(0.001, timeout))
    except queue.Empty:
        return None


def _run(spec, groups, check_alive, procs, out_q, start_evt, abort_evt, t0_val) -> dict:
    worker_pids: list[int] = []
    deadline = time.monotonic() + 60
    while len(worker_pids) < spec.procs:
        msg = _get(out_q, 0.5)
        if msg is not None and msg[0] == "ready":
            worker_pids.append(msg[1]["pid"])
        elif msg is not None and msg[0] == "failed":
            raise RuntimeError(f"worker failed to start: {msg[1]['traceback']}")
        if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
            raise RuntimeError("load-generator workers did not get ready")
    probe = CpuProbe([*groups, Group("loadgen", [os.getpid(), *worker_pids], server=False)])
    windows = windows_of(spec)
    points = sorted({w[1] for w in windows} | {w[2] for w in windows})
    samples: dict[float, Sample] = {}

    t0 = time.monotonic() + 0.3
    t0_val.value = t0
    start_evt.set()
    progress = Progress(spec.label)
    results: dict[int, dict] = {}
    end_by = t0 + spec.duration + spec.drain_timeout + 30
    ramp_state = RampState()
    last_alive_check = 0.0
    while len(results) < spec.procs:
        now = time.monotonic()
        pending = [p for p in points if p not in samples]
        next_point = t0 + pending[0] if pending else now + 0.5
        msg = _get(out_q, min(0.25, next_point - now))
        now = time.monotonic()
        for p in [p for p in points if p not in samples]:
            if now >= t0 + p:
                samples[p] = probe.sample()
        if msg is not None:
            kind, body = msg
            if kind == "progress":
                progress.update(body)
                if spec.ramp:
                    _ramp_watch(spec, ramp_state, body, now - t0, abort_evt)
            elif kind == "result":
                results[body["wid"]] = body
            elif kind == "failed":
                raise RuntimeError(f"worker {body['wid']} failed: {body['traceback']}")
        t = now - t0
        if t >= 0:
            progress.maybe_print(t, rate_at(spec, t))
        if now - last_alive_check > 1.0:
            last_alive_check = now
            check_alive()
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead and len(results) < spec.procs:
                raise RuntimeError(f"worker {dead[0].name} exited with {dead[0].exitcode}")
        if now > end_by:
            raise RuntimeError("workers did not finish in time")
    for p in points:  # the workers may finish a moment before the window's end
        if p not in samples and t0 + p <= time.monotonic() + 1.0:
            time.sleep(max(0.0, t0 + p - time.monotonic()))
            samples[p] = probe.sample()
    # (after a ramp stopped early, the later windows have no samples: left out)
    progress.maybe_print(time.monotonic() - t0, spec.segments[-1].rate, force=True)
    progress.finish()
    return figures(spec, list(results.values()), probe, samples, windows)


@dataclass
class RampState:
    """What the ramp watch has seen: the step it judges and its answers so far."""

    step: int = 0
    hist: Histogram = field(default_factory=lambda: new_hist(2))
    fails: int = 0
    aborted: bool = False


def _ramp_watch(spec: RunSpec, state: RampState, body: dict, t: float, abort_evt) -> None:
    """Stop a ramp after two steps in a row clearly failed: P99 of the answers
    received during the step over twice the bound, or a third of the step's
    orders unanswered. (The steps are judged properly at the end, by
    scheduled second.)"""
    segs = spec.segments
    i = state.step
    if i >= len(segs) or state.aborted:
        return
    state.hist.add_encoded(body["hist"])
    if t >= segs[i].end + 1.0:
        h = state.hist
        p99 = h.value_at(99) / 1000.0 if h.count else 0.0
        scheduled = (segs[i].end - segs[i].start) * segs[i].rate
        # Full messages of N commands wait to fill: at a low rate that alone
        # can pass the bound, and a higher rate may still pass it.
        fill_ms = 0.0
        if spec.mode == "stream" and spec.batch > 1 and spec.linger_ms <= 0:
            fill_ms = spec.batch * spec.sessions / segs[i].rate * 1000.0
        bad = (p99 > spec.p99_bound_ms * 2 + 2 * fill_ms
               or h.count < scheduled * 2 / 3)
        state.fails = state.fails + 1 if bad else 0
        if state.fails >= 2:
            state.aborted = True
            abort_evt.set()
        state.step = i + 1
        state.hist = new_hist(2)


def _bins_sum(bins: dict[int, int], a: float, b: float) -> int:
    lo, hi = round(a / BIN), round(b / BIN)
    return sum(v for k, v in bins.items() if lo <= k < hi)


def figures(spec: RunSpec, results: list[dict], probe: CpuProbe, samples: dict[float, Sample],
            windows: list[tuple[str, float, float]]) -> dict:
    def total(key: str) -> int:
        return sum(r[key] for r in results)

    def merged_counter(key: str) -> dict:
        out: dict = {}
        for r in results:
            for k, v in r[key].items():
                out[k] = out.get(k, 0) + v
        return out

    create = _merge([r["hist_create"] for r in results])
    cancel = _merge([r["hist_cancel"] for r in results])
    done_bins, ok_bins = merged_counter("done_bins"), merged_counter("ok_bins")
    ok_ops_bins = merged_counter("ok_ops_bins")
    sent_seconds, err_seconds = merged_counter("sent_seconds"), merged_counter("err_seconds")
    per_second_enc: dict[int, list[bytes]] = {}
    for r in results:
        for s, e in r["per_second"].items():
            per_second_enc.setdefault(int(s), []).append(e)
    errors = merged_counter("errors")
    n_seconds = math.ceil(spec.duration)
    series = []
    for s in range(n_seconds):
        h = _merge(per_second_enc.get(s, []), 2)
        pct = percentiles_ms(h)
        series.append({"t": s, "target": rate_at(spec, s + 0.5),
                       "sent": sent_seconds.get(s, 0),
                       "ops": _bins_sum(done_bins, s, s + 1),
                       "ok": _bins_sum(ok_bins, s, s + 1),
                       "errors": err_seconds.get(s, 0),
                       "p50": pct["p50"], "p90": pct["p90"], "p99": pct["p99"],
                       "max": pct["max"]})

    cpu_windows: list[dict[str, Any]] = []
    server_names = probe.server_names()
    for name, a, b in windows:
        if a not in samples or b not in samples:
            continue
        usage = probe.usage(samples[a], samples[b])
        seconds = samples[b].at - samples[a].at
        # Per operation done: creates and cancels answered OK (an error,
        # e.g. a call shed by an overloaded server, is not an order done).
        ops = _bins_sum(ok_ops_bins, a, b)
        server = sum(usage[n] for n in server_names)
        cpu_windows.append({
            "window": name, "from_s": round(a, 2), "to_s": round(b, 2),
            "seconds": round(seconds, 3), "operations": ops,
            "answered": _bins_sum(done_bins, a, b),
            "rate": round(ops / seconds, 1) if seconds else 0.0,
            "cpu_seconds": {k: round(v, 3) for k, v in usage.items()},
            "cpu_cores": {k: round(v / seconds, 3) for k, v in usage.items()} if seconds else {},
            # Not in "other" (bench.cpu): what the hypervisor took from the machine.
            "machine_steal_cores": (round(probe.steal(samples[a], samples[b]) / seconds, 3)
                                    if seconds else None),
            "server_cpu_seconds": round(server, 3),
            "server_cpu_per_op_us": (round(server / ops * 1e6, 1)
                                     if ops and server_names else None),
            "loadgen_cpu_per_op_us": round(usage["loadgen"] / ops * 1e6, 1) if ops else None,
        })

    acked: set[str] = set()
    for r in results:
        idx = array.array("q")
        idx.frombytes(r["acked"])
        prefix = f"{spec.tag}-{r['wid']}-"
        acked.update(prefix + str(i) for i in idx)

    out: dict[str, Any] = {
        "label": spec.label, "target": spec.target, "mode": spec.mode,
        "batch": spec.batch if spec.mode == "stream" else None,
        "mix": spec.mix.name, "procs": spec.procs,
        "sessions": spec.sessions if spec.mode == "stream" else None,
        "duration_s": spec.duration, "warmup_s": spec.warmup,
        "rate_target": spec.segments[0].rate if not spec.ramp else None,
        "creates": {"sent": total("issued_create"), "answered": total("done_create"),
                    "ok": total("ok_create"), "latency_ms": percentiles_ms(create)},
        "cancels": {"sent": total("issued_cancel"), "answered": total("done_cancel"),
                    "ok": total("ok_cancel"), "too_late": total("cancel_too_late"),
                    "latency_ms": percentiles_ms(cancel)},
        "errors": errors, "error_count": sum(errors.values()),
        "error_examples": {k: v for r in results for k, v in r["error_examples"].items()},
        "states": merged_counter("states"),
        "messages_sent": total("messages_sent"), "commands_sent": total("commands_sent"),
        "responses_received": total("responses_received"),
        "unmatched_answers": total("unmatched"), "session_failures": total("session_failures"),
        "generator": {"late_issues": total("late_issues"),
                      "max_issue_lag_ms": round(max(r["max_issue_lag"] for r in results) * 1e3,
                                                1),
                      "aborted": any(r["aborted"] for r in results)},
        "cpu": cpu_windows,
        "per_second": series,
        "_acked": acked,
    }
    if out["messages_sent"]:
        out["commands_per_message"] = round(out["commands_sent"] / out["messages_sent"], 2)
    if cpu_windows and not spec.ramp:
        w = cpu_windows[0]
        out["rate_achieved"] = round(_bins_sum(ok_bins, w["from_s"], w["to_s"])
                                     / (w["to_s"] - w["from_s"]), 1)
        out["server_cpu_per_op_us"] = w["server_cpu_per_op_us"]
        out["loadgen_cpu_per_op_us"] = w["loadgen_cpu_per_op_us"]
    if not spec.ramp:
        # Creates scheduled in the steady window (from the warm-up on), as the CPU.
        out["creates"]["steady_latency_ms"] = percentiles_ms(_merge(
            [e for s, es in per_second_enc.items() if s >= spec.warmup for e in es], 2))
        out["creates"]["steady_sent"] = sum(v for s, v in sent_seconds.items()
                                            if int(s) >= spec.warmup)
        out["creates"]["steady_errors"] = sum(v for s, v in err_seconds.items()
                                              if int(s) >= spec.warmup)
    if spec.ramp:
        out["ramp"] = ramp_steps(spec, per_second_enc, ok_bins, err_seconds, cpu_windows)
    out["instruments"] = per_instrument(spec, results, cpu_windows)
    return out


def per_instrument(spec: RunSpec, results: list[dict], cpu_windows: list[dict]) -> list[dict]:
    """Per instrument of ``spec.markets``: creates sent, answered OK, failed, their
    latency (from the scheduled send time, as the aggregate's) and, for a constant
    run, the acknowledged orders/s over the steady window."""
    out = []
    window = cpu_windows[0] if cpu_windows and not spec.ramp else None
    for m, market in enumerate(spec.markets):
        encoded = [r["inst_hist"][m] for r in results if m < len(r.get("inst_hist", []))]
        bins: dict[int, int] = {}
        for r in results:
            if m < len(r.get("inst_ok_bins", [])):
                for k, v in r["inst_ok_bins"][m].items():
                    bins[int(k)] = bins.get(int(k), 0) + v
        row: dict[str, Any] = {
            "symbol": market.symbol,
            "sent": sum(r["inst_sent"][m] for r in results if m < len(r.get("inst_sent", []))),
            "ok": sum(bins.values()),
            "errors": sum(r["inst_errors"][m] for r in results
                          if m < len(r.get("inst_errors", []))),
            "latency_ms": percentiles_ms(_merge(encoded, 2)),
        }
        if window is not None and window["to_s"] > window["from_s"]:
            row["rate_achieved"] = round(_bins_sum(bins, window["from_s"], window["to_s"])
                                         / (window["to_s"] - window["from_s"]), 1)
        out.append(row)
    return out


def ramp_steps(spec: RunSpec, per_second_enc, ok_bins, err_seconds, cpu_windows) -> dict:
    """Judge each step by scheduled second: kept (no errors, >= 95% answered
    OK, >= 99% answered at all) and within the bound (kept, and P99 <= bound)."""
    steps = []
    best = sustained = None
    failed = lost = False
    cpu_by_name = {w["window"]: w for w in cpu_windows}
    for seg in spec.segments:
        # The run's first seconds (cold caches, connections) are not judged.
        first = max(seg.start, min(spec.warmup, seg.end - 1))
        secs = range(int(first), int(math.ceil(seg.end)))
        enc = [e for s in secs for e in per_second_enc.get(s, [])]
        if not enc:
            break
        h = _merge(enc, 2)
        pct = percentiles_ms(h)
        achieved = _bins_sum(ok_bins, first, seg.end) / (seg.end - first)
        errs = sum(err_seconds.get(s, 0) for s in secs)
        scheduled = (seg.end - first) * seg.rate
        kept = (errs == 0 and achieved >= 0.95 * seg.rate
                and h.count >= 0.99 * scheduled)
        ok = kept and pct["p99"] is not None and pct["p99"] <= spec.p99_bound_ms
        w = cpu_by_name.get(f"{seg.rate:.0f}/s", {})
        steps.append({"rate": seg.rate, "achieved": round(achieved, 1), "p50": pct["p50"],
                      "p99": pct["p99"], "max": pct["max"], "errors": errs, "kept": kept,
                      "pass": ok, "server_cpu_per_op_us": w.get("server_cpu_per_op_us"),
                      "loadgen_cpu_per_op_us": w.get("loadgen_cpu_per_op_us")})
        if ok and not failed:
            best = seg.rate
        failed = failed or not ok
        if kept and not lost:
            sustained = seg.rate
        lost = lost or not kept
    return {"p99_bound_ms": spec.p99_bound_ms, "highest_rate_within_bound": best,
            "highest_rate_sustained": sustained, "steps": steps}
