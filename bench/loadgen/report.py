"""Summary tables, ratios to the echo floor, and the PNG plot."""

from __future__ import annotations

from pathlib import Path


def _f(v, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


def summary(runs: list[dict], ratios: list[dict]) -> str:
    parts = []
    rows = []
    for r in runs:
        lat = r["creates"]["latency_ms"]
        rows.append([r["label"], _f(r.get("rate_target"), "{:.0f}"),
                     _f(r.get("rate_achieved"), "{:.0f}"),
                     _f(lat["p50"], "{:.2f}"), _f(lat["p90"], "{:.2f}"),
                     _f(lat["p95"], "{:.2f}"), _f(lat["p99"], "{:.2f}"),
                     _f(lat["p99_9"], "{:.2f}"), _f(lat["max"], "{:.1f}"),
                     str(r["error_count"]), _f(r.get("commands_per_message"), "{:.1f}"),
                     _f(r.get("server_cpu_per_op_us")), _f(r.get("loadgen_cpu_per_op_us"))])
    parts.append("Latency of creates in ms, from the scheduled send time (open loop); "
                 "achieved = creates answered OK per second in the steady window;\n"
                 "CPU in microseconds per operation done (creates and cancels answered OK) in "
                 "the steady window.")
    parts.append(_table(["run", "target/s", "achieved/s", "P50", "P90", "P95", "P99", "P99.9",
                         "max", "errors", "cmd/msg", "server CPU/op us", "loadgen CPU/op us"],
                        rows))

    cancel_rows = [[r["label"], str(r["cancels"]["sent"]),
                    str(r["cancels"]["ok"] - r["cancels"]["too_late"]),
                    str(r["cancels"]["too_late"]),
                    _f(r["cancels"]["latency_ms"]["p50"], "{:.2f}"),
                    _f(r["cancels"]["latency_ms"]["p99"], "{:.2f}")]
                   for r in runs if r["cancels"]["sent"]]
    if cancel_rows:
        parts.append(_table(["cancels", "sent", "cancelled", "too late (filled)", "P50 ms",
                             "P99 ms"],
                            cancel_rows))

    names: list[str] = []
    for r in runs:
        for w in r["cpu"][:1]:
            for k in w["cpu_cores"]:
                if k not in names:
                    names.append(k)
    cpu_rows = []
    for r in runs:
        if not r["cpu"] or r.get("ramp"):
            continue
        w = r["cpu"][0]
        cpu_rows.append([r["label"], f"{w['seconds']:.1f}", str(w["operations"])]
                        + [_f(w["cpu_cores"].get(k), "{:.2f}") for k in names])
    if cpu_rows:
        parts.append("CPU in cores (CPU seconds per second) over the steady window:")
        parts.append(_table(["run", "window s", "ops", *names], cpu_rows))

    inst_rows = []
    for r in runs:
        if len(r.get("instruments") or []) < 2:
            continue
        owner = (r.get("durability") or {}).get("owner_pod", {})
        stored = (r.get("durability") or {}).get("orders_per_instrument", {})
        for i in r["instruments"]:
            lat = i["latency_ms"]
            inst_rows.append([r["label"], i["symbol"], owner.get(i["symbol"], "-"),
                              str(i["sent"]), str(i["ok"]), str(i["errors"]),
                              _f(i.get("rate_achieved"), "{:.0f}"),
                              _f(lat["p50"], "{:.2f}"), _f(lat["p99"], "{:.2f}"),
                              str(stored.get(i["symbol"], "-"))])
    if inst_rows:
        parts.append("Per instrument (creates; latency from the scheduled send time):")
        parts.append(_table(["run", "instrument", "matching pod", "sent", "ok", "errors",
                             "achieved/s", "P50 ms", "P99 ms", "in PostgreSQL"], inst_rows))

    for r in runs:
        if r["errors"]:
            parts.append(f"errors of {r['label']}: " + ", ".join(
                f"{k} {v}" for k, v in sorted(r["errors"].items())))
            for code, text in r.get("error_examples", {}).items():
                parts.append(f"  e.g. {code}: {text}")
        d = r.get("durability")
        if d and d.get("checked"):
            parts.append(f"durability of {r['label']}: {d['in_postgres']} of "
                         f"{d['acknowledged']} acknowledged orders found in PostgreSQL"
                         + (f", MISSING {d['missing']}: {d['missing_examples']}"
                            if d["missing"] else " (all)"))
        g = r["generator"]
        if g["late_issues"]:
            parts.append(f"note: {r['label']}: the generator issued {g['late_issues']} orders "
                         f"more than 10 ms late (max {g['max_issue_lag_ms']} ms); their "
                         "latency counts from the scheduled time all the same")
        if r.get("ramp"):
            ramp = r["ramp"]
            parts.append(_table(
                ["ramp step /s", "achieved/s", "P50 ms", "P99 ms", "max ms", "errors",
                 "server CPU/op us", "kept", "P99 within bound"],
                [[_f(s["rate"], "{:.0f}"), _f(s["achieved"], "{:.0f}"), _f(s["p50"], "{:.2f}"),
                  _f(s["p99"], "{:.2f}"), _f(s["max"], "{:.1f}"), str(s["errors"]),
                  _f(s["server_cpu_per_op_us"]), "yes" if s["kept"] else "no",
                  "yes" if s["pass"] else "no"]
                 for s in ramp["steps"]]))
            parts.append(f"{r['label']}: highest rate with P99 <= {ramp['p99_bound_ms']} ms: "
                         f"{_f(ramp['highest_rate_within_bound'], '{:.0f}')} orders/s; "
                         "highest rate kept (>= 95% answered OK, no errors): "
                         f"{_f(ramp['highest_rate_sustained'], '{:.0f}')} orders/s")

    if ratios:
        parts.append("Server CPU per operation against the bare transport (echo), same run:")
        parts.append(_table(
            ["run", "exchange us/op", "echo us/call", "ratio"],
            [[x["run"], _f(x["exchange_us"]), _f(x["echo_us"]), _f(x["ratio"], "{:.2f}x")]
             for x in ratios]))
    return "\n\n".join(parts)


def ratios(runs: list[dict]) -> list[dict]:
    out = []
    echo = {(r["mode"], r["batch"]): r for r in runs if r["target"] == "echo"}
    for r in runs:
        if r["target"] != "exchange":
            continue
        e = echo.get((r["mode"], r["batch"]))
        if e is None or not r.get("server_cpu_per_op_us") or not e.get("server_cpu_per_op_us"):
            continue
        out.append({"run": r["label"], "mode": r["mode"], "batch": r["batch"],
                    "exchange_us": r["server_cpu_per_op_us"],
                    "echo_us": e["server_cpu_per_op_us"],
                    "ratio": round(r["server_cpu_per_op_us"] / e["server_cpu_per_op_us"], 2)})
    return out


def plot(runs: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    n = len(runs)
    fig, axes = plt.subplots(n, 2, figsize=(13, 3.2 * n), squeeze=False)
    for row, r in zip(axes, runs, strict=True):
        s = r["per_second"]
        t = [x["t"] for x in s]
        ax = row[0]
        for key, style in (("p50", "-"), ("p90", "-"), ("p99", "-"), ("max", ":")):
            ax.plot(t, [x[key] if x[key] is not None else float("nan") for x in s], style,
                    label=key.upper() if key != "max" else "max")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel("latency ms")
        ax.set_title(f"{r['label']}: latency by scheduled second", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        ax = row[1]
        ax.plot(t, [x["ok"] for x in s], label="creates answered OK/s")
        if r["cancels"]["sent"]:
            ax.plot(t, [x["ops"] for x in s], label="all answers/s (creates + cancels)")
        ax.plot(t, [x["target"] for x in s], "--", label="target/s")
        errs = [x["errors"] for x in s]
        if any(errs):
            ax.plot(t, errs, label="errors/s")
        ax.set_ylabel("orders/s")
        top = max([x["ok"] for x in s] + [x["ops"] for x in s] + [x["target"] for x in s]
                  + errs + [1])
        ax.set_ylim(0, top * 1.1)
        ax.set_title(f"{r['label']}: throughput", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for row in axes[-1:]:
        for ax in row:
            ax.set_xlabel("seconds")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.2 * n)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
