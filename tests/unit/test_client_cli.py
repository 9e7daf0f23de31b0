"""The ``exchange`` command, run as a real process against a real gRPC server.

The server is a plain ``grpc.server`` in a thread of the test process with
small in-memory servicers (errors are ``exchange_common.errors`` statuses);
the CLI is the installed console script, so this checks argument parsing,
output, exit codes and the one-line errors without the whole stack (the
end-to-end version is tests/e2e/test_cli.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2

from exchange.common.v1 import common_pb2
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc
from exchange.order.v1 import order_pb2, order_pb2_grpc
from exchange_client.book import LocalOrderBook
from exchange_common import errors as server_errors

EXCHANGE = str(Path(sys.executable).parent / "exchange")
API_KEY = "cli-key"


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def _abort(context: grpc.ServicerContext, err: server_errors.ExchangeError) -> None:
    context.abort_with_status(err.to_status())


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, object, dict[str, str]]] = []

    def record(self, name: str, request: object, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        with self.lock:
            self.requests.append((name, request, metadata))
        if name in ORDER_METHODS and metadata.get("x-api-key") != API_KEY:
            _abort(context, server_errors.Unauthenticated("unknown API key",
                                                          reason="API_KEY_INVALID"))

    def last(self, name: str) -> object:
        return [r for n, r, _ in self.requests if n == name][-1]


ORDER_METHODS = {"CreateOrder", "CancelOrder", "GetOrder", "ListOrders", "ListFills"}


def _order(order_id: str, **fields) -> order_pb2.Order:
    base = dict(order_id=order_id, client_order_id=f"c-{order_id}", instrument="BTC-USD",
                side=common_pb2.SIDE_SELL, type=common_pb2.ORDER_TYPE_LIMIT,
                time_in_force=common_pb2.TIME_IN_FORCE_GTC, price="70000.00",
                quantity="0.5000", filled_quantity="0.2000", remaining_quantity="0.3000",
                average_fill_price="70000.00", state=common_pb2.ORDER_STATE_PARTIALLY_FILLED,
                create_time=_now(), update_time=_now())
    base.update(fields)
    return order_pb2.Order(**base)


def _fill(trade_id: str, order_id: str) -> order_pb2.Fill:
    return order_pb2.Fill(trade_id=trade_id, order_id=order_id, instrument="BTC-USD",
                          side=common_pb2.SIDE_SELL, price="70000.00", quantity="0.2000",
                          liquidity=common_pb2.LIQUIDITY_MAKER, time=_now())


class Orders(order_pb2_grpc.OrderServiceServicer):
    def __init__(self, state: State) -> None:
        self.state = state
        self.orders = [_order(str(3000 - i)) for i in range(7)]

    def CreateOrder(self, request, context):
        self.state.record("CreateOrder", request, context)
        if request.price == "70000.001":
            _abort(context, server_errors.InvalidArgument(
                "price 70000.001 is not a multiple of the price step 0.01",
                reason="PRICE_OFF_TICK", field="price"))
        order = _order("4242", client_order_id=request.client_order_id,
                       side=request.side, type=request.type,
                       time_in_force=request.time_in_force, price=request.price,
                       quantity=request.quantity, post_only=request.post_only,
                       state=common_pb2.ORDER_STATE_NEW, filled_quantity="0",
                       remaining_quantity=request.quantity, average_fill_price="")
        return order_pb2.CreateOrderResponse(order=order)

    def GetOrder(self, request, context):
        self.state.record("GetOrder", request, context)
        if request.order_id == "404":
            _abort(context, server_errors.NotFound("order 404 not found",
                                                   reason="ORDER_NOT_FOUND"))
        return order_pb2.GetOrderResponse(order=_order(request.order_id or "9"),
                                          fills=[_fill("77", request.order_id or "9")])

    def CancelOrder(self, request, context):
        self.state.record("CancelOrder", request, context)
        return order_pb2.CancelOrderResponse(order=_order(
            request.order_id or "9", client_order_id=request.client_order_id,
            state=common_pb2.ORDER_STATE_CANCELLED))

    def ListOrders(self, request, context):
        self.state.record("ListOrders", request, context)
        size = request.page_size or 100
        start = int(request.page_token or 0)
        end = start + min(size, 3)  # small pages, so that the CLI must follow them
        token = str(end) if end < len(self.orders) else ""
        return order_pb2.ListOrdersResponse(orders=self.orders[start:end], next_page_token=token)

    def ListFills(self, request, context):
        self.state.record("ListFills", request, context)
        return order_pb2.ListFillsResponse(fills=[_fill("77", request.order_id or "9")])


class MarketData(marketdata_pb2_grpc.MarketDataServiceServicer):
    def __init__(self, state: State) -> None:
        self.state = state

    def ListInstruments(self, request, context):
        self.state.record("ListInstruments", request, context)
        return marketdata_pb2.ListInstrumentsResponse(instruments=[marketdata_pb2.Instrument(
            symbol="BTC-USD", base_asset="BTC", quote_asset="USD", tick_size="0.01",
            lot_size="0.0001", min_quantity="0.0001", max_quantity="1000.0000",
            min_notional="1.00", price_decimals=2, quantity_decimals=4,
            status=marketdata_pb2.INSTRUMENT_STATUS_TRADING)])

    def GetOrderBook(self, request, context):
        self.state.record("GetOrderBook", request, context)
        if request.instrument != "BTC-USD":
            _abort(context, server_errors.NotFound(f"unknown instrument {request.instrument}",
                                                   reason="INSTRUMENT_NOT_FOUND"))
        return marketdata_pb2.GetOrderBookResponse(
            instrument="BTC-USD", sequence=12, time=_now(),
            bids=[marketdata_pb2.PriceLevel(price="69999.50", quantity="1.2500", order_count=2)],
            asks=[marketdata_pb2.PriceLevel(price="70000.00", quantity="0.3000", order_count=1),
                  marketdata_pb2.PriceLevel(price="70001.00", quantity="2.0000",
                                            order_count=3)])

    def ListTrades(self, request, context):
        self.state.record("ListTrades", request, context)
        trades = [marketdata_pb2.Trade(trade_id=f"t{i}", instrument="BTC-USD", price="70000.00",
                                       quantity="0.1000", taker_side=common_pb2.SIDE_BUY,
                                       time=_now(), sequence=i) for i in (3, 2, 1)]
        return marketdata_pb2.ListTradesResponse(trades=trades[:request.page_size or None])

    def StreamOrderBook(self, request, context):
        self.state.record("StreamOrderBook", request, context)
        # The checksum of the book after each message, as the exchange sends it.
        replica = LocalOrderBook(verify=False)

        def checked(msg):
            replica.apply(msg)
            getattr(msg, msg.WhichOneof("update")).checksum = replica.checksum()
            return msg

        yield checked(marketdata_pb2.StreamOrderBookResponse(
            instrument=request.instrument,
            snapshot=marketdata_pb2.OrderBookSnapshot(
                sequence=100, time=_now(),
                bids=[marketdata_pb2.PriceLevel(price="69999.50", quantity="1.2500",
                                                order_count=2)],
                asks=[marketdata_pb2.PriceLevel(price="70000.00", quantity="0.3000",
                                                order_count=1)])))
        seq = 100
        while context.is_active() and seq < 400:
            time.sleep(0.05)
            seq += 1
            yield checked(marketdata_pb2.StreamOrderBookResponse(
                instrument=request.instrument,
                delta=marketdata_pb2.OrderBookDelta(
                    first_sequence=seq, sequence=seq, time=_now(),
                    bids=[marketdata_pb2.PriceLevel(price="69990.00", quantity=f"{seq}.0000",
                                                    order_count=1)])))

    def StreamTrades(self, request, context):
        self.state.record("StreamTrades", request, context)
        seq = 2  # t3 was listed already; the CLI must not print it twice
        while context.is_active() and seq < 200:
            seq += 1
            yield marketdata_pb2.StreamTradesResponse(trades=[marketdata_pb2.Trade(
                trade_id=f"t{seq}", instrument=request.instrument, price="70001.00",
                quantity="0.0500", taker_side=common_pb2.SIDE_SELL, time=_now(),
                sequence=seq)])
            time.sleep(0.1)


@pytest.fixture
def server():
    state = State()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    order_pb2_grpc.add_OrderServiceServicer_to_server(Orders(state), srv)
    marketdata_pb2_grpc.add_MarketDataServiceServicer_to_server(MarketData(state), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    state.addr = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        yield state
    finally:
        srv.stop(None)


def _env(server: State | None, api_key: str | None = API_KEY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    if server is not None:
        env["EXCHANGE_ORDER_ADDR"] = server.addr
        env["EXCHANGE_MARKETDATA_ADDR"] = server.addr
    if api_key:
        env["EXCHANGE_API_KEY"] = api_key
    return env


def run(server: State | None, *args: str, api_key: str | None = API_KEY,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXCHANGE, *args], env=_env(server, api_key), capture_output=True,
                          text=True, timeout=timeout)


def ok_json(server: State, *args: str) -> object:
    proc = run(server, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_help():
    proc = run(None, "--help")
    assert proc.returncode == 0
    for word in ("order", "fills", "instruments", "book", "trades", "--json"):
        assert word in proc.stdout


def test_missing_api_key(server):
    for args in (["order", "list"], ["fills"], ["order", "get", "1"],
                 ["order", "create", "BTC-USD", "buy", "0.01", "--price", "70000"]):
        proc = run(server, *args, api_key=None)
        assert proc.returncode == 1
        assert proc.stderr.startswith("error: no API key")
        assert "--api-key" in proc.stderr and "EXCHANGE_API_KEY" in proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert server.requests == []


def test_bad_price_is_one_line_and_exit_1(server):
    proc = run(server, "order", "create", "BTC-USD", "buy", "0.01", "--price", "70000.001")
    assert proc.returncode == 1
    assert proc.stderr == ("error: INVALID_ARGUMENT (PRICE_OFF_TICK) price: price 70000.001 "
                           "is not a multiple of the price step 0.01\n")
    assert proc.stdout == ""


def test_wrong_key_not_found_and_unavailable(server):
    proc = run(server, "order", "list", api_key="wrong")
    assert proc.returncode == 1
    assert proc.stderr == "error: UNAUTHENTICATED (API_KEY_INVALID) unknown API key\n"
    proc = run(server, "order", "get", "404")
    assert proc.returncode == 1
    assert proc.stderr == "error: NOT_FOUND (ORDER_NOT_FOUND) order 404 not found\n"
    proc = run(server, "book", "NOPE-USD")
    assert proc.stderr.startswith("error: NOT_FOUND (INSTRUMENT_NOT_FOUND)")
    proc = run(None, "--marketdata-addr", "127.0.0.1:1", "instruments")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: UNAVAILABLE ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_client_side_input_errors(server):
    for args, text in [
        (["order", "create", "BTC-USD", "buy", "0.01"], "needs --price"),
        (["order", "create", "BTC-USD", "buy", "0.01", "--type", "market", "--price", "1"],
         "takes no --price"),
        (["order", "create", "BTC-USD", "buy", "abc", "--price", "1"], "not a decimal"),
        (["order", "cancel"], "ORDER_ID or --client-order-id"),
        (["order", "get", "1", "--client-order-id", "x"], "ORDER_ID or --client-order-id"),
    ]:
        proc = run(server, *args)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("error: ") and text in proc.stderr, proc.stderr
    assert server.requests == []
    # A malformed command line is argparse's usage error (exit 2).
    assert run(server, "order", "create", "BTC-USD", "hold", "1").returncode == 2


def test_create_limit_order(server):
    out = ok_json(server, "order", "create", "BTC-USD", "buy", "0.0100", "--price", "70000",
                  "--tif", "ioc", "--client-order-id", "my-1", "--post-only")
    request = server.last("CreateOrder")
    assert request.instrument == "BTC-USD" and request.side == common_pb2.SIDE_BUY
    assert request.price == "70000" and request.quantity == "0.0100"
    assert request.type == common_pb2.ORDER_TYPE_LIMIT
    assert request.time_in_force == common_pb2.TIME_IN_FORCE_IOC
    assert request.client_order_id == "my-1" and request.post_only
    assert server.requests[-1][2]["x-api-key"] == API_KEY
    order = out["order"]
    assert order["order_id"] == "4242" and order["side"] == "SIDE_BUY"
    assert order["state"] == "ORDER_STATE_NEW" and out["fills"] == []


def test_create_market_order_with_options_after_the_command(server):
    proc = subprocess.run(
        [EXCHANGE, "order", "create", "BTC-USD", "SELL", "0.5", "--type", "market",
         "--order-addr", server.addr, "--api-key", API_KEY, "--json"],
        env=_env(None, None), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    request = server.last("CreateOrder")
    assert request.type == common_pb2.ORDER_TYPE_MARKET and request.price == ""
    assert request.side == common_pb2.SIDE_SELL
    assert request.time_in_force == common_pb2.TIME_IN_FORCE_UNSPECIFIED
    assert request.client_order_id  # generated, so that a retry can be deduplicated
    assert json.loads(proc.stdout)["order"]["type"] == "ORDER_TYPE_MARKET"


def test_create_human_output(server):
    proc = run(server, "order", "create", "BTC-USD", "buy", "0.01", "--price", "70000.50")
    assert proc.returncode == 0, proc.stderr
    for text in ("4242", "70000.50", "0.01", "buy", "new"):
        assert text in proc.stdout


def test_get_cancel_list_fills(server):
    out = ok_json(server, "order", "get", "55")
    assert out["order"]["order_id"] == "55" and out["fills"][0]["trade_id"] == "77"
    proc = run(server, "order", "get", "55")
    assert "55" in proc.stdout and "partially_filled" in proc.stdout and "77" in proc.stdout

    out = ok_json(server, "order", "cancel", "--client-order-id", "c-1")
    assert out["order"]["state"] == "ORDER_STATE_CANCELLED"
    assert server.last("CancelOrder").client_order_id == "c-1"

    out = ok_json(server, "order", "list", "--status", "open", "--instrument", "BTC-USD",
                  "--limit", "5")
    assert [o["order_id"] for o in out["orders"]] == ["3000", "2999", "2998", "2997", "2996"]
    request = server.last("ListOrders")
    assert request.status == order_pb2.ORDER_STATUS_FILTER_OPEN
    assert request.instrument == "BTC-USD" and request.page_token == "3"
    out = ok_json(server, "order", "list")
    assert len(out["orders"]) == 7
    proc = run(server, "order", "list")
    assert "3000" in proc.stdout and "2994" in proc.stdout

    out = ok_json(server, "fills", "--order-id", "9")
    assert out["fills"][0]["liquidity"] == "LIQUIDITY_MAKER"
    assert server.last("ListFills").order_id == "9"
    assert "77" in run(server, "fills").stdout


def test_instruments_book_trades(server):
    out = ok_json(server, "instruments")
    assert out["instruments"][0]["tick_size"] == "0.01"
    assert "BTC-USD" in run(server, "instruments").stdout

    out = ok_json(server, "book", "BTC-USD", "--depth", "10")
    assert out["sequence"] == 12 and out["asks"][0] == {
        "price": "70000.00", "quantity": "0.3000", "order_count": 1}
    assert server.last("GetOrderBook").depth == 10
    proc = run(server, "book", "BTC-USD")
    assert proc.returncode == 0
    for text in ("69999.50", "70000.00", "70001.00", "sequence 12", "spread 0.50"):
        assert text in proc.stdout

    out = ok_json(server, "trades", "BTC-USD", "--limit", "2")
    assert [t["trade_id"] for t in out["trades"]] == ["t3", "t2"]
    assert "t3" in run(server, "trades", "BTC-USD").stdout


def test_trades_follow(server):
    proc = run(server, "trades", "BTC-USD", "--follow", "--duration", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    trades = [json.loads(line) for line in proc.stdout.splitlines()]
    ids = [t["trade_id"] for t in trades]
    assert ids[:3] == ["t1", "t2", "t3"]  # the recent ones, oldest first
    assert len(ids) == len(set(ids)) and len(ids) >= 5  # then the live ones, no duplicate
    assert [t["sequence"] for t in trades] == sorted(t["sequence"] for t in trades)

    proc = run(server, "trades", "BTC-USD", "--follow", "--duration", "0.5")
    assert proc.returncode == 0 and "t1" in proc.stdout and "70001.00" in proc.stdout


def test_book_watch_for_a_duration(server):
    proc = run(server, "book", "BTC-USD", "--watch", "--duration", "1")
    assert proc.returncode == 0, proc.stderr
    for text in ("BTC-USD", "sequence 1", "69999.50", "70000.00", "spread 0.50",
                 "Last trades", "t" and "70001.00", "█"):
        assert text in proc.stdout, text

    proc = run(server, "book", "BTC-USD", "--watch", "--duration", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    states = [json.loads(line) for line in proc.stdout.splitlines()]
    assert states[0]["sequence"] == 100 and len(states) > 3
    assert [s["sequence"] for s in states] == list(range(100, 100 + len(states)))
    assert states[-1]["asks"] == [{"price": "70000.00", "quantity": "0.3000", "order_count": 1}]


def run_in_pty(args: list[str], env: dict[str, str], until: str, timeout: float = 15
               ) -> tuple[int, str]:
    """Run ``args`` on a pseudo-terminal; once ``until`` shows, press Ctrl-C (SIGINT)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    interrupted = False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
            if not interrupted and (until.encode() in output or time.monotonic() > deadline):
                time.sleep(0.3)
                proc.send_signal(signal.SIGINT)
                interrupted = True
            if time.monotonic() > deadline + 10:
                proc.kill()
                break
        return proc.wait(timeout=10), output.decode(errors="replace")
    finally:
        os.close(master)


def test_book_watch_on_a_terminal_and_ctrl_c(server):
    env = _env(server) | {"TERM": "xterm-256color"}
    code, output = run_in_pty([EXCHANGE, "book", "BTC-USD", "--watch"], env, until="70000.00")
    assert "70000.00" in output and "69999.50" in output and "sequence" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert code == 0
