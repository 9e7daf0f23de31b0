"""``python -m bench.loadgen``: open-loop load on the exchange's order entry.

By default it starts an exchange of its own (embedded PostgreSQL and Redis in
a fresh temporary directory, the three services as processes, ``--accounts``
accounts with API keys), runs the preset, checks that every acknowledged order
is in PostgreSQL, and stops it. With ``--order-addr`` and ``--api-keys`` it
loads a running exchange instead (then server CPU is not measured). The echo
floor (``bench/echo.py``, same service and messages, no work) gets the same
load in the same run (``--target both``, the default except for the ramp), so
the exchange's server CPU per order is stated as a ratio to the bare gRPC
transport.

Presets (``--duration``, ``--rate``, ``--mode``, ``--batch`` override them)::

    python -m bench.loadgen --preset seed --mode unary,stream
    python -m bench.loadgen --preset seed --mode stream --batch 1,100 --rate 30000
    python -m bench.loadgen --preset ramp --mode unary --p99-bound-ms 100
    python -m bench.loadgen --preset cancel-heavy --mode stream
    python -m bench.loadgen --preset deep-book --depth 50000
    python -m bench.loadgen --preset ramp --instruments 4 --matching-pods 2

Instruments: ``--instruments N`` spreads the orders over the first N of BTC-USD,
ETH-USD, CAP3-USD, CAP4-USD in turn (each order the seed mix on its instrument's
own tick and lot grid; the exchange started here creates CAP3-USD and CAP4-USD
at set-up), or name them: ``--instruments BTC-USD,ETH-USD``. The result has the
aggregate figures and, under ``instruments``, each instrument's. With
``--matching-pods K`` the exchange started here runs K matching processes, the
instruments dealt over them in turn (EXCHANGE_MATCHING_INSTRUMENTS, _HOME and
_NAME=matching-<i> per process); every pod's CPU is counted, each on its own.
(``deep-book`` prefills BTC-USD only.)

Modes: ``unary`` (a CreateOrder call per order, as many in flight as the
schedule makes), ``stream`` (``--sessions`` OrderEntry sessions, ``--batch``
commands per message; a message leaves when it holds ``--batch`` commands, or,
with ``--linger-ms``, once its first command waited that long).
Cancels (cancel-heavy) are CancelOrder calls or cancel commands.

Output: a live progress line, a summary table, a JSON result and a PNG plot
(latency percentiles and throughput per second) in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import secrets
import shlex
import sys
from pathlib import Path

from bench.cpu import CpuProbe
from bench.loadgen import report, runner
from bench.loadgen.spec import (
    PRESETS,
    RunSpec,
    auto_procs,
    constant,
    ramp_segments,
)
from bench.loadgen.targets import EchoTarget, ExchangeTarget, markets_of, pod_groups
from bench.orders import MIXES
from bench.results import RESULTS, environment, write_result
from exchange_common.workers import worker_count

log = logging.getLogger("bench.loadgen")


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="seed")
    p.add_argument("--duration", type=float, help="seconds of the timed run (preset: 60)")
    p.add_argument("--rate", type=float, help="orders per second (preset: 2000)")
    p.add_argument("--mode", default="unary",
                   help="unary, stream, or both as a list: unary,stream (default unary)")
    p.add_argument("--batch", default="1",
                   help="stream: commands per message; a list runs each: 1,100 (default 1)")
    p.add_argument("--target", default=None,
                   help="exchange, echo or both (default: both; exchange for the ramp)")
    p.add_argument("--procs", default="auto",
                   help="worker processes (default auto: by mode and rate, at most the CPUs)")
    p.add_argument("--sessions", type=int, default=4, help="stream: sessions in all (4)")
    p.add_argument("--channels", type=int, default=1, help="gRPC channels per worker (1)")
    p.add_argument("--warmup", type=float,
                   help="seconds before the steady window (default min(5, 20%% of the run))")
    p.add_argument("--echo-duration", type=float,
                   help="seconds of each echo run (default min(duration, 20))")
    p.add_argument("--linger-ms", type=float, default=0.0,
                   help="stream: send a partly filled message once its first command "
                        "waited this long (default 0: only full messages of --batch "
                        "commands leave, so that N per message is exact)")
    p.add_argument("--max-inflight", type=int, default=20_000,
                   help="per worker: beyond this many, orders wait (their latency counts)")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline of a unary call (s)")
    p.add_argument("--depth", type=int, help="deep-book: resting orders per side (10000)")
    p.add_argument("--p99-bound-ms", type=float, default=100.0,
                   help="ramp: the P99 bound (default 100)")
    p.add_argument("--ramp-start", type=float)
    p.add_argument("--ramp-step", type=float)
    p.add_argument("--step-seconds", type=float)
    p.add_argument("--ramp-max", type=float)
    p.add_argument("--cancel-fraction", type=float,
                   help="fraction of resting orders to cancel (cancel-heavy: 0.9)")
    p.add_argument("--cancel-delay-ms", type=float,
                   help="cancel this long after the acknowledgement (cancel-heavy: 100)")
    p.add_argument("--order-addr", help="a running exchange's order service (host:port)")
    p.add_argument("--api-keys",
                   help="with --order-addr: API keys, comma-separated or @file (one a line)")
    p.add_argument("--accounts", type=int, default=50,
                   help="accounts (with keys) created on the exchange started here (50)")
    p.add_argument("--order-workers", default="auto",
                   help="order-service processes of the exchange started here "
                        "(EXCHANGE_ORDER_WORKERS: a number, or auto, as make run; default auto)")
    p.add_argument("--instruments", default="1",
                   help="a count N (the first N of BTC-USD, ETH-USD, CAP3-USD, CAP4-USD) or "
                        "symbols, comma-separated: the orders go to each in turn (default 1)")
    p.add_argument("--matching-pods", type=int, default=1,
                   help="matching processes of the exchange started here, the instruments "
                        "dealt over them (default 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary data directory (service logs) of the exchange")
    p.add_argument("--name", help="result file name prefix (default loadgen-<preset>)")
    p.add_argument("--out", type=Path,
                   help="write the JSON result and plot here instead of bench/results/")
    return p


def _keys(text: str | None) -> list[str]:
    if not text:
        return []
    if text.startswith("@"):
        return [ln.strip() for ln in Path(text[1:]).read_text().splitlines() if ln.strip()]
    return _csv(text)


def plan(args: argparse.Namespace) -> tuple[list[tuple[str, str, int]], dict]:
    """The runs (target, mode, batch) and the settings they share."""
    preset = PRESETS[args.preset]
    modes = _csv(args.mode)
    for m in modes:
        if m not in ("unary", "stream"):
            raise SystemExit(f"--mode: unknown mode {m!r} (unary, stream)")
    batches = [int(b) for b in _csv(args.batch)]
    target = args.target or ("exchange" if preset.ramp else "both")
    targets = {"both": ["echo", "exchange"]}.get(target, _csv(target))
    for t in targets:
        if t not in ("exchange", "echo"):
            raise SystemExit(f"--target: unknown target {t!r} (exchange, echo, both)")
    targets = sorted(set(targets), key=["echo", "exchange"].index)
    combos = []
    for t in targets:
        for m in modes:
            for b in (batches if m == "stream" else [1]):
                combos.append((t, m, b))
    mix = MIXES[preset.mix]
    if args.cancel_fraction is not None or args.cancel_delay_ms is not None:
        from dataclasses import replace

        mix = replace(mix, cancel_fraction=(args.cancel_fraction if args.cancel_fraction
                                            is not None else mix.cancel_fraction),
                      cancel_delay_ms=(args.cancel_delay_ms if args.cancel_delay_ms
                                       is not None else mix.cancel_delay_ms))
    markets = markets_of(str(args.instruments))
    if args.order_addr is None:
        pod_groups([m.symbol for m in markets], args.matching_pods)  # refuses a bad count
    elif args.matching_pods != 1:
        raise SystemExit("--matching-pods: only for the exchange started here")
    settings = {
        "preset": preset.name, "description": preset.description,
        "instruments": [m.symbol for m in markets], "markets": markets,
        "matching_pods": None if args.order_addr else args.matching_pods,
        "duration": args.duration or preset.duration, "rate": args.rate or preset.rate,
        "mix": mix, "ramp": preset.ramp,
        "depth": args.depth if args.depth is not None else preset.depth,
        "order_workers": (None if args.order_addr else
                          f"{args.order_workers} ({worker_count(args.order_workers)})"),
    }
    if preset.ramp:
        settings["segments"] = ramp_segments(args.ramp_start or preset.ramp_start,
                                             args.ramp_step or preset.ramp_step,
                                             args.step_seconds or preset.step_seconds,
                                             args.ramp_max or preset.ramp_max)
    return combos, settings


def make_spec(args, settings: dict, target: str, mode: str, batch: int, addr: str,
              keys: list[str], index: int) -> RunSpec:
    duration = settings["duration"]
    if target == "echo" and not settings["ramp"]:
        duration = args.echo_duration or min(duration, 20.0)
    segments = settings.get("segments") or constant(duration, settings["rate"])
    top = max(s.rate for s in segments)
    procs = (auto_procs(mode, batch, top, os.cpu_count() or 1) if args.procs == "auto"
             else int(args.procs))
    warmup = args.warmup if args.warmup is not None else round(min(5.0, 0.2 * duration), 1)
    label = f"{target} {mode}" + (f" x{batch}" if mode == "stream" else "")
    return RunSpec(
        label=label, target=target, mode=mode, batch=batch, segments=segments,
        warmup=warmup, procs=procs, sessions=max(args.sessions, procs),
        channels=args.channels, addr=addr, keys=keys, mix=settings["mix"],
        tag=f"lg{secrets.token_hex(3)}r{index}", seed=args.seed + index,
        linger_ms=args.linger_ms, max_inflight=args.max_inflight, timeout=args.timeout,
        ramp=settings["ramp"], p99_bound_ms=args.p99_bound_ms,
        markets=list(settings["markets"]))


def new_target(args, target_name: str) -> EchoTarget | ExchangeTarget:
    if target_name == "echo":
        return EchoTarget()
    return ExchangeTarget(accounts=args.accounts, order_addr=args.order_addr,
                          api_keys=_keys(args.api_keys), keep=args.keep,
                          order_workers=args.order_workers,
                          markets=markets_of(str(args.instruments)),
                          matching_pods=args.matching_pods)


async def settle(target, seconds: float = 30.0, idle_cores: float = 0.15) -> None:
    """Wait until the target's servers are (nearly) idle: what an earlier run
    left queued must not count against the next."""
    groups = target.cpu_groups()
    if not groups:
        return
    probe = CpuProbe(groups)
    deadline = asyncio.get_running_loop().time() + seconds
    a = probe.sample()
    while True:
        await asyncio.sleep(1.0)
        b = probe.sample()
        use = sum(v for k, v in probe.usage(a, b).items() if k != "other") / (b.at - a.at)
        if use < idle_cores or asyncio.get_running_loop().time() > deadline:
            if use >= idle_cores:
                log.warning("servers still busy (%.2f cores) after %.0f s; going on", use,
                            seconds)
            return
        a = b


async def run_target(args, settings, target_name: str, combos, start_index: int,
                     runs: list[dict]) -> dict:
    """The runs against one kind of target. The exchange started here is
    started afresh for every run (an empty book, or the prefilled one; nothing
    left over from an earlier run's overload); the echo server and an external
    exchange serve all runs, with a pause until their CPU settles between."""
    extra: dict = {}
    fresh = target_name == "exchange" and args.order_addr is None
    target = None
    try:
        for i, (_, mode, batch) in enumerate(combos):
            if target is None:
                target = new_target(args, target_name)
                await target.start()
                if isinstance(target, ExchangeTarget) and settings["depth"]:
                    extra.setdefault("prefill", []).append(
                        await target.prefill(settings["depth"], seed=args.seed))
            await settle(target)
            spec = make_spec(args, settings, target_name, mode, batch, target.addr,
                             target.keys, start_index + i)
            log.info("run %s: %s for %.0f s, %s procs%s", spec.label,
                     "ramp" if spec.ramp else f"{settings['rate']:.0f}/s", spec.duration,
                     spec.procs, f", {spec.sessions} sessions" if mode == "stream" else "")
            result = await asyncio.to_thread(runner.run, spec, target.cpu_groups(),
                                             target.check_alive)
            acked = result.pop("_acked")
            result["durability"] = await target.verify_durable(spec.tag, acked)
            result["server_processes"] = "measured" if target.own else "not measured"
            runs.append(result)
            if fresh:
                await target.stop()
                target = None
    finally:
        if target is not None:
            await target.stop()
    return extra


def _jsonable(o):
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    raise TypeError(type(o))


async def main_async(args: argparse.Namespace) -> int:
    combos, settings = plan(args)
    runs: list[dict] = []
    extra: dict = {}
    index = 0
    for target_name in ("echo", "exchange"):
        mine = [c for c in combos if c[0] == target_name]
        if mine:
            extra.update(await run_target(args, settings, target_name, mine, index, runs))
            index += len(mine)
    # exchange runs first in the report
    runs.sort(key=lambda r: (r["target"] != "exchange",))
    ratio = report.ratios(runs)
    text = report.summary(runs, ratio)
    command = "python -m bench.loadgen " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print()
    print(f"preset {settings['preset']}: {settings['description']}")
    if settings["ramp"]:
        seg = settings["segments"]
        print(f"this run: from {seg[0].rate:.0f}/s up by {seg[1].rate - seg[0].rate:.0f}/s "
              f"every {seg[0].end - seg[0].start:.0f} s (at most {seg[-1].rate:.0f}/s), "
              f"P99 bound {args.p99_bound_ms:g} ms" if len(seg) > 1 else
              f"this run: {seg[0].rate:.0f}/s for {seg[0].end:.0f} s")
    else:
        print(f"this run: {settings['rate']:.0f} orders/s for {settings['duration']:.0f} s "
              f"(echo runs: {runs[-1]['duration_s']:.0f} s)" if any(
                  r["target"] == "echo" for r in runs) else
              f"this run: {settings['rate']:.0f} orders/s for {settings['duration']:.0f} s")
    print(text)
    name = args.name or f"loadgen-{settings['preset']}"
    when = dt.datetime.now(dt.UTC)
    figures = json.loads(json.dumps({
        "settings": {k: v for k, v in settings.items() if k not in ("segments", "markets")},
        "segments": settings.get("segments"),
        **extra, "runs": runs, "ratios_to_echo": ratio, "plot": None,
    }, default=_jsonable))
    env = environment()
    settings_line = " ".join(f"{k}={v}" for k, v in env.items())
    title = f"{settings_line} {command}   ({when:%Y-%m-%d %H:%M} UTC)".lstrip()
    # The PNG is named as the JSON result, which then names it.
    path = write_result(name, figures, command, args.out or RESULTS,
                        plot=None if args.no_plot else lambda png: report.plot(runs, png, title))
    plot_path = None if args.no_plot else path.with_suffix(".png")
    print(f"\ncommand: {command}")
    if env:
        print(f"with:    {settings_line}")
    print(f"result:  {path}" + (f"\nplot:    {plot_path}" if plot_path else ""))
    missing = any(r.get("durability", {}).get("missing") for r in runs)
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    code = asyncio.run(main_async(args))
    if argv is None:
        raise SystemExit(code)
    return code
