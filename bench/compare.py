"""``python -m bench compare A.json B.json``: two result files side by side.

For continuous performance testing: run a benchmark on main (A) and on a change (B), on the
same machine, and compare before the change lands::

    python -m bench.loadgen --preset seed --mode unary,stream --name main      # on main
    python -m bench.loadgen --preset seed --mode unary,stream --name change    # on the change
    python -m bench compare bench/results/main-*.json bench/results/change-*.json

Load-generator results are compared run by run (the runs with the same label): the rate
achieved, errors, latency percentiles, server and load-generator CPU per operation, and the
CPU of processes outside the measurement (``other``: near zero when the machine was quiet;
a comparison against a noisy run says little). Other results are compared figure by figure
(every number both files have). Each row gives A, B and B/A; a row where B is worse than A
by more than ``--threshold`` (default 10%) is marked, and with ``--check`` the command exits
with status 1 when any is, so a script or CI job can stop a regression.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Figures where more is better; every other figure compared is better when smaller
# (latencies, CPU, errors). Matched against the last part of the figure's name.
MORE_IS_BETTER = ("rate_achieved", "ok", "ops_per_s", "orders_per_s", "speedup",
                  "ratio_to_baseline", "answered", "throughput")
# Figures that describe the run rather than measure it (not compared).
SETTINGS = ("rate_target", "duration_s", "warmup_s", "procs", "sessions", "batch", "sent",
            "seed", "count", "depth", "subscribers", "t", "from_s", "to_s", "seconds",
            "orders", "repeat", "cancels")


@dataclass
class Row:
    name: str
    a: float | None
    b: float | None
    more_is_better: bool

    @property
    def ratio(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a

    def worse(self, threshold: float) -> bool:
        """B is worse than A by more than ``threshold`` (a fraction). The CPU of other
        processes is not the change's doing: it only says how quiet the machine was."""
        if self.a is None or self.b is None or self.name.endswith("other"):
            return False
        if self.a == 0:
            return not self.more_is_better and self.b > 0
        change = (self.b - self.a) / abs(self.a)
        return change < -threshold if self.more_is_better else change > threshold


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"compare: cannot read {path}: {err}") from None
    if not isinstance(data, dict) or "figures" not in data:
        raise SystemExit(f"compare: {path} is not a result file of bench/ (no 'figures')")
    return data


def _more_is_better(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in MORE_IS_BETTER


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def loadgen_figures(run: dict[str, Any]) -> dict[str, float | None]:
    """The figures of one load-generator run that a comparison needs."""
    creates = run.get("creates", {}).get("latency_ms", {})
    steady: dict[str, Any] = next(
        (c for c in run.get("cpu", []) if c.get("window") == "steady"), {})
    return {
        "rate_achieved": _number(run.get("rate_achieved")),
        "errors": _number(run.get("error_count")),
        **{f"latency_ms.{p}": _number(creates.get(p))
           for p in ("p50", "p90", "p99", "p99_9", "max")},
        "server_cpu_per_op_us": _number(run.get("server_cpu_per_op_us")),
        "loadgen_cpu_per_op_us": _number(run.get("loadgen_cpu_per_op_us")),
        **{f"cpu_cores.{k}": _number(v) for k, v in steady.get("cpu_cores", {}).items()},
    }


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every number under ``value`` by its dotted name; lists of dicts by a ``label`` or
    ``name`` field when they have one (per-second series are left out)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("per_second", "settings", "segments", "environment", "plot"):
                continue
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            label = item.get("label") or item.get("name") if isinstance(item, dict) else None
            yield from flatten(item, f"{prefix}[{label if label else i}]")
    else:
        number = _number(value)
        if number is not None and prefix.rsplit(".", 1)[-1] not in SETTINGS:
            yield prefix, number


def rows(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    fa, fb = a["figures"], b["figures"]
    if "runs" in fa and "runs" in fb and all("creates" in r for r in fa["runs"] + fb["runs"]):
        runs_a = {r["label"]: r for r in fa["runs"]}
        runs_b = {r["label"]: r for r in fb["runs"]}
        out = []
        for label in [*runs_a, *(k for k in runs_b if k not in runs_a)]:
            ga = loadgen_figures(runs_a[label]) if label in runs_a else {}
            gb = loadgen_figures(runs_b[label]) if label in runs_b else {}
            for name in [*ga, *(k for k in gb if k not in ga)]:
                out.append(Row(f"{label}: {name}", ga.get(name), gb.get(name),
                               _more_is_better(name)))
        return out
    na, nb = dict(flatten(fa)), dict(flatten(fb))
    return [Row(name, na.get(name), nb.get(name), _more_is_better(name))
            for name in [*na, *(k for k in nb if k not in na)]]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.3g}"


def report(a_path: Path, b_path: Path, threshold: float) -> tuple[str, int]:
    a, b = load(a_path), load(b_path)
    lines = [f"A: {a_path}  ({a.get('date', '?')}; {a.get('command', '?')})",
             f"B: {b_path}  ({b.get('date', '?')}; {b.get('command', '?')})"]
    if a.get("benchmark") != b.get("benchmark"):
        lines.append(f"note: different benchmarks ({a.get('benchmark')} / "
                     f"{b.get('benchmark')}); only the figures both have are comparable")
    table = rows(a, b)
    width = max([len(r.name) for r in table] + [6])
    lines += ["", f"{'figure':<{width}}  {'A':>12}  {'B':>12}  {'B/A':>7}",
              "-" * (width + 39)]
    worse = 0
    for r in table:
        flag = ""
        if r.worse(threshold):
            worse += 1
            flag = "  worse"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        lines.append(f"{r.name:<{width}}  {_fmt(r.a):>12}  {_fmt(r.b):>12}  {ratio:>7}{flag}")
    noisy = [f"{name} {v:.2f}" for name, side in (("A", a), ("B", b))
             for v in [max((x for n, x in flatten(side["figures"])
                            if n.endswith("cpu_cores.other")), default=0.0)] if v > 0.1]
    lines.append("")
    if noisy:
        lines.append("note: CPU of other processes during the run (cores): " + ", ".join(noisy)
                     + "; a figure of a noisy run is not comparable")
    lines.append(f"{worse} figure(s) of B worse than A by more than {threshold:.0%}"
                 if worse else f"no figure of B worse than A by more than {threshold:.0%}")
    return "\n".join(lines), worse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="the result file to compare against (e.g. main)")
    parser.add_argument("b", type=Path, help="the result file of the change")
    parser.add_argument("--threshold", type=float, default=0.10,
                        help="a change worse than this fraction is marked (default 0.10)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a figure of B is worse than A")
    args = parser.parse_args(argv)
    text, worse = report(args.a, args.b, args.threshold)
    print(text)
    return 1 if args.check and worse else 0


if __name__ == "__main__":
    sys.exit(main())
