"""``exchange top`` (exchange_client/top.py) on the metrics the services really declare.

The registries are the services' own metric classes (order_service.metrics and the
others) filled by the test, so a metric renamed in a service and not in the view fails
here; they are read as the view reads them: parsed from the exposition text, or scraped
over HTTP from ``prometheus_client``'s own server, and the command runs as a process.
The live view on a terminal against the real services is tests/e2e/test_top.py.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest
from rich.console import Console
from top_screen import after, cells

from exchange.common.v1 import common_pb2 as cpb
from exchange_client._prometheus import Scrape
from exchange_client.top import DEFAULT_URLS, Endpoint, Top, endpoint_urls, metrics_url
from exchange_common.errors import InvalidArgument
from exchange_common.metrics import Registry
from marketdata_service.metrics import MarketDataMetrics
from matching_service.metrics import MatchingMetrics
from order_service.metrics import OrderMetrics

EXCHANGE = str(Path(sys.executable).parent / "exchange")


class Exchange:
    """The three services' metrics, as their processes declare them."""

    def __init__(self) -> None:
        self.order = OrderMetrics(Registry())
        self.matching = MatchingMetrics(Registry())
        self.marketdata = MarketDataMetrics(Registry())

    def text(self, service: str) -> str:
        metrics = getattr(self, service)
        return prometheus_client.generate_latest(metrics.registry.collector).decode()

    def scrape(self, service: str, at: float) -> Scrape:
        return Scrape.parse(self.text(service), at)

    def settle(self) -> None:
        """What the services report before any traffic (their gauges, sampled)."""
        self.order.overload_limit.set(64)
        self.order.overload_in_flight.set(3)
        self.order.overload_shedding.set(0)
        for metrics, pool in ((self.order, "order"), (self.matching, "matching"),
                              (self.marketdata, "marketdata")):
            metrics.db_pool_size(pool, "in_use").set(1)
            metrics.db_pool_size(pool, "idle").set(1)
            metrics.db_pool_max(pool).set(10)
        self.matching.owner_epoch("BTC-USD").set(3)
        self.matching.publish_backlog("BTC-USD").set(0)
        self.matching.without_owner.set(1)  # ETH-USD: its pod is down
        self.marketdata.subscriber_limit.set(10)

    def traffic(self) -> None:
        """Two seconds of it: 4 orders accepted, 1 refused, 1 cancelled..."""
        started = time.monotonic()
        for _ in range(4):
            self.order.created("CreateOrder", cpb.ORDER_TYPE_LIMIT, started, "BTC-USD", None)
            self.order.handled("CreateOrder", "OK")
        refusal = InvalidArgument("price off the tick", reason="PRICE_OFF_TICK")
        self.order.created("CreateOrder", cpb.ORDER_TYPE_LIMIT, started, "BTC-USD", refusal)
        self.order.handled("CreateOrder", "INVALID_ARGUMENT")
        self.order.cancel_answered("CancelOrder", started, "BTC-USD", None)
        self.order.handled("CancelOrder", "OK")
        self.matching.commands("BTC-USD").inc(5)
        self.matching.trades("BTC-USD").inc(2)
        self.matching.queue_depth("BTC-USD").set(2)
        for commands in (2, 3):
            self.matching.batch_commands.observe(commands)
            self.matching.commit_seconds.observe(0.004)
        self.marketdata.subscribers("book").set(3)
        self.marketdata.subscribers("trades").set(1)
        self.marketdata.conflated.inc(4)


@pytest.fixture
def top() -> Top:
    """A view after two scrapes two seconds apart; a second matching pod is down."""
    exchange = Exchange()
    exchange.settle()
    view = Top.of({"order": ["http://order-0:9464/metrics"],
                   "matching": ["http://matching-0:9465/metrics",
                                "http://matching-1:9465/metrics"],
                   "marketdata": ["http://marketdata-0:9466/metrics"]}, interval=2.0)
    for at in (100.0, 102.0):
        if at == 102.0:
            exchange.traffic()
        for endpoint in view.endpoints:
            if endpoint.name == "matching-1:9465":
                endpoint.failed("connection refused")
            else:
                endpoint.answered(exchange.scrape(endpoint.service, at))
        view.scrapes += 1
        view.instruments.update({"BTC-USD", "ETH-USD"})
    return view


def screen(top: Top, *, colour: bool = False) -> str:
    console = Console(width=160, force_terminal=colour, color_system="standard" if colour
                      else None, record=not colour)
    with console.capture() as captured:
        console.print(top.render())
    return captured.get()



def row(text: str, first: str) -> list[str]:
    """The cells of the line whose first cell is ``first``."""
    for line in text.splitlines():
        found = cells(line)
        if found and found[0] == first:
            return found
    raise AssertionError(f"no line starting {first!r} in:\n{text}")



def fact(text: str, name: str) -> str:
    return after(text, name, 1)[0]


def test_the_view_shows_the_last_interval_and_the_gauges(top: Top) -> None:
    text = screen(top)
    # Instrument, accepted/s, cancelled/s, accepted, owner, epoch, queue, commands/s,
    # trades/s, publish backlog.
    assert row(text, "BTC-USD") == ["BTC-USD", "2.0", "0.50", "4", "matching-0:9465", "3",
                                    "2", "2.5", "1.0", "0"]
    # No pod says it owns ETH-USD, and one is down: it may be that one.
    assert row(text, "ETH-USD")[4] == "? (a pod is down)"
    assert "instruments without owner: 1" in text
    assert fact(text, "accepted/s") == "2.0"
    assert fact(text, "rejected/s") == "0.50"
    assert fact(text, "cancelled/s") == "0.50"
    assert fact(text, "shedding") == "no"
    assert fact(text, "in flight / limit") == "3 / 64"
    assert fact(text, "subscribers / limit") == "4 / 10"
    assert fact(text, "book / trades") == "3 / 1"
    assert fact(text, "conflated/s") == "2.0"
    assert row(text, "CreateOrder")[:3] == ["CreateOrder", "2.5", "0.50"]
    assert row(text, "CancelOrder")[:3] == ["CancelOrder", "0.50", "0"]
    assert after(text, "PRICE_OFF_TICK", 2) == ["0.50", "1"]
    # Pod, owns, commits/s, commands/commit, commit P50, ...
    assert row(text, "matching-0:9465")[:4] == ["matching-0:9465", "1", "1.0", "2.5"]
    assert row(text, "matching-1:9465") == ["matching-1:9465", "DOWN"]
    lines = [cells(line) for line in text.splitlines()]
    assert any(line[:3] == ["matching", "matching-1:9465", "DOWN (connection refused)"]
               for line in lines)
    assert "1 of 4 endpoints down" in text
    # Service, code, /s, total, methods (by total).
    assert ["order", "OK", "2.5", "5", "CreateOrder, CancelOrder"] in lines
    assert ["order", "INVALID_ARGUMENT", "0.50", "1", "CreateOrder"] in lines
    assert any(line[-4:] == ["matching", "matching", "1 / 10", "1"] for line in lines)


def test_what_is_wrong_is_red(top: Top) -> None:
    red = "\x1b[1;31m"
    text = screen(top, colour=True)
    assert red + "DOWN (connection refused)" in text
    assert f"instruments without owner: \x1b[0m{red}1\x1b[0m" in text
    assert red + "INVALID_ARGUMENT" not in text  # the caller's mistake: yellow
    assert "\x1b[33mINVALID_ARGUMENT" in text


def test_a_service_with_every_endpoint_down_says_so() -> None:
    view = Top.of({"order": ["127.0.0.1:1"], "matching": [], "marketdata": ["127.0.0.1:2"]},
                  interval=1.0)
    for endpoint in view.endpoints:
        endpoint.failed("connection refused")
    text = screen(view)
    assert "order: DOWN" in text and "marketdata: DOWN" in text
    assert "2 of 2 endpoints down" in text


# -- over HTTP and as a command ------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served() -> Iterator[tuple[Exchange, dict[str, str]]]:
    """The three registries on real HTTP endpoints (prometheus_client's server)."""
    exchange = Exchange()
    exchange.settle()
    exchange.traffic()
    servers, urls = [], {}
    for service in ("order", "matching", "marketdata"):
        metrics = getattr(exchange, service)
        server, thread = prometheus_client.start_http_server(
            0, addr="127.0.0.1", registry=metrics.registry.collector)
        servers.append((server, thread))
        urls[service] = f"http://127.0.0.1:{server.server_port}/metrics"
    yield exchange, urls
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_an_endpoint_is_scraped_or_down(served: tuple[Exchange, dict[str, str]]
                                              ) -> None:
    _, urls = served
    up = Endpoint("order", urls["order"])
    await up.scrape(timeout=5.0)
    await up.scrape(timeout=5.0)
    assert not up.down and up.last is not None and up.interval is not None
    assert up.last.sum("exchange_orders_accepted_total", instrument="BTC-USD") == 4

    refused = Endpoint("order", f"http://127.0.0.1:{closed_port()}/metrics")
    await refused.scrape(timeout=5.0)
    assert refused.down and refused.error == "connection refused" and refused.last is None

    # Once it answers again, rates wait for a second answer in a row.
    up.failed("timed out")
    await up.scrape(timeout=5.0)
    assert not up.down and up.interval is None


def test_urls_from_options_environment_or_defaults() -> None:
    assert metrics_url("10.0.0.5:9465") == "http://10.0.0.5:9465/metrics"
    assert metrics_url("https://m.example/") == "https://m.example/metrics"
    assert metrics_url("http://h:1/custom") == "http://h:1/custom"
    env = {"EXCHANGE_MATCHING_METRICS_URL": "a:9465, b:9465"}
    assert endpoint_urls("matching", None, env) == ["http://a:9465/metrics",
                                                    "http://b:9465/metrics"]
    assert endpoint_urls("matching", ["http://c:1/metrics"], env) == ["http://c:1/metrics"]
    assert endpoint_urls("order", None, env) == [DEFAULT_URLS["order"]]
    for bad in ("ftp://x:1", "x:port", "http://"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not an http"):
            metrics_url(bad)
    with pytest.raises(ValueError, match="EXCHANGE_ORDER_METRICS_URL"):
        endpoint_urls("order", None, {"EXCHANGE_ORDER_METRICS_URL": "ftp://x:1"})


def top_command(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "160"}
    return subprocess.run([EXCHANGE, "top", "--once", "--interval", "0.2", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_once_prints_a_screen_and_exits(served: tuple[Exchange, dict[str, str]]) -> None:
    _, urls = served
    proc = top_command("--order", urls["order"], "--matching", urls["matching"],
                       "--marketdata", urls["marketdata"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    owner = urls["matching"].removeprefix("http://").removesuffix("/metrics")
    cells = row(proc.stdout, "BTC-USD")
    assert cells[3:6] == ["4", owner, "3"]  # accepted, owner, epoch
    assert "Ctrl-C" not in proc.stdout

    # One endpoint that does not answer: shown down, and the exit status says so.
    dead = f"127.0.0.1:{closed_port()}"
    proc = top_command("--order", urls["order"], "--matching", urls["matching"],
                       "--marketdata", dead)
    assert proc.returncode == 1
    assert proc.stderr == f"error: no answer from marketdata {dead}\n"
    assert f"{dead}   DOWN (connection refused)" in proc.stdout
    assert row(proc.stdout, "BTC-USD")[3] == "4"


def test_bad_options_are_refused() -> None:
    proc = top_command("--order", "ftp://x:1")
    assert proc.returncode == 2 and "is not an http(s) URL" in proc.stderr
    proc = subprocess.run([EXCHANGE, "--json", "top", "--once"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("error: top draws")
