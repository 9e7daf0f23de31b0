"""``exchange top``: the exchange's figures in a terminal, read from the services' /metrics.

    exchange top [--order URL]... [--matching URL]... [--marketdata URL]...
                 [--interval SECONDS] [--once]

For when there is no Grafana (a laptop, a fresh cluster, an incident where the
monitoring is what broke): it scrapes every endpoint once an interval, and shows what
the last interval did (orders, rejections, latency percentiles, calls by status code,
commits, trades) next to what the gauges say now (overload, queues, backlogs, pools,
subscribers, who owns each instrument). The arithmetic is Prometheus's own
(``_prometheus``), so the figures agree with the dashboards when there are some.

An endpoint that does not answer is shown as down and the view keeps going: the figures
of a service are those of its endpoints that answered, and rates come back once an
endpoint has answered twice in a row. Each option may be given several times (several
matching pods, several order pods); the figures of one service add up over them.

The URLs default to what ``make run`` serves; ``EXCHANGE_ORDER_METRICS_URL``,
``EXCHANGE_MATCHING_METRICS_URL`` and ``EXCHANGE_MARKETDATA_METRICS_URL`` (one URL, or
several separated by commas) set them for a shell. ``host:port`` is enough: the scheme
defaults to http and the path to /metrics.

``--once`` prints one screen after two scrapes an interval apart and exits: 0 when every
endpoint answered, 1 (one ``error:`` line) when one did not. The live view leaves its
last frame on the terminal when Ctrl-C ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from exchange_client._prometheus import (
    Interval,
    Scrape,
    mean_per_event,
    percentiles,
    rate,
    rates_by,
)

SERVICES = ("order", "matching", "marketdata")
# What `make run` serves (exchange_dev: the ports of the banner).
DEFAULT_URLS = {"order": "http://127.0.0.1:9464/metrics",
                "matching": "http://127.0.0.1:9465/metrics",
                "marketdata": "http://127.0.0.1:9466/metrics"}
ENV = {service: f"EXCHANGE_{service.upper()}_METRICS_URL" for service in SERVICES}

# The metrics read, as exposed (exchange_common/metrics.py and each service's metrics.py).
HANDLED = "exchange_grpc_server_handled_total"
POOL = "exchange_db_pool_connections"
POOL_MAX = "exchange_db_pool_max_connections"
LATENCY = "exchange_order_latency_seconds"
ACCEPTED = "exchange_orders_accepted_total"
REJECTED = "exchange_orders_rejected_total"
CANCELLED = "exchange_orders_cancelled_total"
REFUSED = "exchange_overload_refused_total"
SHEDDING = "exchange_overload_shedding"
IN_FLIGHT = "exchange_overload_in_flight"
LIMIT = "exchange_overload_limit"
WAIT = "exchange_overload_wait_seconds"
QUEUE = "exchange_matching_queue_depth"
BATCH = "exchange_matching_batch_commands"
COMMIT = "exchange_journal_commit_seconds"
COMMIT_FAILURES = "exchange_journal_commit_failures_total"
COMMANDS = "exchange_matching_commands_total"
TRADES = "exchange_trades_total"
EPOCH = "exchange_matching_owner_epoch"
WITHOUT_OWNER = "exchange_instruments_without_owner"
INFO = "exchange_instrument_info"
PUBLISH_LAG = "exchange_marketdata_publish_lag_seconds"
BACKLOG = "exchange_marketdata_publish_backlog"
PUBLISH_FAILURES = "exchange_marketdata_publish_failures_total"
SUBSCRIBERS = "exchange_marketdata_subscribers"
SUBSCRIBER_LIMIT = "exchange_marketdata_subscriber_limit"
CONFLATED = "exchange_marketdata_conflated_updates_total"
RESYNCS = "exchange_marketdata_resyncs_total"
SUBSCRIBER_LAG = "exchange_marketdata_subscriber_lag_seconds"
APPLY_LAG = "exchange_marketdata_apply_lag_seconds"

# Status codes that say the exchange failed (red), as opposed to the caller (yellow).
SERVER_ERRORS = frozenset({"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED",
                           "DATA_LOSS", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED", "ABORTED"})
DASH = "–"


# -- endpoints and their scrapes ---------------------------------------------------------


def metrics_url(text: str) -> str:
    """``text`` as the URL of a metrics endpoint: ``host:port`` is enough."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL or host:port")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urlunsplit(parts)


def endpoint_urls(service: str, given: Sequence[str] | None,
                  env: Mapping[str, str]) -> list[str]:
    """The options given for ``service``, else its environment variable, else the default."""
    if given:
        return list(given)
    listed = [t for t in re.split(r"[,\s]+", env.get(ENV[service], "")) if t]
    try:
        return [metrics_url(t) for t in listed] or [DEFAULT_URLS[service]]
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"{ENV[service]}: {err}") from None


def fetch(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def why(err: BaseException) -> str:
    """A short reason for a failed scrape ("connection refused", "HTTP 500")."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code}"
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        err = err.reason
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    if isinstance(err, ValueError):
        return "not a metrics page"
    return str(err) or type(err).__name__


@dataclass
class Endpoint:
    """One /metrics URL of one service, and what its last scrapes gave."""

    service: str
    url: str
    last: Scrape | None = None  # the last answer (None: the last scrape failed)
    interval: Interval | None = None  # the last two answers, when they were in a row
    error: str | None = None  # why the last scrape failed

    @property
    def name(self) -> str:
        return urlsplit(self.url).netloc or self.url

    @property
    def down(self) -> bool:
        return self.error is not None

    def answered(self, scrape: Scrape) -> None:
        self.interval = Interval(self.last, scrape) if self.last is not None else None
        self.last, self.error = scrape, None

    def failed(self, reason: str) -> None:
        # Rates start again from the next two answers: a gap may hide a restart.
        self.last = self.interval = None
        self.error = reason

    async def scrape(self, timeout: float) -> None:
        started = time.monotonic()
        try:
            text = await asyncio.to_thread(fetch, self.url, timeout)
            scrape = Scrape.parse(text, started)
        except (OSError, ValueError, http.client.HTTPException) as err:
            self.failed(why(err))
        else:
            self.answered(scrape)


@dataclass
class Top:
    """The endpoints of every service, and the view of their last scrapes."""

    endpoints: list[Endpoint]
    interval: float
    # Every instrument seen so far: one whose owner died stays on the screen.
    instruments: set[str] = field(default_factory=set)
    scrapes: int = 0
    live: bool = True  # False: one screen (--once)

    @classmethod
    def of(cls, urls: Mapping[str, Iterable[str]], interval: float, live: bool = True) -> Top:
        return cls([Endpoint(service, url) for service in SERVICES
                    for url in urls.get(service, ())], interval, live=live)

    @property
    def timeout(self) -> float:
        # An endpoint slower than an interval is as good as down (within reason).
        return min(max(self.interval, 1.0), 5.0)

    async def scrape(self) -> None:
        await asyncio.gather(*(e.scrape(self.timeout) for e in self.endpoints))
        self.scrapes += 1
        for scrape in self.latest():
            for name in (ACCEPTED, CANCELLED, EPOCH, INFO, COMMANDS, TRADES, QUEUE, BACKLOG):
                self.instruments.update(scrape.by(name, "instrument"))
        self.instruments.discard("")

    def service(self, service: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.service == service]

    def intervals(self, service: str) -> list[Interval]:
        return [e.interval for e in self.service(service) if e.interval is not None]

    def latest(self, service: str | None = None) -> list[Scrape]:
        return [e.last for e in self.endpoints
                if e.last is not None and service in (None, e.service)]

    def down(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.down]

    def render(self) -> RenderableType:
        return render(self)


# -- figures -------------------------------------------------------------------------------


def current(scrapes: Iterable[Scrape], name: str, **match: str) -> float | None:
    """The value now (a gauge, or a counter's total), summed over ``scrapes`` (several
    pods); None when none has it."""
    values = [v for s in scrapes if (v := s.sum(name, **match)) is not None]
    return sum(values) if values else None


def current_max(scrapes: Iterable[Scrape], name: str, **match: str) -> float | None:
    values = [v for s in scrapes if (v := s.sum(name, **match)) is not None]
    return max(values) if values else None


def totals_by(scrapes: Iterable[Scrape], name: str, label: str,
              **match: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for scrape in scrapes:
        for key, value in scrape.by(name, label, **match).items():
            out[key] = out.get(key, 0.0) + value
    return out


@dataclass(frozen=True)
class Owner:
    pod: str
    epoch: float


def owners(top: Top) -> dict[str, list[Owner]]:
    """Instrument -> the matching pods that say they own it (one, normally)."""
    out: dict[str, list[Owner]] = {}
    for pod in top.service("matching"):
        if pod.last is not None:
            for labels, epoch in pod.last.series(EPOCH):
                out.setdefault(labels.get("instrument", ""), []).append(Owner(pod.name, epoch))
    return out


# -- formatting ----------------------------------------------------------------------------


def per_second(value: float | None) -> str:
    if value is None:
        return DASH
    if value == 0:
        return "0"
    if value < 1:
        return f"{value:.2f}"
    if value < 10:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def seconds(value: float | None) -> str:
    if value is None:
        return DASH
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def count(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f}"


def alarm(text: str, bad: bool, style: str = "bold red") -> Text:
    return Text(text, style=style if bad else "")


def fill(used: float | None, limit: float | None) -> Text:
    """``used / limit``, yellow from 80% and red when full."""
    if used is None:
        return Text(DASH)
    if not limit:
        return Text(count(used))
    share = used / limit
    style = "bold red" if share >= 1 else "yellow" if share >= 0.8 else ""
    return Text(f"{count(used)} / {count(limit)}", style=style)


def code_style(code: str) -> str:
    if code == "OK":
        return ""
    return "bold red" if code in SERVER_ERRORS else "yellow"


def _table(title: str, *columns: str, left: Iterable[str] = (),
           header: bool = True) -> Table:
    """A compact table: the first column and those in ``left`` flush left, the figures
    flush right."""
    table = Table(title=title, title_justify="left", title_style="bold",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_header=header)
    flush_left = {columns[0], *left} if columns else set(left)
    for column in columns:
        table.add_column(column, justify="left" if column in flush_left else "right",
                         no_wrap=True)
    return table


def _facts(title: str, rows: Iterable[tuple[str, str | Text]]) -> Table:
    table = _table(title, "what", "value", header=False)
    for name, value in rows:
        table.add_row(Text(name, style="dim"), value)
    return table


def _all_down(top: Top, service: str) -> bool:
    """No endpoint of ``service`` answered the last scrape."""
    pods = top.service(service)
    return bool(pods) and all(p.down for p in pods)


def _down_note(service: str) -> Text:
    return Text(f"{service}: DOWN", style="bold red")


def _nothing(top: Top, service: str, empty: str) -> Text:
    """The row of a table with nothing to show: its service is down, or ``empty``."""
    return _down_note(service) if _all_down(top, service) else Text(empty, style="dim")


# -- the sections --------------------------------------------------------------------------


def endpoints_table(top: Top) -> Table:
    table = _table("Endpoints", "Service", "Endpoint", "Status", left=("Endpoint", "Status"))
    for e in top.endpoints:
        if e.error is not None:
            status = Text(f"DOWN ({e.error})", style="bold red")
        elif e.last is None:
            status = Text("…", style="dim")
        else:
            status = Text("up", style="green")
        table.add_row(e.service, e.name, status)
    return table


def orders_facts(top: Top) -> RenderableType:
    if _all_down(top, "order"):
        return Group(Text("Orders", style="bold"), _down_note("order"))
    intervals, latest = top.intervals("order"), top.latest("order")
    rejected = rate(intervals, REJECTED)
    return _facts("Orders", [
        ("accepted/s", per_second(rate(intervals, ACCEPTED))),
        ("rejected/s", alarm(per_second(rejected), bool(rejected), "yellow")),
        ("cancelled/s", per_second(rate(intervals, CANCELLED))),
        ("accepted", count(current(latest, ACCEPTED))),
        ("rejected", count(current(latest, REJECTED))),
    ])


def overload_facts(top: Top) -> RenderableType:
    if _all_down(top, "order"):
        return Group(Text("Overload", style="bold"), _down_note("order"))
    pods = top.latest("order")
    shedding = current(pods, SHEDDING)
    if shedding is None:
        state = Text(DASH)
    elif shedding:
        state = Text("YES" if len(pods) == 1 else f"YES ({shedding:.0f} of {len(pods)} pods)",
                     style="bold red")
    else:
        state = Text("no", style="green")
    refused = rate(top.intervals("order"), REFUSED)
    return _facts("Overload", [
        ("shedding", state),
        ("refused/s", alarm(per_second(refused), bool(refused))),
        ("in flight / limit", fill(current(pods, IN_FLIGHT), current(pods, LIMIT))),
        ("handler wait", seconds(current_max(pods, WAIT))),
    ])


def instruments_table(top: Top) -> RenderableType:
    orders, order_totals = top.intervals("order"), top.latest("order")
    matching, pods = top.intervals("matching"), top.latest("matching")
    accepted, cancelled = rates_by(orders, ACCEPTED, "instrument"), rates_by(
        orders, CANCELLED, "instrument")
    accepted_total = totals_by(order_totals, ACCEPTED, "instrument")
    commands, trades = rates_by(matching, COMMANDS, "instrument"), rates_by(
        matching, TRADES, "instrument")
    queues, backlogs = totals_by(pods, QUEUE, "instrument"), totals_by(pods, BACKLOG,
                                                                          "instrument")
    owned = owners(top)
    a_pod_is_down = any(p.down for p in top.service("matching"))

    table = _table("Instruments", "Instrument", "accepted/s", "cancelled/s", "accepted",
                   "owner", "epoch", "queue", "commands/s", "trades/s", "publish backlog",
                   left=("owner",))

    def figure(rates: dict[str, float], intervals: list[Interval], symbol: str) -> str:
        return per_second(rates.get(symbol, 0.0) if intervals else None)

    for symbol in sorted(top.instruments):
        claims = owned.get(symbol, [])
        if len(claims) == 1:
            owner, epoch = Text(claims[0].pod), f"{claims[0].epoch:.0f}"
        elif claims:  # two pods claim it: the older epoch is fenced, or about to be
            owner = Text(", ".join(c.pod for c in claims), style="bold red")
            epoch = ", ".join(f"{c.epoch:.0f}" for c in claims)
        elif a_pod_is_down:
            owner, epoch = Text("? (a pod is down)", style="yellow"), DASH
        elif not pods:
            owner, epoch = Text(DASH), DASH
        else:
            owner, epoch = Text("none", style="bold red"), DASH
        queue, backlog = queues.get(symbol), backlogs.get(symbol)
        table.add_row(
            Text(symbol, style="bold"), figure(accepted, orders, symbol),
            figure(cancelled, orders, symbol),
            count(accepted_total.get(symbol, 0.0) if order_totals else None), owner, epoch,
            alarm(count(queue), bool(queue), "yellow"), figure(commands, matching, symbol),
            figure(trades, matching, symbol), alarm(count(backlog), bool(backlog), "yellow"))
    if not top.instruments:
        table.add_row(Text("none seen yet", style="dim"), *[""] * 9)

    without = current_max(pods, WITHOUT_OWNER)
    note = Text()
    note.append("instruments without owner: ", style="dim")
    note.append(count(without), style="bold red" if without else "green")
    return Group(table, note)


def latency_table(top: Top) -> RenderableType:
    intervals = top.intervals("order")
    table = _table("Order latency, last interval", "Method", "calls/s", "errors/s", "P50",
                   "P95", "P99")
    methods = sorted({m for s in top.latest("order") for m in s.by(LATENCY + "_count",
                                                                    "method")})
    for method in methods:
        calls = rate(intervals, LATENCY + "_count", method=method)
        ok = rate(intervals, LATENCY + "_count", method=method, outcome="OK")
        errors = None if calls is None or ok is None else max(0.0, calls - ok)
        p50, p95, p99 = percentiles(intervals, LATENCY, (0.5, 0.95, 0.99), method=method)
        table.add_row(method, per_second(calls), alarm(per_second(errors), bool(errors)),
                      seconds(p50), seconds(p95), seconds(p99))
    if not methods:
        table.add_row(_nothing(top, "order", "no orders yet"), *[""] * 5)
    return table


def rejections_table(top: Top, rows: int = 6) -> Table:
    by_rate = rates_by(top.intervals("order"), REJECTED, "reason")
    totals = totals_by(top.latest("order"), REJECTED, "reason")
    table = _table("Rejected, by reason", "Reason", "/s", "total")
    ranked = sorted(totals, key=lambda r: (-by_rate.get(r, 0.0), -totals[r], r))
    for reason in ranked[:rows]:
        now = by_rate.get(reason, 0.0)
        table.add_row(alarm(reason, bool(now), "yellow"), per_second(now), count(totals[reason]))
    if len(ranked) > rows:
        table.add_row(Text(f"{len(ranked) - rows} more", style="dim"), "", "")
    if not ranked:
        table.add_row(_nothing(top, "order", "none"), "", "")
    return table


def pools_table(top: Top) -> Table:
    table = _table("Database pools", "Service", "Pool", "in use / max", "idle",
                   left=("Pool",))
    for service in SERVICES:
        scrapes = top.latest(service)
        maxima = totals_by(scrapes, POOL_MAX, "pool")
        for pool in sorted(maxima):
            table.add_row(service, pool,
                          fill(current(scrapes, POOL, pool=pool, state="in_use"), maxima[pool]),
                          count(current(scrapes, POOL, pool=pool, state="idle")))
    return table


def matching_table(top: Top) -> Table:
    table = _table("Matching pods, last interval", "Pod", "owns", "commits/s",
                   "commands/commit", "commit P50", "commit P99", "commit fail/s",
                   "publish lag P99", "publish fail/s")
    for pod in top.service("matching"):
        if pod.down:
            table.add_row(pod.name, Text("DOWN", style="bold red"), *[""] * 7)
            continue
        owns = count(len(list(pod.last.series(EPOCH)))) if pod.last else DASH
        window = [pod.interval] if pod.interval is not None else []
        p50, p99 = percentiles(window, COMMIT, (0.5, 0.99))
        failures = rate(window, COMMIT_FAILURES)
        publish_failures = rate(window, PUBLISH_FAILURES)
        batch = mean_per_event(window, BATCH)
        (publish_p99,) = percentiles(window, PUBLISH_LAG, (0.99,))
        table.add_row(pod.name, owns, per_second(rate(window, COMMIT + "_count")),
                      DASH if batch is None else f"{batch:.1f}", seconds(p50), seconds(p99),
                      alarm(per_second(failures), bool(failures)), seconds(publish_p99),
                      alarm(per_second(publish_failures), bool(publish_failures)))
    return table


def marketdata_facts(top: Top) -> RenderableType:
    if _all_down(top, "marketdata"):
        return Group(Text("Market data", style="bold"), _down_note("marketdata"))
    intervals, scrapes = top.intervals("marketdata"), top.latest("marketdata")
    book, trades = current(scrapes, SUBSCRIBERS, kind="book"), current(scrapes, SUBSCRIBERS,
                                                                    kind="trades")
    both = None if book is None and trades is None else (book or 0) + (trades or 0)
    resyncs = rates_by(intervals, RESYNCS, "kind")
    p50, p99 = percentiles(intervals, APPLY_LAG, (0.5, 0.99))
    conflated = rate(intervals, CONFLATED)
    return _facts("Market data", [
        ("subscribers / limit", fill(both, current(scrapes, SUBSCRIBER_LIMIT))),
        ("book / trades", f"{count(book)} / {count(trades)}"),
        ("subscriber lag", seconds(current_max(scrapes, SUBSCRIBER_LAG))),
        ("conflated/s", alarm(per_second(conflated), bool(conflated), "yellow")),
        ("resyncs/s", ", ".join(f"{k} {per_second(v)}" for k, v in sorted(resyncs.items()))
         or (per_second(0.0) if intervals else DASH)),
        ("apply lag P50 / P99", f"{seconds(p50)} / {seconds(p99)}"),
    ])


def calls_table(top: Top) -> Table:
    table = _table("gRPC calls, by status code", "Service", "Code", "/s", "total",
                   "methods", left=("Code", "methods"))
    for service in SERVICES:
        scrapes, intervals = top.latest(service), top.intervals(service)
        totals = totals_by(scrapes, HANDLED, "code")
        now = rates_by(intervals, HANDLED, "code")
        for code in sorted(totals, key=lambda c: (c != "OK", c)):
            by_method = totals_by(scrapes, HANDLED, "method", code=code)
            methods = sorted(by_method, key=lambda m: -by_method[m])
            shown = ", ".join(methods[:3]) + (f" +{len(methods) - 3}" if len(methods) > 3
                                              else "")
            style = code_style(code)
            table.add_row(service, Text(code, style=style),
                          Text(per_second(now.get(code, 0.0) if intervals else None),
                               style=style if now.get(code) else ""),
                          count(totals[code]), Text(shown, style="dim"))
    return table


def _side_by_side(*parts: RenderableType) -> Table:
    grid = Table.grid(padding=(0, 3))
    for _ in parts:
        grid.add_column(vertical="top")
    grid.add_row(*parts)
    return grid


def render(top: Top) -> RenderableType:
    """The whole view; about 40 lines and 150 columns with one pod of each service."""
    header = Text()
    header.append("exchange top", style="bold")
    header.append(f"  every {top.interval:g} s  {time.strftime('%H:%M:%S')}", style="dim")
    if top.scrapes < 2:
        header.append("  (rates from the second scrape on)", style="dim")
    down = top.down()
    if down:
        header.append(f"  {len(down)} of {len(top.endpoints)} endpoints down",
                      style="bold red")
    if top.live:
        header.append("  Ctrl-C exits", style="dim")
    gap = Text()
    return Group(
        header, gap,
        _side_by_side(endpoints_table(top), orders_facts(top), overload_facts(top),
                      marketdata_facts(top)), gap,
        instruments_table(top), gap,
        _side_by_side(latency_table(top), rejections_table(top), pools_table(top)), gap,
        matching_table(top), gap,
        calls_table(top),
    )


# -- the command -----------------------------------------------------------------------------


async def run_top(args: argparse.Namespace, out: Any) -> list[str]:
    """Draw the view until Ctrl-C (or once, with ``--once``); the endpoints down at the end."""
    urls = {s: endpoint_urls(s, getattr(args, s), os.environ) for s in SERVICES}
    top = Top.of(urls, args.interval, live=not args.once)
    if args.once:
        await top.scrape()
        await asyncio.sleep(args.interval)
        await top.scrape()
        out.print(top.render())
        return [f"{e.service} {e.name}" for e in top.down()]
    loop = asyncio.get_running_loop()
    with Live(top.render(), console=out.console, auto_refresh=False, redirect_stdout=False,
              redirect_stderr=False, transient=False) as live:
        due = loop.time()
        while True:
            await top.scrape()
            live.update(top.render(), refresh=True)
            # Every interval on the clock; after a slow scrape, from now.
            due = max(due + args.interval, loop.time())
            await asyncio.sleep(due - loop.time())


def add_top_parser(commands: Any, seconds_type: Callable[[str], float]) -> None:
    """``exchange top`` under the CLI's ``commands`` (subparsers)."""
    top = commands.add_parser(
        "top", help="live view of the exchange's metrics (when there is no Grafana)",
        description="Scrape the services' /metrics endpoints every interval and show "
                    "orders, latency, overload, matching, market data and pools. Each "
                    "URL option may be repeated (several pods); host:port is enough.")
    for service, what in (("order", "the order service"), ("matching", "a matching pod"),
                          ("marketdata", "the market-data service")):
        top.add_argument(f"--{service}", action="append", type=metrics_url, metavar="URL",
                         help=f"metrics of {what}; repeatable (env {ENV[service]}, "
                              f"comma-separated; default {DEFAULT_URLS[service]})")
    top.add_argument("--interval", type=seconds_type, default=1.0, metavar="SECONDS",
                     help="seconds between scrapes (default %(default)s)")
    top.add_argument("--once", action="store_true",
                     help="print one screen after two scrapes and exit (1 if an endpoint "
                          "did not answer)")
    top.set_defaults(handler=run_top, needs_key=False, streaming=True, no_client=True)
