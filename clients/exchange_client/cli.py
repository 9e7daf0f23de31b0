"""``exchange``: the command-line tool for the exchange.

    exchange [--order-addr HOST:PORT] [--marketdata-addr HOST:PORT] [--api-key KEY]
             [--tls] [--ca-file PEM] [--cert-file PEM --key-file PEM]
             [--timeout SECONDS] [--json] COMMAND ...

    exchange order create BTC-USD buy 0.01 --price 70000 [--type limit|market]
                          [--tif gtc|ioc|fok] [--client-order-id X] [--post-only]
    exchange order create BTC-USD buy --type market --funds 1000 [QUANTITY]
    exchange order create ... [--stp MODE] [--stop-price P] [--tif gtt --expire-time ISO|+30m]
    exchange order cancel ORDER_ID | --client-order-id X
    exchange order amend ORDER_ID | --client-order-id X [--price P] [--quantity Q]
    exchange order cancel-all [--instrument X] [--side buy|sell]
    exchange order get ORDER_ID | --client-order-id X
    exchange order list [--instrument X] [--status open|closed|all] [--limit N]
    exchange order updates [--after N] [--duration SECONDS]
    exchange fills [--instrument X] [--order-id Y] [--limit N]
    exchange session [--cancel-on-disconnect] [--dead-man SECONDS]  < commands  (session_cli.py)
    exchange instruments
    exchange book BTC-USD [--depth 10] [--watch [--trades N] [--duration SECONDS]]
                          [--interval-ms N] [--l3]
    exchange ticker BTC-USD [--watch]                              (md_cli.py)
    exchange candles BTC-USD [--interval 1m] [--start ISO] [--end ISO] [--limit N]
    exchange trades BTC-USD [--limit N] [--follow [--duration SECONDS]]
    exchange top [--order URL]... [--matching URL]... [--marketdata URL]...
                 [--interval SECONDS] [--once]                     (top.py)
    exchange admin ... [--admin-key KEY] [--admin-addr HOST:PORT]   (admin_cli.py)

Global options may also follow the command (``exchange order list --json``).
Output is rich tables for people, or JSON with ``--json`` (the proto3 JSON
mapping of the API messages, field names as in the .proto; streaming
commands print one JSON object per line).

Exit status: 0 on success (and when a ``--watch``/``--follow`` view or ``top`` is left
with Ctrl-C or ends after ``--duration``), 1 when a call fails or the input
is wrong (one line on stderr: ``error: CODE (REASON) message``), 2 for a
malformed command line. A call that could not connect because the server
speaks TLS and the client does not (or the other way round) gets a second
line, ``hint: ...``, saying which option to try.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from exchange.common.v1 import common_pb2
from exchange.marketdata.v1 import marketdata_pb2
from exchange.order.v1 import order_pb2
from exchange_client import _convert as cv
from exchange_client._tls import channel_credentials, connection_hint
from exchange_client.admin import AsyncAdminClient
from exchange_client.admin_cli import ADMIN_KEY_HELP, add_admin_parser
from exchange_client.aio import (
    DEFAULT_MARKETDATA_ADDR,
    DEFAULT_ORDER_ADDR,
    DEFAULT_TIMEOUT,
    AsyncExchangeClient,
)
from exchange_client.book import Level, LocalOrderBook
from exchange_client.errors import ExchangeError
from exchange_client.md_cli import add_marketdata_parser, book_l3
from exchange_client.session_cli import STP_MODES, add_session_parser, parse_time
from exchange_client.top import add_top_parser

API_KEY_HELP = "order commands need one; pass --api-key KEY or set EXCHANGE_API_KEY"
TRUE_WORDS = ("1", "true", "yes", "on")


class CliError(Exception):
    """A problem with the user's input, reported as one ``error:`` line."""


# -- output -------------------------------------------------------------------


class Output:
    """Where results go: rich tables on stdout, or JSON; errors on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        width = None
        if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
            width = 200  # piped: do not squeeze tables into 80 columns
        self.console = Console(width=width, highlight=False)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self._lines = False

    def print(self, *renderables: RenderableType) -> None:
        for r in renderables:
            self.console.print(r)

    def print_json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, indent=None if self._lines else 2) + "\n")
        sys.stdout.flush()

    def json_lines(self) -> None:
        """From now on one compact JSON object per line (for streams)."""
        self._lines = True

    def error(self, text: str) -> None:
        self.err.print(Text(f"error: {text}"))

    def hint(self, text: str) -> None:
        self.err.print(Text(f"hint: {text}"))


def to_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        msg,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def _ts(ts: timestamp_pb2.Timestamp | None, *, time_only: bool = False) -> str:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    when = ts.ToDatetime(tzinfo=UTC)
    text = when.strftime("%H:%M:%S.%f" if time_only else "%Y-%m-%d %H:%M:%S.%f")
    return text[:-3]


def _side(value: int) -> Text:
    name = cv.short_name(common_pb2.Side, value, "SIDE_")
    return Text(name, style="green" if value == common_pb2.SIDE_BUY else "red")


def _state(value: int) -> str:
    return cv.short_name(common_pb2.OrderState, value, "ORDER_STATE_")


def _order_type(value: int) -> str:
    return cv.short_name(common_pb2.OrderType, value, "ORDER_TYPE_")


def _tif(value: int) -> str:
    return cv.short_name(common_pb2.TimeInForce, value, "TIME_IN_FORCE_")


def _stp(value: int) -> str:
    """The mode when it is not the default (the default is not shown)."""
    if value in (common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED,
                 common_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING):
        return ""
    return cv.short_name(common_pb2.SelfTradePrevention, value, "SELF_TRADE_PREVENTION_")


def _liquidity(value: int) -> str:
    return cv.short_name(common_pb2.Liquidity, value, "LIQUIDITY_")


def order_table(order: order_pb2.Order) -> Table:
    table = Table(title=f"Order {order.order_id}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows: list[tuple[str, Any]] = [
        ("order id", order.order_id),
        ("client order id", order.client_order_id),
        ("instrument", order.instrument),
        ("side", _side(order.side)),
        ("type", _order_type(order.type)),
        ("time in force", _tif(order.time_in_force)),
        ("price", order.price or "market"),
        ("quantity", order.quantity),
        ("filled", order.filled_quantity),
        ("remaining", order.remaining_quantity),
        ("average price", order.average_fill_price),
        ("state", _state(order.state)),
        ("post only", "yes" if order.post_only else "no"),
        ("funds", order.funds),
        ("stop price", order.stop_price),
        ("expires", _ts(order.expire_time) if order.HasField("expire_time") else ""),
        ("self-trade prevention", _stp(order.self_trade_prevention)),
        ("held", order.held),
        ("reason", order.reason),
        ("created", _ts(order.create_time)),
        ("updated", _ts(order.update_time)),
    ]
    for name, value in rows:
        if value != "" or name in ("filled", "state"):
            table.add_row(name, value)
    return table


def orders_table(orders: Iterable[order_pb2.Order]) -> Table:
    table = Table(title="Orders", title_justify="left")
    for name, justify in [("Order ID", "left"), ("Instrument", "left"), ("Side", "left"),
                          ("Type", "left"), ("Price", "right"), ("Quantity", "right"),
                          ("Filled", "right"), ("State", "left"), ("Created", "left"),
                          ("Client order ID", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for o in orders:
        table.add_row(o.order_id, o.instrument, _side(o.side), _order_type(o.type),
                      o.price or "market", o.quantity, o.filled_quantity, _state(o.state),
                      _ts(o.create_time), o.client_order_id)
    return table


def fills_table(fills: Iterable[order_pb2.Fill], title: str = "Fills") -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in [("Trade ID", "left"), ("Order ID", "left"), ("Instrument", "left"),
                          ("Side", "left"), ("Price", "right"), ("Quantity", "right"),
                          ("Liquidity", "left"), ("Time", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in fills:
        table.add_row(f.trade_id, f.order_id, f.instrument, _side(f.side), f.price, f.quantity,
                      _liquidity(f.liquidity), _ts(f.time))
    return table


def balances_table(balances: Iterable[order_pb2.Balance], title: str = "Balances") -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in [("Asset", "left"), ("Available", "right"), ("Held", "right"),
                          ("Total", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for b in balances:
        table.add_row(b.asset, b.available, b.held, b.total)
    return table


def _entry_kind(value: int) -> str:
    return order_pb2.LedgerEntryKind.Name(value).removeprefix("LEDGER_ENTRY_KIND_").lower()


def ledger_table(entries: Iterable[order_pb2.LedgerEntry]) -> Table:
    table = Table(title="Ledger, newest first", title_justify="left")
    for name, justify in [("Time", "left"), ("Kind", "left"), ("Asset", "left"),
                          ("Available", "right"), ("Held", "right"), ("Order ID", "left"),
                          ("Trade ID", "left"), ("Reference", "left"), ("Entry", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for e in entries:
        table.add_row(_ts(e.time), _entry_kind(e.kind), e.asset, e.available, e.held,
                      e.order_id, e.trade_id, e.reference, e.entry_id)
    return table


def instruments_table(instruments: Iterable[marketdata_pb2.Instrument]) -> Table:
    table = Table(title="Instruments", title_justify="left")
    for name in ["Symbol", "Base", "Quote", "Tick size", "Lot size", "Min qty", "Max qty",
                 "Min notional", "Status"]:
        table.add_column(name)
    for i in instruments:
        status = cv.short_name(marketdata_pb2.InstrumentStatus, i.status, "INSTRUMENT_STATUS_")
        table.add_row(i.symbol, i.base_asset, i.quote_asset, i.tick_size, i.lot_size,
                      i.min_quantity, i.max_quantity, i.min_notional, status)
    return table


def book_table(book: marketdata_pb2.GetOrderBookResponse) -> Table:
    bids, asks = list(book.bids), list(book.asks)
    spread = ""
    if bids and asks:
        spread = f"  spread {format(Decimal(asks[0].price) - Decimal(bids[0].price), 'f')}"
    table = Table(title=f"{book.instrument}  sequence {book.sequence}{spread}",
                  title_justify="left")
    table.add_column("Orders", justify="right", style="dim")
    table.add_column("Bid qty", justify="right")
    table.add_column("Bid", justify="right", style="green")
    table.add_column("Ask", justify="right", style="red")
    table.add_column("Ask qty", justify="right")
    table.add_column("Orders", justify="right", style="dim")
    for i in range(max(len(bids), len(asks))):
        b = bids[i] if i < len(bids) else None
        a = asks[i] if i < len(asks) else None
        table.add_row(
            str(b.order_count) if b else "", b.quantity if b else "", b.price if b else "",
            a.price if a else "", a.quantity if a else "", str(a.order_count) if a else "",
        )
    return table


def trades_table(trades: Iterable[marketdata_pb2.Trade], title: str = "Trades") -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in [("Time", "left"), ("Price", "right"), ("Quantity", "right"),
                          ("Taker", "left"), ("Trade ID", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for t in trades:
        table.add_row(_ts(t.time), t.price, t.quantity, _side(t.taker_side), t.trade_id)
    return table


def trade_line(t: marketdata_pb2.Trade) -> Text:
    line = Text()
    line.append(f"{_ts(t.time):<23}  ")
    line.append(f"{t.price:>14}", style="green" if t.taker_side == common_pb2.SIDE_BUY else "red")
    line.append(f"  {t.quantity:>12}  ")
    line.append_text(_side(t.taker_side))
    line.append(f"  {t.trade_id}", style="dim")
    return line


# -- the live book view ---------------------------------------------------------

_BLOCKS = " ▏▎▍▌▋▊▉█"


def depth_bar(fraction: float, width: int) -> str:
    """A horizontal bar ``fraction`` (0..1) of ``width`` cells, in eighths."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[part] if part else "")).ljust(width)


@dataclass
class WatchState:
    book: LocalOrderBook
    depth: int
    trades: deque[marketdata_pb2.Trade]
    last_trade_sequence: int = 0
    seen_trade_ids: set[str] = field(default_factory=set)

    def add_trade(self, trade: marketdata_pb2.Trade, *, newest: bool = True) -> bool:
        """Keep a trade unless already seen; ``newest`` puts it in front."""
        if newest and trade.sequence and trade.sequence < self.last_trade_sequence:
            return False  # older than what is shown (listed and streamed both)
        if trade.trade_id in self.seen_trade_ids:
            return False
        self.seen_trade_ids.add(trade.trade_id)
        if len(self.seen_trade_ids) > 10_000:
            self.seen_trade_ids = {t.trade_id for t in self.trades}
        self.last_trade_sequence = max(self.last_trade_sequence, trade.sequence)
        if newest:
            self.trades.appendleft(trade)
        else:
            self.trades.append(trade)
        return True


def render_watch(state: WatchState, bar_width: int = 24) -> RenderableType:
    book = state.book
    header = Text()
    header.append(f"{book.instrument or '?'}", style="bold")
    if not book.ready:
        header.append("  waiting for the snapshot…", style="dim")
        return Group(header, Text("Ctrl-C to exit", style="dim"))
    bids, asks = book.bids(state.depth), book.asks(state.depth)
    header.append(f"  sequence {book.sequence}")
    spread = book.spread
    if spread is not None:
        header.append(f"  spread {format(spread, 'f')}")
    if bids:
        header.append(f"  bid {format(bids[0].price, 'f')}", style="green")
    if asks:
        header.append(f"  ask {format(asks[0].price, 'f')}", style="red")
    if book.time is not None:
        header.append(f"  {_ts(book.time, time_only=True)}", style="dim")
    if book.resubscribes:
        header.append(f"  resubscribed {book.resubscribes}×", style="yellow")

    def cumulative(levels: Sequence[Level]) -> list[Decimal]:
        total, out = Decimal(0), []
        for level in levels:
            total += level.quantity
            out.append(total)
        return out

    bid_cum, ask_cum = cumulative(bids), cumulative(asks)
    biggest = max([*bid_cum[-1:], *ask_cum[-1:], Decimal(0)])

    ladder = Table(box=None, pad_edge=False, show_edge=False, title="Book",
                   title_justify="left", title_style="bold")
    ladder.add_column("Price", justify="right")
    ladder.add_column("Quantity", justify="right")
    ladder.add_column("Orders", justify="right", style="dim")
    ladder.add_column("Depth", no_wrap=True)

    def bar(total: Decimal) -> str:
        return depth_bar(float(total / biggest) if biggest else 0.0, bar_width)

    for level, total in reversed(list(zip(asks, ask_cum, strict=True))):
        ladder.add_row(Text(format(level.price, "f"), style="red"), format(level.quantity, "f"),
                       str(level.order_count), Text(bar(total), style="red"))
    if not asks:
        ladder.add_row(Text("no asks", style="dim"), "", "", "")
    gap = f"spread {format(spread, 'f')}" if spread is not None else ""
    ladder.add_row(Text("─" * 10, style="dim"), Text(gap, style="bold"), "", "")
    for level, total in zip(bids, bid_cum, strict=True):
        ladder.add_row(Text(format(level.price, "f"), style="green"),
                       format(level.quantity, "f"), str(level.order_count),
                       Text(bar(total), style="green"))
    if not bids:
        ladder.add_row(Text("no bids", style="dim"), "", "", "")

    tape = Table(box=None, pad_edge=False, show_edge=False, title="Last trades",
                 title_justify="left", title_style="bold")
    tape.add_column("Time")
    tape.add_column("Price", justify="right")
    tape.add_column("Quantity", justify="right")
    tape.add_column("Taker")
    for t in state.trades:
        style = "green" if t.taker_side == common_pb2.SIDE_BUY else "red"
        tape.add_row(_ts(t.time, time_only=True), Text(t.price, style=style), t.quantity,
                     _side(t.taker_side))
    if not state.trades:
        tape.add_row(Text("no trades yet", style="dim"), "", "", "")

    grid = Table.grid(padding=(0, 4))
    grid.add_column()
    grid.add_column()
    grid.add_row(ladder, tape)
    return Group(header, Text(""), grid, Text(""), Text("Ctrl-C to exit", style="dim"))


def book_state_dict(book: LocalOrderBook, depth: int) -> dict[str, Any]:
    """The local book in the shape of ``book --json``."""

    def levels(items: list[Level]) -> list[dict[str, Any]]:
        return [{"price": format(lv.price, "f"), "quantity": format(lv.quantity, "f"),
                 "order_count": lv.order_count} for lv in items]

    return {
        "instrument": book.instrument,
        "sequence": book.sequence,
        "bids": levels(book.bids(depth)),
        "asks": levels(book.asks(depth)),
        "time": json_format.MessageToDict(book.time) if book.time is not None else None,
    }


async def _drive(tasks: list[asyncio.Task[Any]], duration: float | None,
                 tick: Callable[[], None] | None = None, interval: float = 0.1) -> None:
    """Run until ``duration`` passes (forever if None) or a task ends; re-raise its error."""
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    try:
        while True:
            for task in tasks:
                if task.done():
                    task.result()  # raises the task's error, if any
                    raise ExchangeError("the server ended the stream", reason="STREAM_ENDED")
            if tick is not None:
                tick()
            if deadline is not None and loop.time() >= deadline:
                return
            wait = interval if deadline is None else max(0.0, min(interval,
                                                                   deadline - loop.time()))
            await asyncio.wait(tasks, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def watch_book(client: AsyncExchangeClient, args: argparse.Namespace, out: Output) -> None:
    depth = args.depth or 10
    state = WatchState(book=LocalOrderBook(args.instrument), depth=depth,
                       trades=deque(maxlen=args.trades))
    # A --depth asks the stream for that view (checksummed); without it, the whole book.
    stream_view = {"depth": args.depth or 0, "interval_ms": args.interval_ms}

    if out.json:
        out.json_lines()

        async def emit() -> None:
            async for book in client.watch_order_book(args.instrument, book=state.book,
                                                      **stream_view):
                out.print_json(book_state_dict(book, depth))

        await _drive([asyncio.create_task(emit())], args.duration)
        return

    async for trade in client.iter_trades(args.instrument, limit=args.trades):
        state.add_trade(trade, newest=False)

    async def follow_book() -> None:
        async for _ in client.watch_order_book(args.instrument, book=state.book,
                                               **stream_view):
            pass

    async def follow_trades() -> None:
        async for trade in client.stream_trades(args.instrument):
            state.add_trade(trade)

    tasks = [asyncio.create_task(follow_book()), asyncio.create_task(follow_trades())]
    with Live(render_watch(state), console=out.console, auto_refresh=False,
              redirect_stdout=False, redirect_stderr=False, transient=False) as live:
        try:
            await _drive(tasks, args.duration,
                         tick=lambda: live.update(render_watch(state), refresh=True))
        finally:
            live.update(render_watch(state), refresh=True)


async def follow_trades(client: AsyncExchangeClient, args: argparse.Namespace,
                        out: Output) -> None:
    state = WatchState(book=LocalOrderBook(args.instrument), depth=0, trades=deque(maxlen=1))
    queue: asyncio.Queue[marketdata_pb2.Trade] = asyncio.Queue()

    async def listen() -> None:
        async for trade in client.stream_trades(args.instrument):
            queue.put_nowait(trade)

    def show(trade: marketdata_pb2.Trade) -> None:
        if out.json:
            out.print_json(to_dict(trade))
        else:
            out.print(trade_line(trade))

    if out.json:
        out.json_lines()
    # Subscribe first, then list, so that nothing falls between the two.
    listener = asyncio.create_task(listen())
    recent = [t async for t in client.iter_trades(args.instrument, limit=args.limit)]
    if not out.json:
        out.print(Text(f"{'Time':<23}  {'Price':>14}  {'Quantity':>12}  Taker  Trade ID",
                       style="bold"))
    for trade in reversed(recent):
        if state.add_trade(trade):
            show(trade)

    def drain() -> None:
        while not queue.empty():
            trade = queue.get_nowait()
            if state.add_trade(trade):
                show(trade)

    try:
        await _drive([listener], args.duration, tick=drain)
    finally:
        drain()


# -- commands -------------------------------------------------------------------


async def cmd_order_create(client: AsyncExchangeClient, args: argparse.Namespace,
                           out: Output) -> None:
    kind = args.type or ("limit" if args.price is not None else None)
    if kind is None:
        raise CliError("a limit order needs --price (or pass --type market)")
    if kind == "market" and args.price is not None:
        raise CliError("a market order takes no --price")
    if kind == "limit" and args.price is None:
        raise CliError("a limit order needs --price")
    if args.quantity is None and args.funds is None:
        raise CliError("give a quantity (or --funds for a market buy)")
    response = await client.create_order(
        args.instrument, args.side, args.quantity, price=args.price, type=kind,
        time_in_force=args.tif, client_order_id=args.client_order_id, post_only=args.post_only,
        funds=args.funds, self_trade_prevention=args.stp, stop_price=args.stop_price,
        expire_time=None if args.expire_time is None else parse_time(args.expire_time),
    )
    if out.json:
        out.print_json(to_dict(response))
        return
    out.print(order_table(response.order))
    if response.fills:
        out.print(fills_table(response.fills))


def _one_id(args: argparse.Namespace) -> dict[str, str | None]:
    if bool(args.order_id) == bool(args.client_order_id):
        raise CliError("give an ORDER_ID or --client-order-id (one of them)")
    return {"order_id": args.order_id, "client_order_id": args.client_order_id}


async def cmd_order_cancel(client: AsyncExchangeClient, args: argparse.Namespace,
                           out: Output) -> None:
    order = await client.cancel_order(**_one_id(args))
    if out.json:
        out.print_json({"order": to_dict(order)})
    else:
        out.print(order_table(order))


async def cmd_order_amend(client: AsyncExchangeClient, args: argparse.Namespace,
                          out: Output) -> None:
    if args.price is None and args.quantity is None:
        raise CliError("give --price and/or --quantity")
    response = await client.amend_order(**_one_id(args), price=args.price,
                                         quantity=args.quantity)
    if out.json:
        out.print_json(to_dict(response))
        return
    out.print(order_table(response.order))
    if response.fills:
        out.print(fills_table(response.fills))


async def cmd_order_cancel_all(client: AsyncExchangeClient, args: argparse.Namespace,
                               out: Output) -> None:
    orders = await client.cancel_all_orders(args.instrument, args.side)
    if out.json:
        out.print_json({"orders": [to_dict(o) for o in orders]})
    else:
        table = orders_table(orders)
        table.title = f"Cancelled {len(orders)} order(s)"
        out.print(table)


async def cmd_order_get(client: AsyncExchangeClient, args: argparse.Namespace,
                        out: Output) -> None:
    response = await client.get_order(**_one_id(args))
    if out.json:
        out.print_json(to_dict(response))
        return
    out.print(order_table(response.order))
    if response.fills:
        out.print(fills_table(response.fills))


async def cmd_order_list(client: AsyncExchangeClient, args: argparse.Namespace,
                         out: Output) -> None:
    orders = [o async for o in client.iter_orders(args.instrument, args.status,
                                                   limit=args.limit)]
    if out.json:
        out.print_json({"orders": [to_dict(o) for o in orders]})
    else:
        out.print(orders_table(orders))


def _update_kind(value: int) -> str:
    return cv.short_name(order_pb2.OrderUpdateKind, value, "ORDER_UPDATE_KIND_")


def update_line(update: order_pb2.OrderUpdate) -> Text:
    """One order update as a line: sequence, time, kind, the order after it, a fill."""
    o = update.order
    line = Text(f"{update.sequence:>8}  {_ts(update.time, time_only=True)}  "
                f"{_update_kind(update.kind):<20} {o.instrument:<9} ")
    line.append_text(_side(o.side))
    line.append(f" {o.order_id}  {_state(o.state)} {o.filled_quantity}/{o.quantity}")
    if o.price:
        line.append(f" @ {o.price}")
    if update.HasField("fill"):
        f = update.fill
        line.append(f"  fill {f.quantity} @ {f.price} {_liquidity(f.liquidity)} "
                    f"fee {f.fee} {f.fee_asset}")
    return line


async def cmd_order_updates(client: AsyncExchangeClient, args: argparse.Namespace,
                            out: Output) -> None:
    if out.json:
        out.json_lines()

    async def follow() -> None:
        async for update in client.order_updates(args.after):
            if out.json:
                out.print_json(to_dict(update))
            else:
                out.print(update_line(update))

    await _drive([asyncio.create_task(follow())], args.duration)


async def cmd_fills(client: AsyncExchangeClient, args: argparse.Namespace, out: Output) -> None:
    fills = [f async for f in client.iter_fills(args.instrument, args.order_id,
                                                 limit=args.limit)]
    if out.json:
        out.print_json({"fills": [to_dict(f) for f in fills]})
    else:
        out.print(fills_table(fills))


async def cmd_balances(client: AsyncExchangeClient, args: argparse.Namespace,
                       out: Output) -> None:
    balances = await client.get_balances(args.asset)
    if out.json:
        out.print_json({"balances": [to_dict(b) for b in balances]})
    else:
        out.print(balances_table(balances))


async def cmd_ledger(client: AsyncExchangeClient, args: argparse.Namespace, out: Output) -> None:
    entries = [e async for e in client.iter_ledger_entries(args.asset, limit=args.limit)]
    if out.json:
        out.print_json({"entries": [to_dict(e) for e in entries]})
    else:
        out.print(ledger_table(entries))


async def cmd_instruments(client: AsyncExchangeClient, args: argparse.Namespace,
                          out: Output) -> None:
    instruments = await client.list_instruments()
    if out.json:
        out.print_json({"instruments": [to_dict(i) for i in instruments]})
    else:
        out.print(instruments_table(instruments))


async def cmd_book(client: AsyncExchangeClient, args: argparse.Namespace, out: Output) -> None:
    if args.l3:
        await book_l3(client, args, out)
        return
    if args.watch:
        await watch_book(client, args, out)
        return
    if args.duration is not None:
        raise CliError("--duration goes with --watch")
    book = await client.get_order_book(args.instrument, depth=args.depth or 0)
    if out.json:
        out.print_json(to_dict(book))
    else:
        out.print(book_table(book))


async def cmd_trades(client: AsyncExchangeClient, args: argparse.Namespace,
                     out: Output) -> None:
    if args.follow:
        await follow_trades(client, args, out)
        return
    if args.duration is not None:
        raise CliError("--duration goes with --follow")
    trades = [t async for t in client.iter_trades(args.instrument, limit=args.limit)]
    if out.json:
        out.print_json({"trades": [to_dict(t) for t in trades]})
    else:
        out.print(trades_table(trades, title=f"{args.instrument} trades"))


# -- the command line ------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)  # a duration, not money
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options; on subcommands they default to 'not given' so that
    ``exchange --json order list`` and ``exchange order list --json`` agree."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    env = os.environ
    group = parser.add_argument_group("connection and output")
    group.add_argument("--order-addr", metavar="HOST:PORT",
                       default=default(env.get("EXCHANGE_ORDER_ADDR") or DEFAULT_ORDER_ADDR),
                       help="order service (env EXCHANGE_ORDER_ADDR, "
                            f"default {DEFAULT_ORDER_ADDR})")
    group.add_argument("--marketdata-addr", metavar="HOST:PORT",
                       default=default(env.get("EXCHANGE_MARKETDATA_ADDR")
                                       or DEFAULT_MARKETDATA_ADDR),
                       help="market-data service (env EXCHANGE_MARKETDATA_ADDR, "
                            f"default {DEFAULT_MARKETDATA_ADDR})")
    group.add_argument("--api-key", metavar="KEY",
                       default=default(env.get("EXCHANGE_API_KEY") or None),
                       help="API key for order commands (env EXCHANGE_API_KEY)")
    group.add_argument("--admin-key", metavar="KEY",
                       default=default(env.get("EXCHANGE_ADMIN_KEY") or None),
                       help="admin key for admin commands (env EXCHANGE_ADMIN_KEY)")
    group.add_argument("--admin-addr", metavar="HOST:PORT",
                       default=default(env.get("EXCHANGE_ADMIN_ADDR") or None),
                       help="the admin API (env EXCHANGE_ADMIN_ADDR, default: the order "
                            "service's address)")
    group.add_argument("--tls", action="store_true",
                       default=default(env.get("EXCHANGE_TLS", "").lower() in TRUE_WORDS),
                       help="connect with TLS, trusting the system's CAs (env EXCHANGE_TLS=1)")
    group.add_argument("--ca-file", metavar="PEM",
                       default=default(env.get("EXCHANGE_TLS_CA_FILE") or None),
                       help="the CA that signed the servers' certificates; implies --tls "
                            "(env EXCHANGE_TLS_CA_FILE)")
    group.add_argument("--cert-file", metavar="PEM",
                       default=default(env.get("EXCHANGE_CLIENT_CERT_FILE") or None),
                       help="client certificate, for servers that require one; implies "
                            "--tls, needs --key-file (env EXCHANGE_CLIENT_CERT_FILE)")
    group.add_argument("--key-file", metavar="PEM",
                       default=default(env.get("EXCHANGE_CLIENT_KEY_FILE") or None),
                       help="the client certificate's key (env EXCHANGE_CLIENT_KEY_FILE)")
    group.add_argument("--timeout", metavar="SECONDS", type=_seconds,
                       default=default(DEFAULT_TIMEOUT),
                       help="deadline of each call (default %(default)s)" if top else
                       "deadline of each call")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="machine-readable JSON output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchange", description="Trade on the exchange and watch its markets.",
        epilog="Global options may also be given after the command.",
    )
    _add_global_options(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, top=False)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    order = commands.add_parser("order", help="create, amend, cancel, get and list orders",
                                parents=[common])
    order_commands = order.add_subparsers(dest="order_command", metavar="ACTION", required=True)

    create = order_commands.add_parser(
        "create", parents=[common], help="place an order",
        description="Place an order. A limit order needs --price; a market order is "
                    "--type market and no --price.",
    )
    create.add_argument("instrument", help="e.g. BTC-USD")
    create.add_argument("side", type=str.lower, choices=["buy", "sell"])
    create.add_argument("quantity", nargs="?", help="decimal, e.g. 0.01 (optional with --funds)")
    create.add_argument("--price", help="limit price, decimal, e.g. 70000.50")
    create.add_argument("--type", type=str.lower, choices=["limit", "market"],
                        help="limit (default when --price is given) or market")
    create.add_argument("--tif", type=str.lower, choices=["gtc", "ioc", "fok", "gtt"],
                        help="time in force (default: gtc for limit, ioc for market)")
    create.add_argument("--client-order-id", metavar="ID",
                        help="idempotency key: retrying with it returns the original order "
                             "(default: a random one)")
    create.add_argument("--post-only", action="store_true",
                        help="reject instead of taking liquidity")
    create.add_argument("--funds", help="a market buy's budget in the quote asset, fees "
                                        "included, decimal, e.g. 1000")
    create.add_argument("--stp", type=lambda t: t.lower().replace("-", "_"), choices=STP_MODES,
                        help="self-trade prevention (default: cancel_resting)")
    create.add_argument("--stop-price", metavar="P",
                        help="a stop (with --type market) or stop-limit order: it waits "
                             "until a trade prints at or beyond P")
    create.add_argument("--expire-time", metavar="ISO|+30m",
                        help="good-till-time: expired at this time (implies --tif gtt)")
    create.set_defaults(handler=cmd_order_create, needs_key=True)

    for name, handler, text in [("cancel", cmd_order_cancel, "cancel an order"),
                                ("get", cmd_order_get, "show an order and its fills")]:
        sub = order_commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("order_id", nargs="?", metavar="ORDER_ID")
        sub.add_argument("--client-order-id", metavar="ID", help="instead of ORDER_ID")
        sub.set_defaults(handler=handler, needs_key=True)

    amend = order_commands.add_parser(
        "amend", parents=[common], help="change a resting order's price and/or quantity")
    amend.add_argument("order_id", nargs="?", metavar="ORDER_ID")
    amend.add_argument("--client-order-id", metavar="ID", help="instead of ORDER_ID")
    amend.add_argument("--price", help="new limit price")
    amend.add_argument("--quantity", help="new total quantity (filled included)")
    amend.set_defaults(handler=cmd_order_amend, needs_key=True)

    cancel_all = order_commands.add_parser(
        "cancel-all", parents=[common], help="cancel all your open orders (or some)")
    cancel_all.add_argument("--instrument", metavar="SYMBOL", help="only this instrument")
    cancel_all.add_argument("--side", type=str.lower, choices=["buy", "sell"],
                            help="only this side")
    cancel_all.set_defaults(handler=cmd_order_cancel_all, needs_key=True)

    listing = order_commands.add_parser("list", parents=[common],
                                        help="list your orders, newest first")
    listing.add_argument("--instrument", metavar="SYMBOL")
    listing.add_argument("--status", type=str.lower, choices=["open", "closed", "all"],
                         default="all")
    listing.add_argument("--limit", type=_positive_int, default=100, metavar="N",
                         help="at most N orders (default %(default)s)")
    listing.set_defaults(handler=cmd_order_list, needs_key=True)

    updates = order_commands.add_parser(
        "updates", parents=[common], help="follow your orders' updates as they happen",
        description="Every state change and fill of your orders, each with its sequence "
                    "number, live (Ctrl-C exits); resumes by itself after a disconnect. "
                    "--after N replays every update after sequence N first (0: all).")
    updates.add_argument("--after", type=_non_negative_int, metavar="N",
                         help="replay the updates after sequence N first")
    updates.add_argument("--duration", type=_seconds, metavar="SECONDS",
                         help="stop after SECONDS")
    updates.set_defaults(handler=cmd_order_updates, needs_key=True, streaming=True)

    fills = commands.add_parser("fills", parents=[common], help="list your fills, newest first")
    fills.add_argument("--instrument", metavar="SYMBOL")
    fills.add_argument("--order-id", metavar="ORDER_ID")
    fills.add_argument("--limit", type=_positive_int, default=100, metavar="N",
                       help="at most N fills (default %(default)s)")
    fills.set_defaults(handler=cmd_fills, needs_key=True)

    balances = commands.add_parser("balances", parents=[common],
                                   help="your balances: available and held, per asset")
    balances.add_argument("asset", nargs="?", help="only this asset, e.g. USD")
    balances.set_defaults(handler=cmd_balances, needs_key=True)

    ledger = commands.add_parser("ledger", parents=[common],
                                 help="every change of your balances, newest first")
    ledger.add_argument("--asset", metavar="ASSET", help="only this asset, e.g. USD")
    ledger.add_argument("--limit", type=_positive_int, default=100, metavar="N",
                        help="at most N entries (default %(default)s)")
    ledger.set_defaults(handler=cmd_ledger, needs_key=True)

    add_session_parser(commands, common)

    instruments = commands.add_parser("instruments", parents=[common],
                                      help="list the instruments and their rules")
    instruments.set_defaults(handler=cmd_instruments, needs_key=False)

    book = commands.add_parser("book", parents=[common], help="show (or watch) an order book")
    book.add_argument("instrument", help="e.g. BTC-USD")
    book.add_argument("--depth", type=_non_negative_int, default=None, metavar="N",
                      help="levels per side (default: all; 10 with --watch)")
    book.add_argument("--watch", action="store_true",
                      help="live view from the order-book and trade streams (Ctrl-C exits)")
    book.add_argument("--trades", type=_positive_int, default=15, metavar="N",
                      help="with --watch: last trades shown (default %(default)s)")
    book.add_argument("--duration", type=_seconds, metavar="SECONDS",
                      help="with --watch: stop after SECONDS")
    book.add_argument("--interval-ms", type=_non_negative_int, default=0, metavar="N",
                      help="with --watch: at most one update per N ms (0: as the server "
                           "paces them; else 10-60000)")
    book.add_argument("--l3", action="store_true",
                      help="the order-by-order book: every resting order in time priority")
    book.set_defaults(handler=cmd_book, needs_key=False)

    trades = commands.add_parser("trades", parents=[common], help="recent (or live) trades")
    trades.add_argument("instrument", help="e.g. BTC-USD")
    trades.add_argument("--limit", type=_positive_int, default=20, metavar="N",
                        help="recent trades shown (default %(default)s)")
    trades.add_argument("--follow", action="store_true",
                        help="keep printing trades as they happen (Ctrl-C exits)")
    trades.add_argument("--duration", type=_seconds, metavar="SECONDS",
                        help="with --follow: stop after SECONDS")
    trades.set_defaults(handler=cmd_trades, needs_key=False)
    add_marketdata_parser(commands, common, _seconds, _positive_int)
    add_admin_parser(commands, common)
    add_top_parser(commands, _seconds)
    return parser


async def _run(args: argparse.Namespace, out: Output) -> None:
    if getattr(args, "no_client", False):  # exchange top: HTTP scrapes, no gRPC
        if out.json:
            raise CliError("top draws a terminal view; it has no --json (read the /metrics "
                           "endpoints themselves)")
        down = await args.handler(args, out)
        if down:
            raise CliError(f"no answer from {', '.join(down)}")
        return
    if getattr(args, "admin", False):
        credentials = channel_credentials(tls=args.tls, ca_file=args.ca_file,
                                          cert_file=args.cert_file, key_file=args.key_file)
        async with AsyncAdminClient(args.admin_addr or args.order_addr, args.admin_key,
                                    args.timeout, credentials=credentials) as admin:
            await args.handler(admin, args, out)
        return
    async with AsyncExchangeClient(args.order_addr, args.marketdata_addr,
                                   api_key=args.api_key, timeout=args.timeout,
                                   tls=args.tls, ca_file=args.ca_file,
                                   cert_file=args.cert_file, key_file=args.key_file) as client:
        await args.handler(client, args, out)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(args.json)
    streaming = bool(getattr(args, "watch", False) or getattr(args, "follow", False)
                     or getattr(args, "streaming", False))
    try:
        if args.needs_key and not args.api_key:
            raise CliError(f"no API key: {API_KEY_HELP}")
        if getattr(args, "admin", False) and not args.admin_key:
            raise CliError(f"no admin key: {ADMIN_KEY_HELP}")
        asyncio.run(_run(args, out))
        return 0
    except ExchangeError as err:
        out.error(str(err))
        hint = connection_hint(err.code, err.reason, err.message,
                               tls=bool(args.tls or args.ca_file or args.cert_file))
        if hint:
            out.hint(hint)
        return 1
    except CliError as err:
        out.error(str(err))
        return 1
    except (ValueError, TypeError) as err:  # the library's own input checks
        out.error(str(err))
        return 1
    except KeyboardInterrupt:
        return 0 if streaming else 130
    except BrokenPipeError:
        # The reader went away (`exchange trades ... | head`): not an error.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 0
    except Exception as err:  # noqa: BLE001 - no tracebacks for users
        if os.environ.get("EXCHANGE_DEBUG"):
            raise
        out.error(f"unexpected {type(err).__name__}: {err} (set EXCHANGE_DEBUG=1 for details)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
