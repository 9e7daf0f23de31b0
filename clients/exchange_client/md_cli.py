"""The market-data commands of ``exchange`` beyond ``book`` and ``trades`` (cli.py):

    exchange ticker BTC-USD [--watch [--interval-ms N] [--duration SECONDS]]
    exchange candles BTC-USD [--interval 1m|5m|15m|1h|1d] [--start ISO] [--end ISO]
                             [--limit N]
    exchange book BTC-USD --l3 [--watch [--duration SECONDS]]   (the order-by-order book)

Times are ISO 8601 (``2026-12-05T10:00``, ``2026-12-05T10:00:00+01:00``); without a zone
they are UTC.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from exchange.marketdata.v1 import marketdata_pb2
from exchange_client import _convert as cv
from exchange_client.book import L3Order, LocalL3Book

if TYPE_CHECKING:
    from exchange_client.aio import AsyncExchangeClient
    from exchange_client.cli import Output


def _iso(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def _time(ts: Any) -> str:
    from exchange_client.cli import _ts

    return _ts(ts)


# -- ticker --------------------------------------------------------------------------------

def ticker_table(t: marketdata_pb2.Ticker) -> Table:
    table = Table(title=f"{t.instrument}  sequence {t.sequence}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("last", f"{t.last_price or '-'} x {t.last_quantity or '-'}"),
        ("last trade", _time(t.last_trade_time) if t.HasField("last_trade_time") else "-"),
        ("best bid", f"{t.best_bid or '-'} x {t.best_bid_quantity or '-'}"),
        ("best ask", f"{t.best_ask or '-'} x {t.best_ask_quantity or '-'}"),
        ("24h open", t.open_24h or "-"), ("24h high", t.high_24h or "-"),
        ("24h low", t.low_24h or "-"), ("24h volume", t.volume_24h),
        ("24h quote volume", t.quote_volume_24h), ("24h trades", str(t.trade_count_24h)),
        ("time", _time(t.time)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def ticker_line(t: marketdata_pb2.Ticker) -> Text:
    return Text(f"{_time(t.time)}  last {t.last_price or '-'}  bid {t.best_bid or '-'} "
                f"x {t.best_bid_quantity or '-'}  ask {t.best_ask or '-'} x "
                f"{t.best_ask_quantity or '-'}  24h {t.low_24h or '-'}-{t.high_24h or '-'} "
                f"vol {t.volume_24h}  seq {t.sequence}")


async def cmd_ticker(client: AsyncExchangeClient, args: argparse.Namespace,
                     out: Output) -> None:
    from exchange_client.cli import _drive, to_dict

    if not args.watch:
        ticker = await client.get_ticker(args.instrument)
        if out.json:
            out.print_json(to_dict(ticker))
        else:
            out.print(ticker_table(ticker))
        return
    if out.json:
        out.json_lines()

    async def follow() -> None:
        async for ticker in client.stream_ticker(args.instrument, interval_ms=args.interval_ms):
            if out.json:
                out.print_json(to_dict(ticker))
            else:
                out.print(ticker_line(ticker))

    await _drive([asyncio.create_task(follow())], args.duration)


# -- candles -------------------------------------------------------------------------------

def candles_table(candles: list[marketdata_pb2.Candle], title: str) -> Table:
    table = Table(title=title)
    for name in ("Start (UTC)", "Open", "High", "Low", "Close", "Volume", "Quote volume",
                 "Trades"):
        table.add_column(name, justify="left" if name.startswith("Start") else "right")
    for c in candles:
        table.add_row(_time(c.start_time), c.open, c.high, c.low, c.close, c.volume,
                      c.quote_volume, str(c.trade_count))
    return table


async def cmd_candles(client: AsyncExchangeClient, args: argparse.Namespace,
                      out: Output) -> None:
    from exchange_client.cli import to_dict

    candles = [c async for c in client.iter_candles(args.instrument, args.interval,
                                                   start=args.start, end=args.end,
                                                   limit=args.limit)]
    if out.json:
        out.print_json({"candles": [to_dict(c) for c in candles]})
    else:
        out.print(candles_table(candles, f"{args.instrument} {args.interval} candles"))


# -- the L3 book ---------------------------------------------------------------------------

def l3_table(book: LocalL3Book, depth: int) -> Table:
    table = Table(title=f"{book.instrument}  sequence {book.sequence}  "
                        f"{len(book.orders)} orders")
    for name in ("Side", "Price", "Quantity", "Priority", "Order ID"):
        table.add_column(name, justify="left" if name in ("Side", "Order ID") else "right")

    def rows(orders: list[L3Order], side: str, style: str) -> None:
        for o in orders[:depth] if depth else orders:
            table.add_row(Text(side, style=style), f"{o.price:f}", f"{o.quantity:f}",
                          str(o.priority), o.order_id)

    rows(list(reversed(book.asks()[:depth] if depth else book.asks())), "sell", "red")
    rows(book.bids(), "buy", "green")
    return table


def l3_dict(book: LocalL3Book) -> dict[str, Any]:
    def orders(side: list[L3Order]) -> list[dict[str, Any]]:
        return [{"order_id": o.order_id, "price": f"{o.price:f}",
                 "quantity": f"{o.quantity:f}", "priority": o.priority} for o in side]

    return {"instrument": book.instrument, "sequence": book.sequence,
            "bids": orders(book.bids()), "asks": orders(book.asks())}


async def book_l3(client: AsyncExchangeClient, args: argparse.Namespace, out: Output) -> None:
    """``book --l3``: the snapshot (or, with --watch, the book after each update)."""
    from exchange_client.cli import _drive

    depth = args.depth or 0
    if out.json and args.watch:
        out.json_lines()

    async def follow() -> None:
        async for book in client.watch_order_book_l3(args.instrument):
            if out.json:
                out.print_json(l3_dict(book))
            else:
                out.print(l3_table(book, depth or 10))
            if not args.watch:
                return

    if args.watch:
        await _drive([asyncio.create_task(follow())], args.duration)
    else:
        await follow()


def add_marketdata_parser(commands: Any, common: argparse.ArgumentParser,
                          seconds: Any, positive: Any) -> None:
    ticker = commands.add_parser("ticker", parents=[common],
                                 help="last price, best bid and ask, 24-hour figures")
    ticker.add_argument("instrument", help="e.g. BTC-USD")
    ticker.add_argument("--watch", action="store_true",
                        help="print the ticker on each change (Ctrl-C exits)")
    ticker.add_argument("--interval-ms", type=positive, default=1000, metavar="N",
                        help="with --watch: at most one update per N ms (default %(default)s)")
    ticker.add_argument("--duration", type=seconds, metavar="SECONDS",
                        help="with --watch: stop after SECONDS")
    ticker.set_defaults(handler=cmd_ticker, needs_key=False)

    candles = commands.add_parser("candles", parents=[common],
                                  help="OHLCV candles from the trades, oldest first")
    candles.add_argument("instrument", help="e.g. BTC-USD")
    candles.add_argument("--interval", type=str.lower, choices=list(cv.CANDLE_INTERVALS),
                         default="1m")
    candles.add_argument("--start", type=_iso, metavar="ISO",
                         help="first candle start (default: the first trade)")
    candles.add_argument("--end", type=_iso, metavar="ISO",
                         help="candles starting before this (default: up to now)")
    candles.add_argument("--limit", type=positive, default=100, metavar="N",
                         help="at most N candles (default %(default)s)")
    candles.set_defaults(handler=cmd_candles, needs_key=False)

