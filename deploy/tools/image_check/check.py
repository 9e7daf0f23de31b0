"""The run: every step and check, in order, and the clean-up."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import image_check
from image_check.chart import NAMESPACE, RELEASE, Pod, render
from image_check.images import (
    IMAGE,
    Docker,
    base_image,
    build_image,
    ensure_tools,
)
from image_check.probes import Database, bad_lines, health, log_lines, scrape, state
from image_check.shell import CheckFailed, free_port, run, say, step

BOOTSTRAP_SECRET = f"{RELEASE}-bootstrap-admin"

# Families each service's /metrics must have (declared at start, before any traffic).
EXPECTED_METRICS = {
    "matching": ("exchange_matching_queue_depth", "exchange_instruments_without_owner",
                 "exchange_journal_commit_seconds", "exchange_db_pool_max_connections"),
    "order": ("exchange_overload_limit", "exchange_order_latency_seconds",
              "exchange_grpc_server_handled", "exchange_db_pool_max_connections"),
    "marketdata": ("exchange_marketdata_subscribers", "exchange_marketdata_subscriber_limit",
                   "exchange_db_pool_max_connections"),
}


class Check:
    """One run of the check; ``main`` returns its exit status."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work_dir)
        self.docker = Docker(self.work)
        self.db = Database(args.postgres, args.database, args.redis)
        self.provided: dict[str, dict[str, str]] = {}
        self.failures: list[str] = []
        self.ports: dict[str, int] = {}
        self.metrics: dict[str, int] = {}
        self.workers: dict[str, int] = {}

    def step(self, title: str) -> contextlib.AbstractContextManager[None]:
        return step(title, self.failures)

    def fail(self, message: str) -> None:
        say(f"    FAIL {message}")
        self.failures.append(message)

    def main(self) -> int:
        total = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            self.steps()
        except CheckFailed as exc:
            self.fail(str(exc))
        except KeyboardInterrupt:
            self.fail("interrupted")
        finally:
            with self.step("clean up"):
                if self.docker.up():
                    self.docker.remove_containers()
                    say("    containers removed")
                with contextlib.suppress(Exception):
                    self.db.drop()
                    say(f"    database {self.db.name} dropped, Redis {self.db.redis_url} "
                        "flushed")
                self.docker.stop()
                say(f"    kept: the images {IMAGE} (docker and podman) and the base, as "
                    f"the cache of the next run; logs in {self.work}")
        elapsed = time.monotonic() - total
        if self.failures:
            say(f"image-check: FAILED after {elapsed:.0f} s:\n  - "
                + "\n  - ".join(f.splitlines()[0] for f in self.failures))
            return 1
        say(f"image-check: all checks passed in {elapsed:.0f} s")
        return 0

    def steps(self) -> None:
        with self.step("tools"):
            helm = ensure_tools()
        with self.step("base image (mmdebstrap)"):
            base = base_image(self.work)
        with self.step("image (podman build --isolation chroot -f deploy/Dockerfile)"):
            image_id = build_image(base, self.work)
        with self.step("to docker"):
            self.docker.start()
            self.docker.remove_containers()
            self.docker.load(image_id)
        image_user = run(self.docker.cli, "image", "inspect", "--format", "{{.Config.User}}",
                         IMAGE).stdout.strip()
        with self.step("render the chart (helm template)"):
            pods = self.pods(helm)
            for pod in pods.values():
                meta = pod.workload["metadata"]
                say(f"    {pod.component}: {pod.workload['kind']} {meta['name']} as "
                    f"{pod.pod_name}")
        with self.step(f"database {self.db.name}, Redis {self.db.redis_url}"):
            self.db.create()
        with self.step("migrate Job: install, then upgrade"):
            for attempt in ("install", "upgrade"):
                self.job(pods["migrate"], image_user, attempt)
        with self.step("engine: the compiled build is in the image"):
            probe = ("from matching_service.engine import MODULES, build_of; "
                     "missing = [m.__name__ for m in MODULES if build_of(m) is None]; "
                     "print('interpreted:', missing) if missing else print('compiled'); "
                     "raise SystemExit(1 if missing else 0)")
            proc = run(self.docker.cli, "run", "--rm",
                       *pods["matching"].docker_args(image_user, ["python", "-c", probe]),
                       check=False)
            if proc.returncode != 0:
                self.fail(f"matching engine not compiled in the image: {proc.stdout.strip()} "
                          f"{proc.stderr.strip()[-500:]}")
            else:
                say(f"    {proc.stdout.strip()}")
        services = [pods["matching"], pods["order"], pods["marketdata"]]
        for pod in services:
            with self.step(f"{pod.component}: start, gRPC health, metrics"):
                self.start(pod, image_user)
        with self.step("helm test Pod (grpc-health)"):
            self.job(pods["test"], image_user, "helm test")
        with self.step("a trade through the containers (exchange CLI, bootstrap admin key)"):
            self.trade()
        for pod in (pods["order"], pods["marketdata"], pods["matching"]):
            with self.step(f"{pod.component}: preStop, SIGTERM (docker stop)"):
                self.stop(pod)

    def pods(self, helm: str, extra_values: dict[str, str] | None = None) -> dict[str, Pod]:
        """The containers to run, from renders of the chart with ``extra_values`` on top
        of the check's own."""
        ports = {"order": free_port(), "marketdata": free_port(), "matching": free_port()}
        self.ports = ports
        self.metrics = {c: free_port() for c in ports}
        base = {
            "image.repository": IMAGE.split(":")[0], "image.tag": IMAGE.split(":")[1],
            "postgresql.url": self.db.url, "redis.url": self.db.redis_url,
            # Named Secrets (what the chart asks of offline renders); the check provides them.
            "internalAuth.existingSecret": f"{RELEASE}-internal-auth",
            "pageTokens.existingSecret": f"{RELEASE}-page-tokens",
            # The Job makes the first admin key from it (a Secret volume); the check
            # uses that key to open accounts and trade through the containers.
            "migrations.bootstrapAdminKeySecret": BOOTSTRAP_SECRET,
            "order.port": str(ports["order"]), "marketdata.port": str(ports["marketdata"]),
            "matching.port": str(ports["matching"]),
            # Two processes on the one port: the workers' start, their metrics (files in
            # a directory under /tmp) and their stop are checked too.
            "marketdata.config.workers": "2",
        }
        # One render per service: all share the host's network, so each gets a metrics
        # port of its own (the chart gives every pod the same one).
        renders = {c: render(helm, {**base, **(extra_values or {}),
                                    "metrics.port": str(self.metrics[c])})
                   for c in ports}
        prefix = f"{RELEASE}-exchange"
        hosts = [f"{prefix}-{c}.{NAMESPACE}.svc.cluster.local" for c in ("order", "marketdata")]
        hosts.append(f"{prefix}-matching-0.{prefix}-matching-headless.{NAMESPACE}.svc."
                     "cluster.local")
        volumes = self.work / "volumes"
        shutil.rmtree(volumes, ignore_errors=True)

        def pod(component: str, render_of: str, kind: str, name: str, pod_name: str) -> Pod:
            rendered = renders[render_of]
            return Pod(component, pod_name, rendered.get(kind, name), rendered, self.provided,
                       volumes, hosts)

        return {
            "migrate": pod("migrate", "order", "Job", f"{prefix}-migrate",
                           f"{prefix}-migrate-x7k2p"),
            "matching": pod("matching", "matching", "StatefulSet", f"{prefix}-matching",
                            f"{prefix}-matching-0"),
            "order": pod("order", "order", "Deployment", f"{prefix}-order",
                         f"{prefix}-order-5d8f9c7b6d-x7k2p"),
            "marketdata": pod("marketdata", "marketdata", "Deployment", f"{prefix}-marketdata",
                              f"{prefix}-marketdata-6c9d8b7f5c-q4w8z"),
            "test": pod("test", "order", "Pod", f"{prefix}-test-grpc-health",
                        f"{prefix}-test-grpc-health"),
        }

    def job(self, pod: Pod, image_user: str, what: str) -> None:
        deadline = int(pod.workload["spec"].get("activeDeadlineSeconds", 600))
        run(self.docker.cli, "rm", "-f", pod.name, check=False)
        start = time.monotonic()
        proc = run(self.docker.cli, "run", *pod.docker_args(image_user), check=False,
                   timeout=deadline)
        lines = log_lines(self.docker, pod.name)
        run(self.docker.cli, "rm", "-f", pod.name, check=False)
        took = time.monotonic() - start
        for line in lines[-4:]:
            say(f"    | {line[:200]}")
        if proc.returncode != 0:
            raise CheckFailed(f"{pod.component} ({what}) exited {proc.returncode}:\n"
                              + "\n".join(lines[-20:]))
        if pod.component != "test":
            # exchange-migrate prints its result as text; its logs, if any, are JSON.
            bad = bad_lines(lines, json_only=False)
            if bad:
                self.fail(f"{pod.component} ({what}) logged errors:\n" + "\n".join(bad[:10]))
        say(f"    {pod.component} ({what}): exit 0 in {took:.1f} s")

    def start(self, pod: Pod, image_user: str) -> None:
        run(self.docker.cli, "rm", "-f", pod.name, check=False)
        run(self.docker.cli, "run", "-d", *pod.docker_args(image_user))
        port = self.ports[pod.component]
        startup = pod.container.get("startupProbe") or {}
        grpc_port = (startup.get("grpc") or {}).get("port", port)
        budget = startup.get("periodSeconds", 2) * startup.get("failureThreshold", 30)
        started = time.monotonic()
        status = ""
        while time.monotonic() - started < budget:
            st = state(self.docker, pod.name)
            if not st["Running"]:
                raise CheckFailed(f"{pod.component} exited {st['ExitCode']} at start:\n"
                                  + "\n".join(log_lines(self.docker, pod.name)[-25:]))
            status = health(int(grpc_port), startup.get("timeoutSeconds", 2))
            if status == "SERVING":
                break
            time.sleep(startup.get("periodSeconds", 2) / 4)
        if status != "SERVING":
            raise CheckFailed(f"{pod.component}: gRPC health {status} after {budget} s:\n"
                              + "\n".join(log_lines(self.docker, pod.name)[-25:]))
        say(f"    gRPC health on {grpc_port}: SERVING after {time.monotonic() - started:.1f} s"
            f" (startup probe budget {budget} s)")
        workers_env = {"order": "EXCHANGE_ORDER_WORKERS",
                       "marketdata": "EXCHANGE_MARKETDATA_WORKERS"}.get(pod.component, "")
        workers = int(pod.env.get(workers_env) or pod.config_env().get(workers_env) or 1)
        top = run(self.docker.cli, "top", pod.name, "-o", "pid,args").stdout.splitlines()[1:]
        # worker 0 is the console script, the others `python -m <package>`
        processes = [line for line in top if re.search(f"{pod.component}[-_]service", line)]
        if len(processes) != workers:
            raise CheckFailed(f"{pod.component}: {len(processes)} service processes, "
                              f"{workers_env}={workers}:\n" + "\n".join(top) + "\n"
                              + "\n".join(log_lines(self.docker, pod.name)[-25:]))
        self.workers[pod.component] = workers
        say(f"    {len(processes)} service process{'es' if workers > 1 else ''}"
            + (f" ({workers_env}={workers})" if workers_env else ""))
        metrics_port = self.metrics[pod.component]
        if pod.env.get("EXCHANGE_METRICS_LISTEN", "").rpartition(":")[2] != str(metrics_port):
            raise CheckFailed(f"{pod.component}: EXCHANGE_METRICS_LISTEN is "
                              f"{pod.env.get('EXCHANGE_METRICS_LISTEN')!r}")
        families = scrape(metrics_port)
        missing = [m for m in EXPECTED_METRICS[pod.component] if m not in families]
        if missing:
            raise CheckFailed(f"{pod.component}: /metrics on {metrics_port} lacks {missing}")
        say(f"    metrics on {metrics_port}: HTTP 200, {len(families)} families, with "
            + ", ".join(EXPECTED_METRICS[pod.component]))
        if pod.component == "matching":  # it owns the instruments: none is left unowned
            deadline = time.monotonic() + 20
            while True:
                samples = scrape(metrics_port)["exchange_instruments_without_owner"]
                unowned = sum(s.value for s in samples)
                if unowned == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if unowned:
                self.fail(f"matching: exchange_instruments_without_owner {unowned}")
            else:
                say("    exchange_instruments_without_owner 0: it owns every instrument")

    def cli(self, *args: str, key: str = "") -> Any:
        """The exchange CLI (this checkout's client) against the containers, --json."""
        addrs = ["--order-addr", f"127.0.0.1:{self.ports['order']}",
                 "--marketdata-addr", f"127.0.0.1:{self.ports['marketdata']}", "--json"]
        auth = ["--admin-key", self.provided[BOOTSTRAP_SECRET]["admin-key"]] \
            if args[0] == "admin" else ["--api-key", key]
        proc = run(sys.executable, "-m", "exchange_client", *args, *addrs, *auth, timeout=60)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def trade(self) -> None:
        """Two accounts, funds, a buy and a sell that cross on BTC-USD: the order service
        routes both to the matching container (its headless-Service name and the internal
        token), and the trade reaches the market-data container through Redis."""
        keys = {}
        for name, asset, amount in (("ic-buyer", "USD", "100000"), ("ic-seller", "BTC", "1")):
            self.cli("admin", "account", "create", name)
            made = self.cli("admin", "key", "create", name)
            keys[name] = made["secret"]
            self.cli("admin", "deposit", "--key", f"{name}-deposit", name, asset, amount)
        self.cli("order", "create", "BTC-USD", "sell", "0.01", "--price", "50000",
                 key=keys["ic-seller"])
        bought = self.cli("order", "create", "BTC-USD", "buy", "0.01", "--price", "50000",
                          key=keys["ic-buyer"])
        say(f"    order service: buy {json.dumps(bought)[:160]}")
        deadline = time.monotonic() + 15
        while True:
            trades = self.cli("trades", "BTC-USD", key=keys["ic-buyer"])
            items = trades if isinstance(trades, list) else (trades or {}).get("trades", [])
            if items or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not items:
            raise CheckFailed(f"no BTC-USD trade at the market-data service: {trades}")
        say(f"    market-data service: {json.dumps(items[0])[:160]}")

    def stop(self, pod: Pod) -> None:
        started = time.monotonic()
        pre_stop = ((pod.container.get("lifecycle") or {}).get("preStop") or {}).get("exec")
        if pre_stop:  # the kubelet runs the hook first; it counts against the grace period
            run(self.docker.cli, "exec", pod.name, *pre_stop["command"])
        remaining = max(1, int(pod.grace - (time.monotonic() - started)))
        run(self.docker.cli, "stop", "-t", str(remaining), pod.name, timeout=pod.grace + 30)
        took = time.monotonic() - started
        st = state(self.docker, pod.name)
        lines = log_lines(self.docker, pod.name)
        messages = [json.loads(line).get("msg") for line in lines
                    if line.startswith("{") and line.endswith("}")]
        hook = f"preStop {' '.join(pre_stop['command'])}, " if pre_stop else ""
        if st["ExitCode"] != 0 or st.get("OOMKilled"):
            self.fail(f"{pod.component}: exit code {st['ExitCode']} (OOMKilled "
                      f"{st.get('OOMKilled')}) after SIGTERM:\n" + "\n".join(lines[-15:]))
        elif took >= pod.grace:
            self.fail(f"{pod.component}: took {took:.1f} s, the grace period is {pod.grace} s")
        elif messages.count("stopped") != self.workers.get(pod.component, 1):
            self.fail(f"{pod.component}: {messages.count('stopped')} 'stopped' log lines "
                      f"after SIGTERM, {self.workers.get(pod.component, 1)} processes:\n"
                      + "\n".join(lines[-10:]))
        else:
            say(f"    {hook}SIGTERM: exit 0 in {took:.1f} s of {pod.grace} s; 'stopped' logged "
                f"by {messages.count('stopped')} process(es)")
        bad = bad_lines(lines)
        if bad:
            self.fail(f"{pod.component} logged errors:\n" + "\n".join(bad[:10]))
        warnings = [line for line in lines if '"level": "WARNING"' in line]
        for line in warnings[:5]:
            say(f"    warning logged: {line[:240]}")


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: the clean-up runs


def main() -> int:
    signal.signal(signal.SIGTERM, interrupted)
    parser = argparse.ArgumentParser(description=(image_check.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get(
        "EXCHANGE_IMAGE_CHECK_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (a database is created and dropped in it)")
    parser.add_argument("--database", default="exchange_image_check")
    parser.add_argument("--redis", default=os.environ.get(
        "EXCHANGE_IMAGE_CHECK_REDIS", "redis://127.0.0.1:6379/14"),
        help="Redis db of the check's own (flushed at start and end)")
    parser.add_argument("--work-dir", default=os.environ.get(
        "EXCHANGE_IMAGE_CHECK_DIR", str(Path(tempfile.gettempdir()) / "exchange-image-check")),
        help="logs and scratch files")
    return Check(parser.parse_args()).main()

