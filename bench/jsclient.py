"""``python -m bench.jsclient``: the seed scenario through unary calls from an independent
client, ``bench/js/seed.js`` (@grpc/grpc-js on Node.js: another gRPC implementation, not
the project's code), against an exchange started here as ``make run`` starts it.

    python -m bench.jsclient [--rate 2000] [--duration 60] [--procs 2] [--order-workers auto]

It installs the client's packages (``npm ci`` in ``bench/js``) when they are missing, starts
the exchange (embedded PostgreSQL and Redis in a temporary directory, 50 accounts), runs the
client, measures every server process's CPU over the run (``bench.cpu``), checks that every
acknowledged order is in PostgreSQL (and nothing else), and writes
``bench/results/jsclient-seed-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from bench.cpu import CpuProbe, Group
from bench.loadgen.targets import ExchangeTarget
from bench.results import write_result
from exchange_common.workers import worker_count

JS = Path(__file__).resolve().parent / "js"


def googleapis_protos() -> str:
    """Where google/rpc/status.proto is (googleapis-common-protos ships the .proto files)."""
    from google.rpc import status_pb2

    return str(Path(status_pb2.__file__).resolve().parents[2])


def ensure_packages() -> None:
    if (JS / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("bench.jsclient needs Node.js and npm (node 18 or newer)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_packages()
    target = ExchangeTarget(order_workers=args.order_workers)
    await target.start()
    try:
        groups = [*target.cpu_groups(), Group("client", [], server=False)]
        probe = CpuProbe(groups)
        before = probe.sample()
        proc = await asyncio.create_subprocess_exec(
            "node", str(JS / "seed.js"), "--addr", target.addr, "--keys",
            ",".join(target.keys), "--rate", str(args.rate), "--duration", str(args.duration),
            "--warmup", str(args.warmup), "--procs", str(args.procs), "--timeout",
            str(args.timeout), "--tag", "js", "--include", googleapis_protos(),
            stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        after = probe.sample()
        if proc.returncode != 0:
            raise SystemExit(f"seed.js exited with {proc.returncode}")
        result = json.loads(out)
        usage = probe.usage(before, after)
        seconds = after.at - before.at
        servers = sum(usage[name] for name in probe.server_names())
        # The client's own CPU is "other" to the probe: take it out of other.
        usage["other"] = max(0.0, usage["other"] - result["client_cpu_s"])
        usage["client"] = result["client_cpu_s"]
        assert target.stack is not None
        conn = await asyncpg.connect(target.stack.database_url)
        try:
            in_postgres = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE client_order_id LIKE 'js-%'")
        finally:
            await conn.close()
        result.update({
            "order_workers": f"{args.order_workers} ({worker_count(args.order_workers)})",
            "rate_achieved": round(result["ok"] / args.duration, 1),
            "cpu_cores": {k: round(v / seconds, 3) for k, v in usage.items()},
            "server_cpu_per_op_us": (round(servers / result["ok"] * 1e6, 1)
                                     if result["ok"] else None),
            "client_cpu_per_op_us": (round(result["client_cpu_s"] / result["sent"] * 1e6, 1)
                                     if result["sent"] else None),
            "durability": {"acknowledged": result["ok"], "in_postgres": in_postgres,
                           "exact": in_postgres == result["ok"]},
        })
        return result
    finally:
        await target.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jsclient",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--timeout", type=float, default=10, help="deadline per call, s")
    parser.add_argument("--order-workers", default="auto",
                        help="EXCHANGE_ORDER_WORKERS of the exchange (default auto)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    lat = result["latency_ms"]
    print(f"{result['client']}: {result['sent']} sent at {args.rate:.0f}/s for "
          f"{args.duration:.0f} s, {result['ok']} ok, errors {result['errors'] or 0}; "
          f"P50 {lat['p50']} ms, P90 {lat['p90']} ms, P99 {lat['p99']} ms, max {lat['max']} "
          f"ms; server CPU {result['server_cpu_per_op_us']} us/order; cores "
          f"{result['cpu_cores']}; in PostgreSQL {result['durability']}")
    command = "python -m bench.jsclient " + " ".join(sys.argv[1:] if argv is None else argv)
    path = write_result("jsclient-seed", result, command.strip())
    print(f"result: {path}")
    return 0 if result["durability"]["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
