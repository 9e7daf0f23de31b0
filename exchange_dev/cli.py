"""``exchange-dev`` (``make run``): the whole exchange on one machine.

Starts, unless URLs are given, an embedded PostgreSQL and Redis with their
data in ``./.data/`` (kept between runs), applies the migrations, seeds the
instruments and the demo accounts ``alice`` and ``bob``, then starts the
matching, order and market-data services as child processes and prints where
they listen and how to place a first order. Ctrl-C or SIGTERM stops
everything in order (services, then Redis and PostgreSQL) and exits 0; a
service that dies on its own stops everything with a non-zero exit.

A topology (``exchange-dev --shards 3 --standbys 1 --order-workers 2 --md-workers 2``,
``make run SHARDS=3 STANDBYS=1 ORDER_WORKERS=2 MD_WORKERS=2``): matching pods
``matching-0`` .. ``matching-<N-1>`` each own a group of the instruments, then the
standbys, wired as the Helm chart wires its StatefulSet (``exchange_dev.topology``: the
groups, how they are made, the dev instruments a sharded run adds;
``exchange_dev.matching_pods``: names and ports). The banner shows each pod with its pid
and the instruments it owns; ownership changes are logged as they happen
(``exchange_dev.owners``). A matching pod that dies no longer stops everything: a standby
takes its instruments and the pod is started again after a back-off, as Kubernetes
would (``exchange_dev.supervisor``). The order service, market data, PostgreSQL and Redis
are not restarted: their death still stops everything. Without these options it is the
single matching process owning every instrument, as always.

Environment (``exchange_dev.settings.DevSettings``; a malformed variable stops it with a
message naming it):

- ``EXCHANGE_DATA_DIR``: where the embedded servers keep their data (``.data``).
- ``EXCHANGE_DATABASE_URL`` / ``EXCHANGE_REDIS_URL``: use these servers
  instead of embedded ones.
- ``EXCHANGE_EMBEDDED_PG_PORT`` (55432) / ``EXCHANGE_EMBEDDED_REDIS_PORT``
  (56379): ports of the embedded servers.
- ``EXCHANGE_DEV_API_KEYS``: ``alice=KEY1,bob=KEY2``. Without it, random keys
  are made on the first run and kept in ``.data/dev-api-keys``. The demo accounts are
  in the rate tier ``dev`` (limits no single machine reaches).
- ``EXCHANGE_DEV_ADMIN_KEY``: the admin key (``exchange admin ...``). Without it, one
  is made on the first run and kept in ``.data/dev-admin-key``.
- ``EXCHANGE_ORDER_LISTEN``, ``EXCHANGE_MATCHING_LISTEN``,
  ``EXCHANGE_MATCHING_ADVERTISE``, ``EXCHANGE_MARKETDATA_LISTEN``: as for the
  services themselves.
- ``EXCHANGE_DEV_SHARDS``, ``EXCHANGE_DEV_STANDBYS``, ``EXCHANGE_DEV_GROUPS``,
  ``EXCHANGE_ORDER_WORKERS``, ``EXCHANGE_MARKETDATA_WORKERS``: the topology, as the
  options (an option wins over its variable). ``EXCHANGE_DEV_RESTART_BACKOFF`` (1 s): the
  first delay before a dead matching pod is started again.
- ``EXCHANGE_DEV_TLS=1`` (or ``exchange-dev --tls``, ``make run TLS=1``): TLS on the
  public ports and mutual TLS between the order service and matching, with
  certificates made on the first run and kept in ``.data/tls/``
  (``exchange_dev.certs``). Without it the public ports are plaintext and
  the order service authenticates to matching with a random shared token
  (``EXCHANGE_INTERNAL_TOKEN`` when set; ``EXCHANGE_PAGE_TOKEN_KEY`` likewise).

Every other ``EXCHANGE_*`` variable goes to the services as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from exchange_common.config import OrderSettings, load
from exchange_common.keys import ADMIN_KEY_KIND, new_key
from exchange_dev.accounts import parse_dev_keys
from exchange_dev.matching_pods import MatchingPods
from exchange_dev.owners import Owner, OwnershipWatch
from exchange_dev.settings import DevSettings
from exchange_dev.stack import Stack
from exchange_dev.supervisor import Supervisor
from exchange_dev.topology import MAX_SHARDS, MAX_STANDBYS, Topology, parse_groups

log = logging.getLogger("exchange-dev")

DEMO_ACCOUNTS = ("alice", "bob")
KEYS_FILE = "dev-api-keys"
ADMIN_KEY_FILE = "dev-admin-key"


def load_dev_keys(settings: DevSettings) -> tuple[dict[str, str], str]:
    """The demo accounts' API keys and where they came from.

    ``EXCHANGE_DEV_API_KEYS`` wins; otherwise ``<data_dir>/dev-api-keys``;
    otherwise new random keys, saved there (mode 600) for the next runs.
    """
    if settings.dev_api_keys:
        return settings.api_keys, "EXCHANGE_DEV_API_KEYS"
    data_dir = settings.data_dir.absolute()
    path = data_dir / KEYS_FILE
    if path.exists():
        try:
            keys = parse_dev_keys(",".join(path.read_text().split()))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        if all(name in keys for name in DEMO_ACCOUNTS):
            return keys, str(path)
    else:
        keys = {}
    for name in DEMO_ACCOUNTS:
        keys.setdefault(name, secrets.token_urlsafe(24))
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{name}={key}\n" for name, key in keys.items()))
    os.chmod(path, 0o600)
    return keys, str(path)


def load_dev_admin_key(settings: DevSettings) -> str:
    """``EXCHANGE_DEV_ADMIN_KEY``, else the one kept in ``<data_dir>/dev-admin-key``, else a
    new one saved there (mode 600)."""
    if settings.dev_admin_key:
        return settings.dev_admin_key
    data_dir = settings.data_dir.absolute()
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    key = new_key(ADMIN_KEY_KIND)[0]
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def banner(stack: Stack, keys_source: str, pods: MatchingPods | None = None,
           owners: dict[str, Owner] | None = None) -> str:
    """What ``make run`` prints once everything is up; with ``pods`` (a topology) the
    matching pods' table with ``owners`` instead of the one matching line."""
    alice = stack.keys.get("alice") or next(iter(stack.keys.values()), "KEY")
    rows = [
        ("order service", stack.order_addr, stack.listen["order"]),
        ("market data", stack.marketdata_addr, stack.listen["marketdata"]),
    ]
    if pods is None:
        rows.append(("matching", stack.matching_addr, stack.listen["matching"]))
    lines = ["", "=" * 78, "  Exchange is running.  Ctrl-C to stop.", "=" * 78, ""]
    for label, addr, listen in rows:
        lines.append(f"  {label:<15} {addr:<22} (gRPC, listening on {listen})")
    cli = f"--ca-file {_short_path(stack.certs.ca)} " if stack.certs is not None else ""
    if pods is not None:
        lines += pods.banner_lines(owners or {}, f"EXCHANGE_ADMIN_KEY={stack.admin_key} "
                                   f".venv/bin/exchange {cli}admin instrument list")
    lines.append("")
    lines.append("  Metrics (Prometheus):")
    for label, name in (("order service", "order"), ("market data", "marketdata")):
        lines.append(f"    {label:<13} {stack.metrics_url(name)}")
    if pods is None:
        lines.append(f"    {'matching':<13} {stack.metrics_url('matching')}")
    else:
        lines += pods.metrics_lines()
    lines.append("    live view: .venv/bin/exchange top")
    pg_note = f"embedded, data in {stack.pg.data_dir}" if stack.pg else "external"
    redis_note = f"embedded, data in {stack.redis.data_dir}" if stack.redis else "external"
    lines += [
        f"  {'PostgreSQL':<15} {stack.database_url}  ({pg_note})",
        f"  {'Redis':<15} {stack.redis_url}  ({redis_note})",
        "",
        f"  API keys (from {keys_source}):",
    ]
    for name, key in stack.keys.items():
        account = stack.account_ids.get(name)
        lines.append(f"    {name:<8} {key}" + (f"   (account {account})" if account else ""))
    lines += ["", f"  Admin key (x-admin-key): {stack.admin_key}"]
    body = ('{"instrument": "BTC-USD", "side": "SIDE_BUY", "type": "ORDER_TYPE_LIMIT", '
            '"time_in_force": "TIME_IN_FORCE_GTC", "price": "70000", "quantity": "0.01"}')
    cli, grpcurl = "", "-plaintext"
    if stack.certs is not None:
        ca = _short_path(stack.certs.ca)
        cli, grpcurl = f"--ca-file {ca} ", f"-cacert {ca}"
        lines += [
            "",
            f"  TLS on the public ports; certificates in {_short_path(stack.certs.directory)}",
            f"  (CA {ca}); the order service reaches matching with mutual TLS.",
            "  Clients: --ca-file (or EXCHANGE_TLS_CA_FILE) with the exchange CLI, -cacert",
            "  with grpcurl.",
        ]
    lines += [
        "",
        "  Place a first order:",
        f"    EXCHANGE_API_KEY={alice} .venv/bin/exchange {cli}order create BTC-USD buy 0.01 "
        "--price 70000",
        "",
        "  Or with grpcurl:",
        f"    grpcurl -H 'x-api-key: {alice}' {grpcurl} -d '{body}' \\",
        f"      {stack.order_addr} exchange.order.v1.OrderService/CreateOrder",
        "",
        "  Every account here is funded (10^8 of each base asset, 10^12 of each quote):",
        f"    EXCHANGE_API_KEY={alice} .venv/bin/exchange {cli}balances",
        "",
        "  Operate it (accounts, keys, instruments, deposits, check-balances, the audit log):",
        f"    EXCHANGE_ADMIN_KEY={stack.admin_key} .venv/bin/exchange {cli}admin "
        "instrument list",
        "",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


def _short_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def build_stack(settings: DevSettings, tls: bool = False) -> tuple[Stack, str]:
    """The dev stack ``settings`` describe, and where its keys come from. ``tls`` (or
    ``EXCHANGE_DEV_TLS``): TLS with the dev certificates."""
    keys, source = load_dev_keys(settings)
    stack = Stack(
        database_url=settings.database_url or None,
        redis_url=settings.redis_url or None,
        data_dir=settings.data_dir.absolute(),
        pg_port=settings.embedded_pg_port,
        redis_port=settings.embedded_redis_port,
        keys=keys,
        admin_key=load_dev_admin_key(settings),
        order_listen=settings.order_listen,
        matching_listen=settings.matching_listen,
        matching_advertise=settings.matching_advertise or None,
        marketdata_listen=settings.marketdata_listen,
        tls=tls or settings.dev_tls,
        internal_token=settings.internal_token or None,
        page_token_key=settings.page_token_key or None,
        order_workers=settings.order_workers,
        service_env={"marketdata": {
            "EXCHANGE_MARKETDATA_WORKERS": str(settings.marketdata_workers)}},
        metrics_listen={"order": settings.order_metrics_listen,
                        "matching": settings.matching_metrics_listen,
                        "marketdata": settings.marketdata_metrics_listen},
    )
    return stack, source


async def run(stack: Stack, keys_source: str, pods: MatchingPods | None = None,
              restart_backoff: float = 1.0) -> int:
    """Start ``stack``, print the banner, run until a signal or a death. With ``pods``
    (declared on ``stack``): ownership changes are logged and a dead matching pod is
    started again after a back-off (from ``restart_backoff`` seconds) instead of stopping
    everything."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    starting = asyncio.ensure_future(stack.start())
    stop_wait = asyncio.ensure_future(stop.wait())
    await asyncio.wait([starting, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        log.info("%s received while starting; stopping", received[0])
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        await stack.stop()
        return 0
    try:
        starting.result()
    except Exception as err:  # noqa: BLE001 - reported, then exit 1
        stop_wait.cancel()
        log.error("could not start the exchange: %s", err)
        return 1

    watch: asyncio.Future | None = None
    if pods is None:
        print(banner(stack, keys_source), flush=True)
        died = asyncio.ensure_future(stack.wait_for_exit())
    else:
        assert stack.database_url is not None
        ownership = OwnershipWatch(stack.database_url, pods.name_of)
        try:
            await ownership.poll()
        except Exception as err:  # noqa: BLE001 - the table shows no owners; logged
            log.warning("could not read the owners: %s", err)
        print(banner(stack, keys_source, pods, ownership.owners), flush=True)
        watch = asyncio.ensure_future(ownership.run())
        supervisor = Supervisor(stack, pods.services.values(), label=pods.label,
                                first=restart_backoff)
        died = asyncio.ensure_future(supervisor.watch())
    await asyncio.wait([died, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if died.done():
        name, rc = died.result()
        log.error("%s exited unexpectedly with code %s; shutting everything down", name, rc)
        code = 1
    else:
        died.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await died
        log.info("%s received; shutting down", received[0])
    if watch is not None:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    codes = await stack.stop()
    for name, rc in codes.items():
        if rc not in (0, -signal.SIGTERM):
            log.warning("%s service exited with code %d", name, rc)
    log.info("stopped")
    return code


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {value}")
        return value
    return parse


def _groups(text: str) -> str:
    try:
        parse_groups(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _order_workers(text: str) -> str:
    try:
        return OrderSettings._order_workers(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="exchange-dev", description="The whole exchange on this machine (make run).")
    parser.add_argument("--tls", action="store_true",
                        help="TLS on the public ports and mutual TLS between services, with "
                             "certificates made in <data dir>/tls (env EXCHANGE_DEV_TLS=1)")
    topology = parser.add_argument_group(
        "topology", "matching pods wired as the Helm chart wires them: pod N owns "
        "instrument group N, the standbys take over a pod that dies (which is then "
        "restarted). Without these: one matching process owning every instrument.")
    topology.add_argument("--shards", type=_count(1, MAX_SHARDS), metavar="N",
                          help="matching pods that each own a group of instruments: every "
                               "instrument dealt round-robin in instrument-id order, dev "
                               "instruments added when there are fewer than N "
                               "(env EXCHANGE_DEV_SHARDS)")
    topology.add_argument("--standbys", type=_count(0, MAX_STANDBYS), metavar="M",
                          help="standby matching pods, which may own any group's instruments "
                               "(env EXCHANGE_DEV_STANDBYS)")
    topology.add_argument("--groups", type=_groups, metavar="'A;B,C'",
                          help="the groups instead of the round-robin deal: ';' between groups, "
                               "',' between instruments, e.g. 'BTC-USD;ETH-USD,SOL-USD' "
                               "(env EXCHANGE_DEV_GROUPS)")
    topology.add_argument("--order-workers", type=_order_workers, metavar="N|auto",
                          help="order-service processes on the order port "
                               "(env EXCHANGE_ORDER_WORKERS; default auto: one per core)")
    topology.add_argument("--md-workers", type=_count(1, 64), metavar="N",
                          help="market-data processes on the market-data port "
                               "(env EXCHANGE_MARKETDATA_WORKERS; default 1)")
    return parser.parse_args(argv)


def topology_of(settings: DevSettings, args: argparse.Namespace) -> Topology:
    """The topology the options (else the variables) ask for; ValueError when they
    disagree."""
    groups = args.groups if args.groups is not None else settings.dev_groups
    shards = args.shards if args.shards is not None else settings.dev_shards
    standbys = args.standbys if args.standbys is not None else settings.dev_standbys
    if args.groups is not None and args.shards is None:
        shards = None  # the groups given with the option decide
    return Topology.of(shards, standbys, groups or None)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = load(DevSettings)
    updates: dict[str, object] = {}
    if args.order_workers is not None:
        updates["order_workers"] = args.order_workers
    if args.md_workers is not None:
        updates["marketdata_workers"] = args.md_workers
    settings = settings.model_copy(update=updates)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s exchange-dev %(message)s",
                        datefmt="%H:%M:%S")
    try:
        topology = topology_of(settings, args)
        stack, source = build_stack(settings, tls=args.tls)
    except ValueError as err:
        print(f"exchange-dev: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    pods = None
    if not topology.is_default:
        pods = MatchingPods(topology)
        pods.install(stack)
    raise SystemExit(asyncio.run(run(stack, source, pods, settings.dev_restart_backoff)))


if __name__ == "__main__":
    main()
