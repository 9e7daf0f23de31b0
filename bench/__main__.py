"""``python -m bench``: the benchmarks.

    python -m bench quick              # what `make bench` runs: a few minutes in all
    python -m bench list               # the benchmarks there are
    python -m bench <name> [args...]   # = python -m bench.<name> [args...]
    python -m bench compare A.json B.json [--check]   # two results side by side

``quick`` runs short versions of the seed scenario through the load generator
(unary and the order-entry stream, 1 and 100 orders per message, with the echo
floor in the same run), then the matching-core benchmark (``bench.core``) and
the group-commit benchmark (``bench.commit``) and the market-data fan-out
benchmark (``bench.fanout``) when they exist, and
prints one summary of their figures (each also writes its own JSON result to
``bench/results/``). ``--skip core,commit,fanout`` leaves some out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

from bench.results import RESULTS, write_result

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = {
    "loadgen": "open-loop load on order entry (presets seed, ramp, cancel-heavy, deep-book)",
    "echo": "the echo OrderService (the transport floor), as a server",
    "core": "the matching core alone against the reference baseline",
    "commit": "group commit alone: PostgreSQL CPU per order at several batch sizes",
    "fanout": "market-data fan-out to many subscribers during the seed scenario",
    "recovery": "recovery time of a matching pod",
    "failover": "failover time to a standby matching pod",
    "queue_compare": "a NATS JetStream append (a queue in front) against the group commit",
    "jsclient": "the seed scenario, unary, from @grpc/grpc-js (Node.js): an independent client",
    "capacity": "orders/s at P99 <= 100 ms per instruments x matching pods, subscribers per "
                "market-data worker count, CPU per order and the cost table (issue 15)",
}

# The quick set. Options of the other benchmarks are passed only when their
# --help names them (they are maintained separately).
QUICK_LOADGEN = ["--preset", "seed", "--duration", "15", "--mode", "unary,stream",
                 "--batch", "1,100", "--target", "both", "--echo-duration", "10",
                 "--name", "quick-loadgen"]
QUICK_CORE = [("--orders", "50000"), ("--repeat", "1")]
QUICK_COMMIT = ["--batch", "1,10,100,1000", "--orders", "5000"]
QUICK_FANOUT = [("--subscribers", "100"), ("--duration", "10"), ("--slow", "with")]


def exists(name: str) -> bool:
    return importlib.util.find_spec(f"bench.{name}") is not None


def _supported(module: str, wanted: list[tuple[str, str]]) -> list[str]:
    try:
        text = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    out: list[str] = []
    for flag, value in wanted:
        if flag in text:
            out += [flag, value]
    return out


def _new_results(since: float, prefix: str) -> list[Path]:
    if not RESULTS.exists():
        return []
    return sorted(p for p in RESULTS.glob(f"{prefix}*.json") if p.stat().st_mtime >= since)


def _flatten(d, prefix: str = "", out: list | None = None, limit: int = 40) -> list:
    out = [] if out is None else out
    if isinstance(d, dict):
        for k, v in d.items():
            if len(out) >= limit:
                break
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, limit)
    elif isinstance(d, int | float) and not isinstance(d, bool):
        out.append((prefix, d))
    return out


def _loadgen_lines(figures: dict) -> list[str]:
    lines = []
    ratios = {r["run"]: r["ratio"] for r in figures.get("ratios_to_echo", [])}
    for r in figures["runs"]:
        lat = r["creates"]["latency_ms"]
        ratio = ratios.get(r["label"])
        lines.append(
            f"  {r['label']:<22} achieved {r.get('rate_achieved') or 0:>7.0f}/s  "
            f"P50 {lat['p50'] or 0:>8.2f} ms  P99 {lat['p99'] or 0:>8.2f} ms  "
            f"errors {r['error_count']:>6}  server CPU/op "
            f"{r.get('server_cpu_per_op_us') or 0:>7.1f} us"
            + (f"  = {ratio:.2f}x echo" if ratio else ""))
    return lines


def _core_lines(figures: dict) -> list[str]:
    lines = []
    for depth, d in figures["depths"].items():
        lines.append(f"  depth {depth:>6}/side: project {d['project']['ops_per_s']:>9,.0f} ops/s, "
                     f"baseline {d['baseline']['ops_per_s']:>9,.0f} ops/s = "
                     f"{d['project_over_baseline']:.2f}x")
    for name, value in figures.get("targets", {}).items():
        lines.append(f"  target {name}: {value}")
    return lines


def _commit_lines(figures: dict) -> list[str]:
    return [f"  {r['batch']:>5} orders per commit: PostgreSQL {r['postgres_cpu_us_per_order']:>6} "
            f"us CPU per order, {r['wall_ms_per_commit']} ms per commit, "
            f"{r['orders_per_second']:,} orders/s" for r in figures["runs"]]


def _fanout_lines(figures: dict) -> list[str]:
    lines = []
    for r in figures["runs"]:
        lag = r["lag_ms"]
        slow = " + slow one" if r["slow_subscriber"] else ""
        lines.append(f"  {r['subscribers']:>5} subscribers{slow}: lag P50 {lag['p50_ms']} ms "
                     f"P99 {lag['p99_ms']} ms, orders {r['order_rate_achieved']}/s, "
                     f"gaps {r['sequence_gaps']}")
    return lines


def run_step(title: str, argv: list[str], prefix: str) -> dict:
    print(f"\n=== {title}: python {' '.join(argv)}", flush=True)
    since = time.time() - 1
    t = time.monotonic()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT)
    step = {"command": "python " + " ".join(argv), "exit_code": proc.returncode,
            "seconds": round(time.monotonic() - t, 1),
            "results": [str(p.relative_to(ROOT)) for p in _new_results(since, prefix)]}
    return step


def quick(args: argparse.Namespace) -> int:
    skip = set(filter(None, (args.skip or "").split(",")))
    steps: dict[str, dict] = {}
    t0 = time.monotonic()
    if "loadgen" not in skip:
        steps["loadgen"] = run_step("seed scenario, short (load generator + echo floor)",
                                    ["-m", "bench.loadgen", *QUICK_LOADGEN], "quick-loadgen")
    if "core" not in skip:
        if exists("core"):
            steps["core"] = run_step("matching core",
                                     ["-m", "bench.core", *_supported("bench.core",
                                                                      QUICK_CORE)], "core")
        else:
            print("\n=== matching core: bench/core.py is not there yet; skipped")
    if "commit" not in skip:
        steps["commit"] = run_step("group commit", ["-m", "bench.commit", *QUICK_COMMIT],
                                   "commit")
    if "fanout" not in skip:
        if exists("fanout"):
            steps["fanout"] = run_step("market-data fan-out",
                                       ["-m", "bench.fanout", *_supported("bench.fanout",
                                                                          QUICK_FANOUT)],
                                       "fanout")
        else:
            print("\n=== market-data fan-out: bench/fanout.py is not there yet; skipped")

    print("\n" + "=" * 100)
    print(f"bench quick: {time.monotonic() - t0:.0f} s")
    for name, step in steps.items():
        status = "ok" if step["exit_code"] == 0 else f"EXIT CODE {step['exit_code']}"
        print(f"\n{name} ({status}, {step['seconds']:.0f} s): {step['command']}")
        for rel in step["results"]:
            data = json.loads((ROOT / rel).read_text())
            print(f"  {rel}")
            figures = data.get("figures", {})
            summarize = {"loadgen": _loadgen_lines, "core": _core_lines,
                         "commit": _commit_lines, "fanout": _fanout_lines}.get(name)
            try:
                lines = summarize(figures) if summarize else None
            except (KeyError, TypeError, AttributeError, ValueError):
                lines = None  # another format: the figures as they are
            if lines is None:
                lines = [f"  {k}: {v}" for k, v in _flatten(figures)]
            print("\n".join(lines))
    path = write_result("quick", {"steps": steps}, "python -m bench quick"
                        + (f" --skip {args.skip}" if args.skip else ""))
    print(f"\nsummary written to {path}")
    return 0 if all(s["exit_code"] == 0 for s in steps.values()) else 1


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        from bench.compare import main as compare

        raise SystemExit(compare(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] in BENCHMARKS:
        name = sys.argv[1]
        if not exists(name):
            raise SystemExit(f"bench/{name}.py is not there")
        sys.argv = [f"python -m bench.{name}", *sys.argv[2:]]
        runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
        return
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quick", help="the quick set (make bench)")
    q.add_argument("--skip", help="comma-separated: loadgen, core, commit, fanout")
    sub.add_parser("list", help="the benchmarks")
    args = parser.parse_args()
    if args.command == "list":
        for name, text in BENCHMARKS.items():
            mark = "" if exists(name) else "   (not there yet)"
            print(f"{name:<10} {text}{mark}")
        return
    os.chdir(ROOT)
    raise SystemExit(quick(args))


if __name__ == "__main__":
    main()
