"""Matching-core benchmark, no I/O: the project's engine against the reference baseline.

Both engines get the SAME seeded stream in the same run, interleaved (ratios
between them are what transfers to other machines; absolute rates on a shared
2-core machine do not). The stream is the issue's seed mix:

* 70% limit (GTC) / 30% market (IOC) orders, both sides with equal chance;
* quantity 0.01-0.5 BTC in lots of 0.0001 (100-5,000 lots);
* limit prices uniform within +-2,000 of 70,000 in ticks of 0.01
  (6,800,000-7,200,000 ticks);
* ``--cancels F`` (default 0, the seed mix has none): that share of the commands
  instead cancels one of the 1,000 most recent limit orders (it may have filled
  already: then the cancel fails, the same way in both engines);
* accounts drawn from 1,000 (the baseline has no accounts, so the project's orders
  let self-trades print: self-trade prevention NONE, which costs the same comparison
  per resting order met as any other mode).

Depth D = D resting limit orders per side placed before the clock starts, so
that all of them rest (``--prefill``):

* ``outside`` (default): bids 66,000.00-67,999.99, asks 72,000.01-74,000.00,
  just beyond the stream's limit prices. The stream matches as it does on an
  empty book (only a market order that empties the near side reaches them), so
  the depth figures show what the size of the book costs an engine;
* ``inside``: bids 68,000.00-69,999.99, asks 70,000.01-72,000.00. The stream
  trades into them, which also changes its work (more fills per command, every
  market order fills).

What each engine does per command:

* the project's ``OrderBook`` does everything the matching service needs:
  journal event tuples, the changed orders, the touched price levels, ``Fill``
  tuples and an ``Outcome``; every ``--batch`` commands (default 100) the batch
  is drained into the records the service commits and publishes
  (``drain_changes``), and that time counts (reported apart, per command);
* the baseline returns its list of fill tuples, nothing else.

Figures per engine and depth: ops/s from the CPU time of the pass (the median of
``--repeat`` passes; CPU time, because other work on a shared machine steals
wall time at random), per-command latency p50/p99/p99.9 (``perf_counter_ns``
around each command, HDR histogram; the project's drains are not in them), peak
traced memory while the stream runs, book included (``tracemalloc``, in a
separate untimed pass) and memory per resting order (the book's traced memory
after the prefill / the orders resting, depths > 0). That pass also checks that
both engines made exactly the same trades.

``floor``: the same stream through only the records those events need (an order,
the ACCEPTED and TRADE journal events, a Trade, an Outcome, the order rows of a
drain; every command taken as a new order making one fill), made by the engine's
classes from a loop run by the interpreter, with no matching at all: what the records
alone cost when the code around them is not compiled.

The figures name the engine build that ran (``engine_build``: ``compiled`` when the
engine's modules run compiled by mypyc, ``interpreted`` when they run from their
sources: an install without a C compiler).

The baseline is bench/baseline_book.py, a copy of the reference baseline.

    python -m bench.core [--orders N] [--depths 0,10000,50000] [--seed S]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from types import ModuleType

from bench.histogram import Histogram
from bench.results import write_result
from matching_service import engine

BASELINE = Path(__file__).resolve().parent / "baseline_book.py"

MID = 7_000_000  # 70,000.00 in ticks of 0.01
SPAN = 200_000  # +-2,000.00
LOTS = (100, 5_000)  # 0.01-0.5 BTC in lots of 0.0001
ACCOUNTS = 1_000
CANCEL_WINDOW = 1_000
NOW_NS = 1_700_000_000_000_000_000

# Stream commands: (kind, side 0/1, price, quantity, account, target command index)
LIMIT, MARKET, CANCEL = 0, 1, 2


def load_baseline(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_book", path)
    if spec is None or spec.loader is None or not Path(path).is_file():
        raise SystemExit(f"cannot load the baseline from {path} (--baseline)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_stream(n: int, seed: int, cancels: float) -> list[tuple[int, int, int, int, int, int]]:
    rng = random.Random(seed)
    recent: list[int] = []  # indexes of recent limit orders (cancel targets)
    out = []
    for i in range(n):
        r = rng.random()
        side = rng.randrange(2)
        account = rng.randrange(1, ACCOUNTS + 1)
        if r < cancels and recent:
            out.append((CANCEL, 0, 0, 0, 0, recent[rng.randrange(len(recent))]))
        elif r < cancels + (1 - cancels) * 0.7:
            out.append((LIMIT, side, rng.randint(MID - SPAN, MID + SPAN), rng.randint(*LOTS),
                        account, 0))
            recent.append(i)
            if len(recent) > CANCEL_WINDOW:
                recent.pop(0)
        else:
            out.append((MARKET, side, 0, rng.randint(*LOTS), account, 0))
    # a cancel names its target's account (the project's engine checks it)
    return [(k, s, p, q, out[t][4], t) if k == CANCEL else (k, s, p, q, a, t)
            for k, s, p, q, a, t in out]


def make_prefill(depth: int, seed: int, placement: str = "outside"
                 ) -> list[tuple[int, int, int, int]]:
    """(side, price, quantity, account) of ``depth`` orders per side that all rest."""
    rng = random.Random(seed ^ 0x5EED)
    if placement == "outside":
        bids, asks = (MID - 2 * SPAN, MID - SPAN - 1), (MID + SPAN + 1, MID + 2 * SPAN)
    else:
        bids, asks = (MID - SPAN, MID - 1), (MID + 1, MID + SPAN)
    out = []
    for _ in range(depth):
        out.append((0, rng.randint(*bids), rng.randint(*LOTS), rng.randrange(1, ACCOUNTS + 1)))
        out.append((1, rng.randint(*asks), rng.randint(*LOTS), rng.randrange(1, ACCOUNTS + 1)))
    return out


# -- the project's engine ------------------------------------------------------

class Project:
    name = "project"

    def __init__(self, prefill: list, batch: int) -> None:
        self.book = book = engine.OrderBook(1)
        self.batch = batch
        for side, price, qty, account in prefill:
            book.new_order(account, side + 1, engine.LIMIT, engine.GTC, price, qty, "", False,
                           NOW_NS, 0, 0, 0, 0, 0, engine.STP_NONE)
        book.drain_changes()

    def resting(self) -> int:
        return len(self.book.orders)

    def run(self, stream: list, latencies: list | None = None) -> tuple[float, float]:
        """Run the stream; returns (CPU seconds, of which draining). With
        ``latencies``, each command's wall-clock nanoseconds are appended to it."""
        book = self.book
        new_order, cancel, drain = book.new_order, book.cancel, book.drain_changes
        lim, mkt, gtc, ioc = engine.LIMIT, engine.MARKET, engine.GTC, engine.IOC
        stp = engine.STP_NONE
        batch = self.batch
        ids: list[int] = []  # command index -> order id (for cancels)
        track = any(command[0] == CANCEL for command in stream)
        clock, cpu = time.perf_counter_ns, time.process_time_ns
        drain_ns = 0
        left = batch
        start = cpu()
        for kind, side, price, qty, account, target in stream:
            if latencies is not None:
                t0 = clock()
            if kind == LIMIT:
                out = new_order(account, side + 1, lim, gtc, price, qty, "", False, NOW_NS,
                                0, 0, 0, 0, 0, stp)
            elif kind == MARKET:
                out = new_order(account, side + 1, mkt, ioc, 0, qty, "", False, NOW_NS,
                                0, 0, 0, 0, 0, stp)
            else:
                out = cancel(account, ids[target], NOW_NS)
            if latencies is not None:
                latencies.append(clock() - t0)
            if track:
                ids.append(out.order.order_id if out.order is not None else 0)
            left -= 1
            if not left:
                t0 = cpu()
                drain()
                drain_ns += cpu() - t0
                left = batch
        t0 = cpu()
        drain()
        end = cpu()
        return (end - start) / 1e9, (drain_ns + end - t0) / 1e9

    def trades(self, stream: list) -> tuple[int, int, int]:
        """Run the stream; (trades, lots, notional) made."""
        n = lots = notional = 0
        # command index -> order id of the recent limit orders (cancel targets), so
        # that the harness does not keep every order id alive in the memory figures
        ids: dict[int, int] = {}
        track = any(command[0] == CANCEL for command in stream)
        book = self.book
        for i, (kind, side, price, qty, account, target) in enumerate(stream):
            if kind == CANCEL:
                out = book.cancel(account, ids.get(target, 0), NOW_NS)
            elif kind == LIMIT:
                out = book.new_order(account, side + 1, engine.LIMIT, engine.GTC, price, qty,
                                     "", False, NOW_NS, 0, 0, 0, 0, 0, engine.STP_NONE)
            else:
                out = book.new_order(account, side + 1, engine.MARKET, engine.IOC, 0, qty, "",
                                     False, NOW_NS, 0, 0, 0, 0, 0, engine.STP_NONE)
            if track:
                if kind == LIMIT and out.order is not None:  # None: refused (never here)
                    ids[i] = out.order.order_id
                ids.pop(i - 20 * CANCEL_WINDOW, None)
            for f in out.fills:
                n += 1
                lots += f.quantity
                notional += f.price * f.quantity
            if i % self.batch == self.batch - 1:
                book.drain_changes()
        book.drain_changes()
        return n, lots, notional


# -- the reference baseline ----------------------------------------------------

class Baseline:
    name = "baseline"
    module: ModuleType

    def __init__(self, prefill: list, batch: int) -> None:
        self.book = book = self.module.OrderBook()
        for i, (side, price, qty, _) in enumerate(prefill):
            book.limit(-1 - i, side, price, qty)

    def resting(self) -> int:
        return len(self.book.orders)

    def run(self, stream: list, latencies: list | None = None) -> tuple[float, float]:
        book = self.book
        limit, market, cancel = book.limit, book.market, book.cancel
        clock, cpu = time.perf_counter_ns, time.process_time_ns
        start = cpu()
        for oid, (kind, side, price, qty, _, target) in enumerate(stream):
            if latencies is not None:
                t0 = clock()
            if kind == LIMIT:
                limit(oid, side, price, qty)
            elif kind == MARKET:
                market(oid, side, qty)
            else:
                cancel(target)
            if latencies is not None:
                latencies.append(clock() - t0)
        return (cpu() - start) / 1e9, 0.0

    def trades(self, stream: list) -> tuple[int, int, int]:
        n = lots = notional = 0
        book = self.book
        for oid, (kind, side, price, qty, _, target) in enumerate(stream):
            if kind == LIMIT:
                fills = book.limit(oid, side, price, qty)
            elif kind == MARKET:
                fills = book.market(oid, side, qty)
            else:
                book.cancel(target)
                continue
            for _, _, p, q in fills:
                n += 1
                lots += q
                notional += p * q
        return n, lots, notional


def floor_ns(stream: list, batch: int) -> float:
    """CPU ns per command of only the records the service's events need."""
    Order, JournalEvent = engine.Order, engine.JournalEvent
    Trade, Outcome = engine.Trade, engine.Outcome
    accepted, traded = engine.EV_ACCEPTED, engine.EV_TRADE
    lim, gtc = engine.LIMIT, engine.GTC
    events: list = []
    changed: dict = {}
    trades: list = []
    seq, base = 0, 1 << 44
    maker = None
    gc.collect()
    start = time.process_time_ns()
    for i, (_, side, price, qty, account, _) in enumerate(stream):
        seq += 1
        order = Order(base | seq, account, "", side + 1, lim, gtc, False, price, qty,
                      last_sequence=seq, created_ns=NOW_NS, updated_ns=NOW_NS)
        changed[order.order_id] = order
        events.append(JournalEvent(seq, accepted, order.order_id, 0, price, qty, account,
                                   side + 1, lim, gtc, False, "", NOW_NS))
        fills: list = []
        if maker is not None:  # one fill per command (the seed mix makes ~1)
            seq += 1
            events.append(JournalEvent(seq, traded, order.order_id, maker.order_id, price, qty,
                                       account, side + 1, lim, gtc, False, "", NOW_NS))
            fill = Trade(base | seq, seq, price, qty, side + 1, maker.order_id, order.order_id,
                         maker.account_id, account, NOW_NS)
            trades.append(fill)
            changed[maker.order_id] = maker
            fills = [fill]
        maker = order
        Outcome(order, fills)
        if i % batch == batch - 1:
            [o.row() for o in changed.values()]
            events, changed, trades = [], {}, []
    return (time.process_time_ns() - start) / len(stream)


# -- measuring -----------------------------------------------------------------

def engine_build() -> str:
    """``compiled`` when the engine's modules run compiled, else ``interpreted``."""
    return "compiled" if all(engine.build_of(m) for m in engine.MODULES) else "interpreted"


def timed(cls, prefill: list, stream: list, batch: int) -> tuple[float, float, int, int]:
    """One timed pass: (ops/s, drain us per command, resting before, resting after)."""
    bench = cls(prefill, batch)
    before = bench.resting()
    gc.collect()
    seconds, drain_s = bench.run(stream)
    return len(stream) / seconds, drain_s * 1e6 / len(stream), before, bench.resting()


def latency(cls, prefill: list, stream: list, batch: int) -> dict:
    bench = cls(prefill, batch)
    gc.collect()
    samples: list[int] = []
    bench.run(stream, samples)
    hist = Histogram(highest=10_000_000_000)  # nanoseconds, up to 10 s
    for ns in samples:
        hist.record(ns)
    return hist.percentiles([(f"p{p}_us", p) for p in (50, 99, 99.9)], divisor=1000,
                            ndigits=2, max_key="max_us", max_ndigits=1)


def memory(cls, prefill: list, stream: list, batch: int) -> dict:
    """Traced memory (untimed): the book per resting order after the prefill, and the
    peak while the stream runs; also the trades made, for the cross-check."""
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    bench = cls(prefill, batch)
    gc.collect()
    book_bytes = tracemalloc.get_traced_memory()[0] - start
    resting = bench.resting()
    tracemalloc.reset_peak()
    trades = bench.trades(stream)
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    return {"book_mb_after_prefill": round(book_bytes / 1e6, 2),
            "bytes_per_resting_order": round(book_bytes / resting) if resting else None,
            "peak_mb": round(peak / 1e6, 2), "trades": trades}


def run_depth(depth: int, stream: list, args: argparse.Namespace) -> dict:
    prefill = make_prefill(depth, args.seed, args.prefill)
    engines = (Project, Baseline)
    rates: dict[str, list[float]] = {e.name: [] for e in engines}
    drains: list[float] = []
    resting: dict[str, tuple[int, int]] = {}
    for _ in range(args.repeat):
        for cls in engines:  # interleaved, so a noisy moment hits both
            rate, drain_us, before, after = timed(cls, prefill, stream, args.batch)
            rates[cls.name].append(rate)
            if cls is Project:
                drains.append(drain_us)
            resting[cls.name] = (before, after)
    out: dict = {}
    for cls in engines:
        fig = {"ops_per_s": round(statistics.median(rates[cls.name])),
               "ops_per_s_runs": [round(r) for r in rates[cls.name]],
               "resting_before": resting[cls.name][0], "resting_after": resting[cls.name][1]}
        fig |= latency(cls, prefill, stream, args.batch)
        fig |= memory(cls, prefill, stream, args.batch)
        if cls is Project:
            fig["drain_us_per_command"] = round(statistics.median(drains), 3)
        out[cls.name] = fig
    if out["project"]["trades"] != out["baseline"]["trades"]:
        raise SystemExit(f"depth {depth}: the engines traded differently: "
                         f"{out['project']['trades']} vs {out['baseline']['trades']}")
    out["project_over_baseline"] = round(out["project"]["ops_per_s"] /
                                         out["baseline"]["ops_per_s"], 2)
    return out


def report(figures: dict, depths: list[int]) -> list[str]:
    lines = [f"{'engine':9} {'depth':>6} {'resting':>15} {'ops/s':>9} {'p50 us':>7} "
             f"{'p99 us':>7} {'p99.9 us':>8} {'peak MB':>8} {'B/order':>8}"]
    for d in depths:
        for name in ("project", "baseline"):
            f = figures["depths"][str(d)][name]
            per = f["bytes_per_resting_order"]
            resting = f"{f['resting_before']}->{f['resting_after']}"
            lines.append(f"{name:9} {d:>6} {resting:>15} {f['ops_per_s']:>9,} "
                         f"{f['p50_us']:>7} {f['p99_us']:>7} {f['p99.9_us']:>8} "
                         f"{f['peak_mb']:>8} {per if per else '-':>8}")
    floor = figures["floor"]
    lines.append(f"{'floor':9} {'':>6} {'':>15} {floor['ops_per_s']:>9,}   "
                 f"(the events' records alone, no matching)")
    lines.append("")
    for d in depths:
        f = figures["depths"][str(d)]
        lines.append(f"depth {d:>6}: project/baseline ops/s = {f['project_over_baseline']:.2f} "
                     f"(project drains: {f['project']['drain_us_per_command']} us CPU per "
                     f"command, included)")
    lines.append(f"floor/baseline ops/s = {floor['over_baseline']:.2f}: the records "
                 f"alone, made from interpreted code")
    for name in ("project", "baseline"):
        key = f"{name}_deep_over_empty"
        if key in figures:
            lines.append(f"{name} depth {depths[-1]} / depth {depths[0]} ops/s = "
                         f"{figures[key]:.2f}")
    return lines


def targets(figures: dict, depths: list[int]) -> dict:
    """The issue's matching-core targets, as far as these depths can tell."""
    by = figures["depths"]
    out = {"project_ge_1_5x_baseline": all(by[str(d)]["project_over_baseline"] >= 1.5
                                           for d in depths)}
    if depths[0] == 0 and depths[-1] > 0:
        out["deep_ge_0_8x_empty"] = figures["project_deep_over_empty"] >= 0.8
        deep = by[str(depths[-1])]
        out["memory_per_order_below_baseline"] = (
            deep["project"]["bytes_per_resting_order"] <
            deep["baseline"]["bytes_per_resting_order"])
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200_000, help="commands per pass")
    parser.add_argument("--depths", default="0,10000,50000",
                        help="resting orders per side placed before timing")
    parser.add_argument("--prefill", choices=("outside", "inside"), default="outside",
                        help="where the prefilled orders rest (default: outside the "
                             "stream's limit prices)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cancels", type=float, default=0.0,
                        help="share of commands that cancel a recent limit order (default 0)")
    parser.add_argument("--batch", type=int, default=100,
                        help="commands per drain of the project's changes (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per engine")
    parser.add_argument("--baseline", type=Path, default=BASELINE,
                        help="the reference baseline_book.py")
    parser.add_argument("--no-write", action="store_true", help="do not write a JSON result")
    args = parser.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    Baseline.module = load_baseline(args.baseline)
    stream = make_stream(args.orders, args.seed, args.cancels)
    command = (f"python -m bench.core --orders {args.orders} --depths {args.depths} "
               f"--prefill {args.prefill} --seed {args.seed} --cancels {args.cancels} "
               f"--batch {args.batch} --repeat {args.repeat}")
    figures: dict = {"orders": args.orders, "prefill": args.prefill, "seed": args.seed,
                     "cancels": args.cancels, "batch": args.batch, "repeat": args.repeat,
                     "throughput_clock": "process CPU time",
                     "engine_build": engine_build(),
                     "depths": {}}
    for d in depths:
        figures["depths"][str(d)] = run_depth(d, stream, args)
        print(f"depth {d} done", file=sys.stderr)
    floor = 1e9 / min(floor_ns(stream, args.batch) for _ in range(args.repeat))
    figures["floor"] = {"ops_per_s": round(floor), "over_baseline": round(
        floor / figures["depths"][str(depths[0])]["baseline"]["ops_per_s"], 2)}
    if len(depths) > 1:
        for name in ("project", "baseline"):
            figures[f"{name}_deep_over_empty"] = round(
                figures["depths"][str(depths[-1])][name]["ops_per_s"] /
                figures["depths"][str(depths[0])][name]["ops_per_s"], 2)
    figures["targets"] = targets(figures, depths)
    print(command)
    print(f"project engine: {figures['engine_build']}")
    print("\n".join(report(figures, depths)))
    for name, ok in figures["targets"].items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    if not args.no_write:
        print(f"written to {write_result('core', figures, command)}")
    return figures


if __name__ == "__main__":
    main()
