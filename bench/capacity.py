"""``python -m bench.capacity``: capacity figures (issue 15), and the cost they imply.

Three commands::

    python -m bench.capacity orders --configs 1x1,2x1,4x1,2x2,4x2,4x4
    python -m bench.capacity fanout --md-workers 1,2 --subscribers 250,500,1000,2000,4000
    python -m bench.capacity report [FILES] [--into bench/RESULTS.md]

``orders``: for each configuration ``NxK`` (N instruments, from BTC-USD, ETH-USD,
CAP3-USD, CAP4-USD, over K matching pods; ``bench.loadgen --instruments N
--matching-pods K``), on a fresh exchange of its own each time (embedded PostgreSQL and
Redis, every service a process, as ``bench.loadgen``):

1. a ramp of the seed mix spread evenly over the N instruments, from ``--ramp-start``
   by ``--ramp-step`` orders/s every ``--step-seconds``, open loop (latency from the
   scheduled send time); it stops after two steps in a row with P99 over the bound
   (or a third of a step unanswered);
2. each step is judged: it passes with P99 <= ``--p99-bound-ms``, at least 95% of its
   scheduled orders acknowledged, and errors (overload refusals included) at most
   ``--max-error-fraction`` of them; the candidate is the highest step before the
   first failing one;
3. a confirmation run at the candidate rate for ``--confirm-seconds`` (after
   ``--warmup`` seconds not counted), on a fresh exchange, judged the same way over its
   steady window; if it fails, one step lower, at most ``--retries`` times. The
   capacity is the rate that passed its confirmation, and the CPU per order of that run
   (every process: each matching pod, the order service with its workers, market data,
   PostgreSQL with its backends, Redis; ``other`` = the rest of the machine, to show
   whether it was quiet; the load generator on its own) is what the table states.

``fanout``: for each market-data worker count (EXCHANGE_MARKETDATA_WORKERS), subscriber
counts in increasing order (``bench.fanout`` runs without the slow subscriber, the seed
load at ``--rate``), until the delivery lag's P99 passes ``--lag-bound-ms`` (or a
subscriber saw a gap, a snapshot after its first, or its stream end): the subscribers
served within the bound, and market data's CPU per delivered message at each count.

``report``: the markdown tables of result files of both (default: the newest of each in
``bench/results/``) (capacity, CPU per order per
service, the cost of 2,000 / 10,000 / 50,000 orders/s at a stated utilisation and price,
the subscribers served); ``--into FILE`` puts them between the markers
``<!-- capacity:begin -->`` and ``<!-- capacity:end -->`` of FILE.

Results: ``bench/results/capacity-orders-<time>.json`` (and ``capacity-fanout-``) with
the command, and a markdown file of the same name. Benchmarks, not tests: nothing here is
a timed assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import secrets
import shlex
import sys
import tempfile
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from bench.loadgen import runner
from bench.loadgen.spec import RunSpec, Segment, auto_procs, constant, ramp_segments
from bench.loadgen.targets import ExchangeTarget, pod_groups, pod_name
from bench.orders import BENCH_MARKETS, MIXES, Market
from bench.results import RESULTS, write_result

log = logging.getLogger("bench.capacity")

DEFAULT_CONFIGS = "1x1,2x1,4x1,2x2,4x2,4x4"
SERVICES = ("order", "matching", "marketdata", "postgres", "redis")
MARK_BEGIN, MARK_END = "<!-- capacity:begin -->", "<!-- capacity:end -->"

# The price assumed for the cost table (override with --price-per-hour / --instance-vcpus /
# --instance): AWS EC2 c7i.xlarge (4 vCPU, 8 GiB), Linux on-demand, us-east-1, as listed
# in 2024-2025; prices vary by region, commitment (reserved / savings plans are 30-60%
# lower), provider and over time. Money as Decimal, never float.
DEFAULT_INSTANCE = "AWS c7i.xlarge (4 vCPU), on-demand, us-east-1"
DEFAULT_PRICE_PER_HOUR = "0.1785"  # USD
DEFAULT_INSTANCE_VCPUS = 4
HOURS_PER_MONTH = 730
# Cores used by processes outside the benchmark above which a run is flagged as not quiet.
QUIET_CORES = 0.1


def _csv(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def parse_configs(text: str) -> list[tuple[int, int]]:
    """``"1x1,4x2"`` -> [(1, 1), (4, 2)]: N instruments over K matching pods."""
    out = []
    for part in _csv(text):
        n_text, sep, k_text = part.lower().partition("x")
        if not sep or not n_text.isdigit() or not k_text.isdigit():
            raise SystemExit(f"--configs: {part!r} is not NxK (instruments x pods)")
        n, k = int(n_text), int(k_text)
        if not 1 <= n <= len(BENCH_MARKETS):
            raise SystemExit(f"--configs: {part!r}: 1 to {len(BENCH_MARKETS)} instruments")
        pod_groups([m.symbol for m in BENCH_MARKETS[:n]], k)  # 1 <= K <= N
        out.append((n, k))
    return out


# -- orders -----------------------------------------------------------------------------


def judge(*, rate: float, achieved: float, p99: float | None, errors: int, scheduled: float,
          bound_ms: float, max_error_fraction: float) -> tuple[bool, str]:
    """Whether a step (or a confirmation run) holds ``rate``; the reason when not."""
    if p99 is None:
        return False, "no answers"
    if errors > max_error_fraction * scheduled:
        return False, f"{errors} errors of {scheduled:.0f} scheduled"
    if achieved < 0.95 * rate:
        return False, f"achieved {achieved:.0f}/s < 95% of {rate:.0f}/s"
    if p99 > bound_ms:
        return False, f"P99 {p99:.1f} ms > {bound_ms:g} ms"
    return True, "ok"


def judge_ramp(ramp: dict, step_seconds: float, warmup: float, bound_ms: float,
               max_error_fraction: float) -> tuple[list[dict], float | None]:
    """The ramp's steps judged with ``judge``, and the highest rate before the first
    failing step (None if the first failed)."""
    steps, best, failed = [], None, False
    for i, s in enumerate(ramp["steps"]):
        # As bench.loadgen.runner.ramp_steps: the run's first seconds are not judged.
        start, end = i * step_seconds, (i + 1) * step_seconds
        judged = end - max(start, min(warmup, end - 1))
        ok, why = judge(rate=s["rate"], achieved=s["achieved"], p99=s["p99"],
                        errors=s["errors"], scheduled=s["rate"] * judged, bound_ms=bound_ms,
                        max_error_fraction=max_error_fraction)
        steps.append({**{k: s[k] for k in ("rate", "achieved", "p50", "p99", "max", "errors",
                                           "server_cpu_per_op_us")},
                      "pass": ok, "why": why})
        if ok and not failed:
            best = s["rate"]
        failed = failed or not ok
    return steps, best


def cpu_per_order(window: dict) -> dict[str, Any]:
    """A CPU window of bench.loadgen.runner as microseconds per order acknowledged:
    per process group, per service (every matching pod summed as ``matching``), the
    server total, the load generator, and ``other`` / steal as cores."""
    ops = window["operations"]
    seconds = window["cpu_seconds"]

    def us(value: float) -> float | None:
        return round(value / ops * 1e6, 1) if ops else None

    groups = {k: v for k, v in seconds.items() if k not in ("other", "loadgen")}
    per_service = {name: 0.0 for name in SERVICES}
    for k, v in groups.items():
        per_service["matching" if k.startswith("matching") else k] = (
            per_service.get("matching" if k.startswith("matching") else k, 0.0) + v)
    return {
        "operations": ops, "window_s": window["seconds"],
        "total_us": us(sum(groups.values())),
        "service_us": {k: us(v) for k, v in per_service.items()},
        "process_us": {k: us(v) for k, v in groups.items()},
        "loadgen_us": us(seconds.get("loadgen", 0.0)),
        "server_cores": round(sum(groups.values()) / window["seconds"], 3),
        "other_cores": window["cpu_cores"].get("other"),
        "steal_cores": window.get("machine_steal_cores"),
    }


async def run_exchange(args: argparse.Namespace, markets: list[Market], pods: int,
                       segments: list[Segment], ramp: bool, bound_ms: float,
                       label: str) -> dict:
    """One loadgen run on a fresh exchange of N instruments over ``pods`` matching pods."""
    target = ExchangeTarget(accounts=args.accounts, order_workers=args.order_workers,
                            markets=markets, matching_pods=pods, keep=args.keep)
    await target.start()
    try:
        top = max(s.rate for s in segments)
        procs = (auto_procs(args.mode, args.batch, top, os.cpu_count() or 1)
                 if args.procs == "auto" else int(args.procs))
        spec = RunSpec(
            label=label, target="exchange", mode=args.mode, batch=args.batch,
            segments=segments, warmup=args.warmup, procs=procs,
            sessions=max(args.sessions, procs), channels=1, addr=target.addr,
            keys=target.keys, mix=MIXES["seed"], tag=f"cap{secrets.token_hex(3)}",
            seed=args.seed, ramp=ramp, p99_bound_ms=bound_ms, markets=markets,
            linger_ms=args.linger_ms)
        log.info("%s: %s, %d load processes", label,
                 f"ramp {segments[0].rate:.0f}/s up by {args.ramp_step:g}/s every "
                 f"{args.step_seconds:g} s" if ramp else
                 f"{segments[0].rate:.0f}/s for {spec.duration:.0f} s", procs)
        result = await asyncio.to_thread(runner.run, spec, target.cpu_groups(),
                                         target.check_alive)
        acked = result.pop("_acked")
        result["durability"] = await target.verify_durable(spec.tag, acked)
    finally:
        await target.stop()
    return result


def confirmation(run: dict, rate: float, args: argparse.Namespace) -> dict:
    """A constant run judged over its steady window."""
    creates = run["creates"]
    lat = creates.get("steady_latency_ms") or creates["latency_ms"]
    achieved = run.get("rate_achieved") or 0.0
    ok, why = judge(rate=rate, achieved=achieved, p99=lat["p99"],
                    errors=creates.get("steady_errors", run["error_count"]),
                    scheduled=creates.get("steady_sent", creates["sent"]),
                    bound_ms=args.p99_bound_ms, max_error_fraction=args.max_error_fraction)
    d = run.get("durability", {})
    if d.get("missing"):
        ok, why = False, f"{d['missing']} acknowledged orders not in PostgreSQL"
    return {"rate": rate, "pass": ok, "why": why, "achieved": achieved,
            "p50": lat["p50"], "p99": lat["p99"], "p99_9": lat["p99_9"],
            "errors": creates.get("steady_errors"), "error_codes": run["errors"],
            "error_examples": run.get("error_examples", {}),
            "cpu": cpu_per_order(run["cpu"][0]) if run["cpu"] else None,
            "instruments": run.get("instruments"),
            "orders_per_instrument": d.get("orders_per_instrument"),
            "owner_pod": d.get("owner_pod"), "durable": not d.get("missing")}


async def measure(args: argparse.Namespace, n: int, k: int) -> dict:
    markets = list(BENCH_MARKETS[:n])
    groups = pod_groups([m.symbol for m in markets], k)
    name = f"{n} instrument{'s' if n > 1 else ''} / {k} pod{'s' if k > 1 else ''}"
    t0 = time.monotonic()
    out: dict[str, Any] = {"config": f"{n}x{k}", "name": name, "instruments": n, "pods": k,
                           "pod_instruments": {pod_name(i): g for i, g in enumerate(groups)}}
    # The ramp's own early stop (bench.loadgen.runner._ramp_watch) ends it after two
    # steps in a row over twice its bound: given half the bound, over the bound.
    segments = ramp_segments(args.ramp_start, args.ramp_step, args.step_seconds,
                             args.ramp_max)
    ramp_run = await run_exchange(args, markets, k, segments, True, args.p99_bound_ms / 2,
                                  f"{name}: ramp")
    steps, best = judge_ramp(ramp_run["ramp"], args.step_seconds, args.warmup,
                             args.p99_bound_ms, args.max_error_fraction)
    out["ramp"] = {"start": args.ramp_start, "step": args.ramp_step,
                   "step_seconds": args.step_seconds, "steps": steps, "candidate": best,
                   "errors": ramp_run["errors"],
                   "error_examples": ramp_run.get("error_examples", {}),
                   # Every step held up to --ramp-max: the capacity is at least that.
                   "max_reached": best is not None and best == segments[-1].rate}
    log.info("%s: ramp candidate %s orders/s", name, best)
    out["confirmations"] = []
    rate = best
    tries = 0
    while rate is not None and rate > 0 and tries <= args.retries:
        run = await run_exchange(args, markets, k,
                                 constant(args.warmup + args.confirm_seconds, rate),
                                 False, args.p99_bound_ms, f"{name}: confirm {rate:.0f}/s")
        c = confirmation(run, rate, args)
        out["confirmations"].append(c)
        log.info("%s: %.0f orders/s for %g s: %s", name, rate, args.confirm_seconds,
                 "held" if c["pass"] else f"not held ({c['why']})")
        if c["pass"]:
            out["capacity"] = c
            break
        rate -= args.ramp_step
        tries += 1
    out.setdefault("capacity", None)
    out["wall_s"] = round(time.monotonic() - t0, 1)
    return out


async def orders_main(args: argparse.Namespace) -> int:
    configs = parse_configs(args.configs)
    results = []
    t0 = time.monotonic()
    for n, k in configs:
        results.append(await measure(args, n, k))
        log.info("done %d of %d configurations in %.0f s", len(results), len(configs),
                 time.monotonic() - t0)
    figures = {"kind": "orders", "settings": settings_of(args), "configs": results,
               "wall_s": round(time.monotonic() - t0, 1)}
    text = orders_table(figures)
    print()
    print(text)
    path = write_out("capacity-orders", figures, args, text)
    print(f"\nresult: {path}\ntable:  {path.with_suffix('.md')}")
    return 0


def settings_of(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items()
            if k not in ("func", "out", "files", "argv", "command")}


def write_out(name: str, figures: dict, args: argparse.Namespace, text: str) -> Path:
    command = "python -m bench.capacity " + " ".join(shlex.quote(a) for a in args.argv)
    path = write_result(name, figures, command, args.out or RESULTS)
    path.with_suffix(".md").write_text(f"`{command}` ({path.name})\n\n{text}\n")
    return path


# -- fan-out ----------------------------------------------------------------------------


def fanout_pass(r: dict, bound_ms: float) -> tuple[bool, str]:
    lag = r["lag_ms"]["p99_ms"]
    if lag is None:
        return False, "no deltas"
    problems = {"sequence gaps": r["sequence_gaps"],
                "snapshots after the first": r["snapshots_to_normal_subscribers"],
                "streams ended early": r["streams_ended_early"]}
    bad = [f"{v} {k}" for k, v in problems.items() if v]
    if bad:
        return False, ", ".join(bad)
    if lag > bound_ms:
        return False, f"lag P99 {lag} ms > {bound_ms:g} ms"
    return True, "ok"


async def fanout_main(args: argparse.Namespace) -> int:
    from bench import fanout

    counts = sorted(int(x) for x in _csv(args.subscribers))
    out = []
    t0 = time.monotonic()
    for workers in (int(w) for w in _csv(args.md_workers)):
        rows = []
        served = None
        for n in counts:
            procs = args.procs or max(1, min(8, math.ceil(n / 250)))
            spec = fanout.RunSpec(subscribers=n, slow=False, rate=args.rate,
                                  duration=args.duration, procs=procs,
                                  streams_per_connection=1, slow_interval=1.0,
                                  accounts=8, entry="stream", seed=args.seed,
                                  linger_ms=10.0, md_workers=workers)
            log.info("fan-out: %d subscribers, %d market-data worker(s), %g orders/s for "
                     "%g s", n, workers, args.rate, args.duration)
            with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
                r = await fanout.one_run(spec, Path(tmp))
            ok, why = fanout_pass(r, args.lag_bound_ms)
            server = sum(v for k, v in r["cpu_cores"].items()
                         if k not in ("load client", "subscriber clients"))
            delivered = r["deltas_received"] / r["load_window_s"] if r["load_window_s"] else 0
            rows.append({
                "subscribers": n, "pass": ok, "why": why, "lag_ms": r["lag_ms"],
                "deltas_per_s": round(delivered, 1),
                "marketdata_cores": r["marketdata_cpu_cores"],
                "marketdata_us_per_message": r["marketdata_cpu_us_per_message"],
                "server_cores": round(server, 3),
                "client_cores": {k: r["cpu_cores"].get(k)
                                 for k in ("load client", "subscriber clients")},
                "other_cores": r["other_cpu_cores"], "steal_cores": r["machine_steal_cores"],
                "order_rate_achieved": r["order_rate_achieved"],
                "order_errors": r["order_errors"]})
            log.info("fan-out: %d subscribers, %d worker(s): %s", n, workers,
                     "within the bound" if ok else why)
            if not ok:
                break
            served = n
        out.append({"md_workers": workers, "served": served, "runs": rows,
                    # Every count tried held: the capacity is at least the highest.
                    "all_held": served is not None and served == counts[-1]})
    figures = {"kind": "fanout", "settings": settings_of(args), "workers": out,
               "wall_s": round(time.monotonic() - t0, 1)}
    text = fanout_table(figures)
    print()
    print(text)
    path = write_out("capacity-fanout", figures, args, text)
    print(f"\nresult: {path}\ntable:  {path.with_suffix('.md')}")
    return 0


# -- tables -----------------------------------------------------------------------------


def _f(v: Any, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def orders_table(figures: dict) -> str:
    s = figures["settings"]
    lines = [
        f"Orders acknowledged per second with P99 <= {s['p99_bound_ms']:g} ms (open loop, "
        f"from the scheduled send time; {s['mode']}"
        + (f" x{s['batch']}" if s["mode"] == "stream" else "") + " calls; errors at most "
        f"{s['max_error_fraction']:.1%} of the orders), held for {s['confirm_seconds']:g} s; "
        "CPU in microseconds per order acknowledged, in that run: every server process "
        "(each matching pod, the order service and its workers, market data, PostgreSQL "
        "and its backends, Redis); the load generator on its own; `other` = cores used "
        "by the rest of the machine in the window (a quiet machine: near 0).",
        "",
        "| configuration | orders/s at P99 <= bound | P50 / P99 ms | CPU us/order, all "
        "servers | order | matching | market data | PostgreSQL | Redis | load generator "
        "us/order | other cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in figures["configs"]:
        cap = c.get("capacity")
        if cap is None:
            lines.append(f"| {c['name']} | not held at {s['ramp_start']:g}/s "
                         f"| - | - | - | - | - | - | - | - | - |")
            continue
        cpu = cap["cpu"] or {}
        svc = cpu.get("service_us", {})
        at_least = ">= " if c["ramp"].get("max_reached") and cap["rate"] == \
            c["ramp"]["candidate"] else ""
        lines.append(
            f"| {c['name']} | {at_least}{_f(cap['achieved'])} | {_f(cap['p50'], '{:.1f}')} / "
            f"{_f(cap['p99'], '{:.1f}')} | {_f(cpu.get('total_us'))} | "
            + " | ".join(_f(svc.get(k)) for k in SERVICES)
            + f" | {_f(cpu.get('loadgen_us'))} | {_f(cpu.get('other_cores'), '{:.2f}')} |")
    busy = [f"{c['name']} ({c['capacity']['cpu']['other_cores']:.2f})"
            for c in figures["configs"] if c.get("capacity") and c["capacity"].get("cpu")
            and (c["capacity"]["cpu"].get("other_cores") or 0) > QUIET_CORES]
    if busy:
        lines += ["", f"**Not a quiet machine**: other processes used more than {QUIET_CORES} "
                  "of a core during " + ", ".join(busy) + "; measure again."]
    pods = [c for c in figures["configs"] if c.get("capacity") and c["instruments"] > 1]
    if pods:
        lines += ["", "Per matching pod (us per order of all instruments) and per "
                  "instrument (acknowledged orders/s) at that rate:", ""]
        for c in pods:
            cap = c["capacity"]
            per_pod = ", ".join(f"{k} {_f(v)}" for k, v in
                                (cap["cpu"] or {}).get("process_us", {}).items()
                                if k.startswith("matching"))
            per_inst = ", ".join(f"{i['symbol']} {_f(i.get('rate_achieved'))}"
                                 f" ({(cap.get('owner_pod') or {}).get(i['symbol'], '?')})"
                                 for i in cap.get("instruments") or [])
            lines.append(f"- {c['name']}: matching pods {per_pod}; instruments {per_inst}")
    return "\n".join(lines)


def fanout_table(figures: dict) -> str:
    s = figures["settings"]
    lines = [
        f"Market-data subscribers (StreamOrderBook, BTC-USD) served with delivery lag P99 "
        f"<= {s['lag_bound_ms']:g} ms (publish stamp of the oldest entry in a delta -> "
        f"read) during the seed load at {s['rate']:g} orders/s, {s['duration']:g} s per "
        "count, no gaps, no snapshot after the first; market data's CPU per message "
        "delivered (all its workers). The subscriber clients run on the same cores.",
        "",
        "| market-data workers | subscribers | lag P50 / P99 ms | messages delivered/s | "
        "market data cores | us per message | all servers cores | clients cores | "
        "other cores | within bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in figures["workers"]:
        for r in w["runs"]:
            clients = sum(v or 0.0 for v in r["client_cores"].values())
            lines.append(
                f"| {w['md_workers']} | {r['subscribers']} | {_f(r['lag_ms']['p50_ms'], '{}')}"
                f" / {_f(r['lag_ms']['p99_ms'], '{}')} | {_f(r['deltas_per_s'])} | "
                f"{_f(r['marketdata_cores'], '{:.2f}')} | "
                f"{_f(r['marketdata_us_per_message'], '{:.1f}')} | "
                f"{_f(r['server_cores'], '{:.2f}')} | {clients:.2f} | "
                f"{_f(r['other_cores'], '{:.2f}')} | {'yes' if r['pass'] else 'no: ' + r['why']} |")
    lines.append("")
    busy = [f"{w['md_workers']} worker(s) x {r['subscribers']} ({r['other_cores']:.2f})"
            for w in figures["workers"] for r in w["runs"]
            if (r.get("other_cores") or 0) > QUIET_CORES]
    if busy:
        lines += [f"**Not a quiet machine**: other processes used more than {QUIET_CORES} of a "
                  "core during " + ", ".join(busy) + "; measure again.", ""]
    lines += [f"- {w['md_workers']} market-data worker(s): "
              f"{'>= ' if w.get('all_held') else ''}{_f(w['served'], '{}')} subscribers "
              "within the bound" + (" (every count tried held: try higher counts)"
                                    if w.get("all_held") else "")
              for w in figures["workers"]]
    return "\n".join(lines)


def _money(value: Decimal) -> str:
    return f"${value.quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"


def pick_cost_config(figures: dict, which: str | None) -> dict | None:
    held = [c for c in figures["configs"] if c.get("capacity") and c["capacity"]["cpu"]]
    if which:
        held = [c for c in held if c["config"] == which]
    if not held:
        return None
    # Default: the busiest instruments (the highest rate per instrument held). CPU per
    # order is mostly set by orders per commit, and each instrument commits on its own:
    # the rates of the table (thousands of orders/s) keep instruments busy enough to batch,
    # which the configurations spreading a 2-core machine's rate over 4 instruments do not.
    return max(held, key=lambda c: (c["capacity"]["rate"] / c["instruments"], -c["pods"]))


def cost_table(figures: dict, *, rates: list[int], utilisation: float, node_vcpus: list[int],
               price_per_hour: Decimal, instance_vcpus: int, instance: str,
               config: str | None = None) -> str:
    """Cores and monthly cost for ``rates`` from a capacity result's CPU per order."""
    c = pick_cost_config(figures, config)
    if c is None:
        return "(no configuration held its rate: no cost table)"
    cpu = c["capacity"]["cpu"]
    svc = {k: (v or 0.0) for k, v in cpu["service_us"].items()}
    total = cpu["total_us"] or sum(svc.values())
    per_vcpu_month = price_per_hour * HOURS_PER_MONTH / instance_vcpus
    match_us = svc.get("matching", 0.0)
    # One instrument is one writer loop in one process: at most one core, of which the
    # same utilisation target is allowed.
    per_instrument = utilisation * 1e6 / match_us if match_us else None
    lines = [
        f"From the CPU per order of **{c['name']}** ({_f(total)} us per order, all server "
        f"processes: " + ", ".join(f"{k} {_f(v)}" for k, v in svc.items()) + "; the load "
        f"client not included), at {utilisation:.0%} target utilisation of every core "
        f"(headroom for bursts, failover and GC: cores = orders/s x CPU per order / "
        f"{utilisation:g}). Price: {instance}, ${price_per_hour}/hour, "
        f"{HOURS_PER_MONTH} hours a month = ${per_vcpu_month.quantize(Decimal('0.01'))} per "
        "vCPU-month; prices vary by provider, region and commitment (1-3 year commitments "
        "cost 30-60% less), and a vCPU is a hyperthread, which may do less than a core of "
        "the measuring machine.",
        "",
        "| orders/s | order service cores | matching cores (pods >=, instruments >=) | "
        "market data cores | PostgreSQL cores | Redis cores | vCPU in all | "
        f"instances ({instance_vcpus} vCPU) | monthly cost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        cores = {k: rate * v / 1e6 / utilisation for k, v in svc.items()}
        vcpus = sum(math.ceil(v) for v in cores.values())
        instances = math.ceil(vcpus / instance_vcpus)
        pods = math.ceil(cores.get("matching", 0.0))
        instruments = math.ceil(rate / per_instrument) if per_instrument else "-"
        cost = per_vcpu_month * instance_vcpus * instances
        lines.append(
            f"| {rate:,} | {cores.get('order', 0):.1f} | {cores.get('matching', 0):.1f} "
            f"({pods}, {instruments}) | {cores.get('marketdata', 0):.1f} | "
            f"{cores.get('postgres', 0):.1f} | {cores.get('redis', 0):.1f} | {vcpus} | "
            f"{instances} | {_money(cost)} |")
    lines += [
        "",
        "What scales how: the order service is stateless (replicas, workers); matching is "
        "one writer loop per instrument, so one instrument never uses more than one core "
        + (f"(at {utilisation:.0%}: about {per_instrument:,.0f} orders/s per instrument, "
           "alone in its pod), and a rate needs at least that many busy instruments; "
           if per_instrument else "")
        + "PostgreSQL is one primary: its CPU per order (group commit; one commit per "
        "batch, not per order) grows with the rate and is the part that does not spread "
        "over more nodes; market data here is ingest only (no subscribers: see the "
        "fan-out table for the cost per delivered message). Not included: a standby for "
        "each matching pod, a PostgreSQL replica, storage, network, the clients.",
        "",
        "Orders/s one node carries at that utilisation (all services on it, no "
        "subscribers):",
        "",
        "| node vCPU | orders/s |",
        "|---|---|",
    ]
    for n in node_vcpus:
        lines.append(f"| {n} | {n * utilisation * 1e6 / total:,.0f} |")
    lines += ["", "The old system's plan: 5-10 instruments at ~1,500 orders/s each on one node "
              "(7,500-15,000 orders/s)."]
    return "\n".join(lines)


def latest(directory: Path = RESULTS) -> list[str]:
    """The newest result of ``orders`` and of ``fanout`` in ``directory`` (those there are)."""
    out = []
    for kind in ("capacity-orders", "capacity-fanout"):
        found = sorted(directory.glob(f"{kind}-*.json"))
        if found:
            out.append(str(found[-1]))
    return out


def report_main(args: argparse.Namespace) -> int:
    parts = []
    files = args.files or latest()
    if not files:
        raise SystemExit(f"no result files given, and no capacity results in {RESULTS}")
    for name in files:
        data = json.loads(Path(name).read_text())
        figures = data["figures"]
        head = f"`{data['command']}` ({Path(name).name}, {data['date']}, " \
               f"{data['machine']['cpus']} CPUs)"
        if figures.get("kind") == "orders":
            parts += ["#### Orders", "", head, "", orders_table(figures), "",
                      "#### Cost", "",
                      cost_table(figures, rates=[int(r) for r in _csv(args.rates)],
                                 utilisation=args.utilisation,
                                 node_vcpus=[int(n) for n in _csv(args.node_vcpus)],
                                 price_per_hour=Decimal(args.price_per_hour),
                                 instance_vcpus=args.instance_vcpus,
                                 instance=args.instance, config=args.cost_config), ""]
        elif figures.get("kind") == "fanout":
            parts += ["#### Market-data subscribers", "", head, "", fanout_table(figures), ""]
        else:
            raise SystemExit(f"{name}: not a bench.capacity result")
    text = "\n".join(parts).rstrip() + "\n"
    if args.into:
        path = Path(args.into)
        old = path.read_text()
        if MARK_BEGIN not in old or MARK_END not in old:
            raise SystemExit(f"{path}: no {MARK_BEGIN} ... {MARK_END} markers")
        before, rest = old.split(MARK_BEGIN, 1)
        _, after = rest.split(MARK_END, 1)
        path.write_text(f"{before}{MARK_BEGIN}\n{text}{MARK_END}{after}")
        print(f"written into {path}")
    else:
        print(text)
    return 0


# -- command line ---------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    o = sub.add_parser("orders", help="acknowledged orders/s at the P99 bound, per "
                       "configuration of instruments and matching pods")
    o.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help=f"NxK: N instruments over K matching pods (default {DEFAULT_CONFIGS})")
    o.add_argument("--mode", choices=["unary", "stream"], default="unary",
                   help="CreateOrder calls (default) or OrderEntry sessions")
    o.add_argument("--batch", type=int, default=1, help="stream: orders per message (1)")
    o.add_argument("--sessions", type=int, default=4, help="stream: sessions in all (4)")
    o.add_argument("--linger-ms", type=float, default=0.0)
    o.add_argument("--p99-bound-ms", type=float, default=100.0)
    o.add_argument("--max-error-fraction", type=float, default=0.001,
                   help="errors (overload refusals included) allowed, as a fraction of the "
                        "orders scheduled (default 0.001)")
    o.add_argument("--ramp-start", type=float, default=250.0)
    o.add_argument("--ramp-step", type=float, default=250.0)
    o.add_argument("--step-seconds", type=float, default=8.0)
    o.add_argument("--ramp-max", type=float, default=10_000.0)
    o.add_argument("--warmup", type=float, default=3.0,
                   help="seconds at the start of a run not judged (default 3)")
    o.add_argument("--confirm-seconds", type=float, default=30.0,
                   help="steady seconds of the confirmation run (default 30)")
    o.add_argument("--retries", type=int, default=2,
                   help="confirmations one step lower after a failed one (default 2)")
    o.add_argument("--accounts", type=int, default=50)
    o.add_argument("--order-workers", default="auto")
    o.add_argument("--procs", default="auto", help="load-generator processes (auto)")
    o.add_argument("--seed", type=int, default=1)
    o.add_argument("--keep", action="store_true", help="keep the exchanges' data and logs")
    o.add_argument("--out", type=Path, help="result directory (default bench/results/)")
    o.set_defaults(func=orders_main)

    f = sub.add_parser("fanout", help="market-data subscribers served within the lag bound, "
                       "per market-data worker count")
    f.add_argument("--md-workers", default="1,2")
    f.add_argument("--subscribers", default="250,500,1000,2000,4000",
                   help="counts tried in increasing order until one fails")
    f.add_argument("--lag-bound-ms", type=float, default=100.0)
    f.add_argument("--rate", type=float, default=2000.0, help="orders/s of the load (2000)")
    f.add_argument("--duration", type=float, default=20.0, help="seconds per count (20)")
    f.add_argument("--procs", type=int, default=0,
                   help="subscriber processes (default one per 250 subscribers, max 8)")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--out", type=Path, help="result directory (default bench/results/)")
    f.set_defaults(func=fanout_main)

    r = sub.add_parser("report", help="markdown tables (capacity, cost, subscribers) of "
                       "result files")
    r.add_argument("files", nargs="*",
                   help="result files of orders and/or fanout (default: the newest of each "
                        "in bench/results/)")
    r.add_argument("--into", help="replace the text between the capacity markers of this file")
    r.add_argument("--rates", default="2000,10000,50000")
    r.add_argument("--utilisation", type=float, default=0.5,
                   help="target utilisation of every core (default 0.5)")
    r.add_argument("--node-vcpus", default="4,8,16,32,64")
    r.add_argument("--price-per-hour", default=DEFAULT_PRICE_PER_HOUR,
                   help=f"instance price, USD per hour (default {DEFAULT_PRICE_PER_HOUR})")
    r.add_argument("--instance-vcpus", type=int, default=DEFAULT_INSTANCE_VCPUS)
    r.add_argument("--instance", default=DEFAULT_INSTANCE)
    r.add_argument("--cost-config", help="NxK whose CPU per order the cost table uses "
                   "(default: the one with the highest rate per instrument that held)")
    r.set_defaults(func=report_main)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    if args.command == "report":
        return report_main(args)
    return asyncio.run(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())

