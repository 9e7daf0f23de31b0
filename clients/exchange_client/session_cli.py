"""``exchange session``: a scriptable OrderEntry session, one command per line of stdin.

    buy BTC-USD 0.01 @ 69000 id=o1          a limit buy (client_order_id o1)
    sell BTC-USD 0.01 id=o2                 a market sell (no price)
    buy BTC-USD funds=100 id=o3             a quote-sized market buy
    sell BTC-USD 0.01 @ 68000 stop=68500 id=o4   a stop-limit (stop= with a market: a stop)
    buy BTC-USD 0.01 @ 69000 tif=gtt expire=+30m stp=cancel_both post_only id=o5
    cancel o1                               by client_order_id (cancel order=ID: by order id)
    amend o1 qty=0.02 price=69100           (quantity= also; amend order=ID ...)
    renew                                   restart the dead-man timer

Blank lines and ``#`` comments are skipped. An order's ``id=`` is optional (a random
one is made). Every command is sent as soon as its line is read; answers are printed as
they come (``--json``: one JSON object per line). The end of the input is the goodbye:
the session waits for the answers due and closes its side, so nothing is cancelled;
with ``--cancel-on-disconnect``, a session killed before that has its open orders
cancelled. Exit status 1 when any line or command failed.

Also here: the times that ``--expire-time`` and ``expire=`` take (``parse_time``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
from typing import Any

from google.protobuf import json_format

from exchange.common.v1 import common_pb2
from exchange.order.v1 import order_pb2
from exchange_client import _convert as cv
from exchange_client.aio import AsyncExchangeClient
from exchange_client.errors import ExchangeError, from_status_proto
from exchange_client.session import (
    MAX_DEAD_MAN_SECONDS,
    AsyncOrderEntrySession,
    amend_command,
    cancel_command,
    create_command,
)

RENEW = "renew"
STP_MODES = ["none", "cancel_resting", "cancel_incoming", "cancel_both", "decrement"]
_RELATIVE = re.compile(r"^\+(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class LineError(ValueError):
    """A line of input that is not a command."""


def parse_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``+30m`` (s, m, h, d from now) or an ISO 8601 time with its zone."""
    match = _RELATIVE.match(text.strip())
    if match:
        base = now or dt.datetime.now(dt.UTC)
        return base + dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give +30m (s, m, h, d) or ISO 8601 "
                         "with a zone, e.g. 2026-12-05T10:00:00Z") from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z or +00:00)")
    return when


def _pairs(tokens: list[str]) -> tuple[dict[str, str], list[str]]:
    """key=value tokens, and the bare words."""
    pairs: dict[str, str] = {}
    words = []
    for token in tokens:
        if "=" in token:
            key, _, value = token.partition("=")
            key = key.lower().replace("-", "_")
            if key in pairs:
                raise LineError(f"{key}= given twice")
            pairs[key] = value
        else:
            words.append(token)
    return pairs, words


def _refuse_unknown(pairs: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(pairs) - allowed)
    if unknown:
        raise LineError(f"unknown {', '.join(k + '=' for k in unknown)} (allowed: "
                        f"{', '.join(sorted(k + '=' for k in allowed))})")


_ORDER_KEYS = {"id", "tif", "stp", "stop", "expire", "funds", "type"}


def _order(side: str, tokens: list[str], now: dt.datetime | None
           ) -> order_pb2.OrderEntryCommand:
    pairs, words = _pairs(tokens)
    _refuse_unknown(pairs, _ORDER_KEYS)
    post_only = False
    if "post_only" in words or "post-only" in words:
        post_only = True
        words = [w for w in words if w not in ("post_only", "post-only")]
    price = None
    if "@" in words:
        at = words.index("@")
        if at + 1 >= len(words):
            raise LineError("@ needs a price")
        price = words[at + 1]
        words = words[:at] + words[at + 2:]
    if not words:
        raise LineError(f"{side} needs an instrument: {side} BTC-USD 0.01 [@ PRICE]")
    instrument, rest = words[0], words[1:]
    if len(rest) > 1:
        raise LineError(f"unexpected {' '.join(rest[1:])!r}")
    quantity = rest[0] if rest else None
    if quantity is None and "funds" not in pairs:
        raise LineError("give a quantity (or funds= for a market buy)")
    kind = pairs.get("type", "limit" if price is not None else "market")
    expire = pairs.get("expire")
    try:
        return create_command(
            instrument, side, quantity, price=price, type=kind,
            time_in_force=cv.gtt_if_expiring(pairs.get("tif"), expire),
            client_order_id=pairs.get("id"), post_only=post_only, funds=pairs.get("funds"),
            self_trade_prevention=pairs.get("stp"), stop_price=pairs.get("stop"),
            expire_time=None if expire is None else parse_time(expire, now))
    except (TypeError, ValueError) as err:
        raise LineError(str(err)) from None


def _reference(verb: str, pairs: dict[str, str], words: list[str]) -> dict[str, str | None]:
    if "order" in pairs or "order_id" in pairs:
        if words:
            raise LineError(f"{verb}: give a client order id or order=ID, not both")
        return {"order_id": pairs.get("order") or pairs.get("order_id"),
                "client_order_id": None}
    if len(words) != 1:
        raise LineError(f"{verb} needs one client order id (or order=ID)")
    return {"order_id": None, "client_order_id": words[0]}


def parse_line(line: str, now: dt.datetime | None = None
               ) -> order_pb2.OrderEntryCommand | str | None:
    """One line of input: a command, ``RENEW``, or None (blank or a comment);
    LineError when it is neither."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    verb, *tokens = text.split()
    verb = verb.lower()
    if verb in ("buy", "sell"):
        return _order(verb, tokens, now)
    if verb == "cancel":
        pairs, words = _pairs(tokens)
        _refuse_unknown(pairs, {"order", "order_id"})
        return cancel_command(**_reference(verb, pairs, words))
    if verb == "amend":
        pairs, words = _pairs(tokens)
        _refuse_unknown(pairs, {"order", "order_id", "qty", "quantity", "price"})
        try:
            return amend_command(**_reference(verb, pairs, words), price=pairs.get("price"),
                                 quantity=pairs.get("qty") or pairs.get("quantity"))
        except (TypeError, ValueError) as err:
            raise LineError(str(err)) from None
    if verb == RENEW:
        if tokens:
            raise LineError("renew takes nothing more")
        return RENEW
    raise LineError(f"unknown command {verb!r} (buy, sell, cancel, amend, renew)")


# -- output ----------------------------------------------------------------------------


def _dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True,
                                     unquote_int64_if_possible=True)


def order_line(order: order_pb2.Order) -> str:
    side = cv.short_name(common_pb2.Side, order.side, "SIDE_")
    state = cv.short_name(common_pb2.OrderState, order.state, "ORDER_STATE_")
    text = f"{order.client_order_id}  {state}  {side} {order.quantity} {order.instrument}"
    if order.price:
        text += f" @ {order.price}"
    if order.stop_price:
        text += f" stop {order.stop_price}"
    text += f"  order {order.order_id}  filled {order.filled_quantity}"
    if order.reason:
        text += f"  ({order.reason})"
    return text


class Printer:
    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def _out(self, value: dict[str, Any] | str) -> None:
        text = json.dumps(value) if isinstance(value, dict) else value
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def answer(self, line_no: int, event: order_pb2.OrderEntryEvent) -> None:
        if self.json:
            self._out({"line": line_no, **_dict(event)})
        else:
            fills = f"  {len(event.fills)} fill(s)" if event.fills else ""
            self._out(order_line(event.order) + fills)

    def failed(self, line_no: int, what: str, err: Exception) -> None:
        if self.json:
            error: dict[str, Any] = {"message": str(err)}
            if isinstance(err, ExchangeError):
                error = {"code": err.code_name, "reason": err.reason, "message": err.message,
                         "metadata": err.metadata,
                         "field_violations": [{"field": v.field, "description": v.description}
                                              for v in err.field_violations]}
            self._out({"line": line_no, "input": what, "error": error})
        else:
            sys.stderr.write(f"line {line_no}: {what}: error: {err}\n")
            sys.stderr.flush()

    def notice(self, response: order_pb2.OrderEntryResponse) -> None:
        if self.json:
            self._out(_dict(response))
            return
        ids = " ".join(o.order_id for o in response.cancelled)
        self._out(f"notice {response.notice or 'session'}: cancelled "
                  f"{len(response.cancelled)} order(s){': ' + ids if ids else ''}")
        for event in response.events:
            sys.stderr.write(f"session error: {from_status_proto(event.error)}\n")


# -- the command ----------------------------------------------------------------------


async def _notices(session: AsyncOrderEntrySession, printer: Printer) -> None:
    while True:
        printer.notice(await session.next_notice())


async def cmd_session(client: AsyncExchangeClient, args: argparse.Namespace,
                      out: Any) -> None:
    printer = Printer(out.json)
    failures = 0
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def one(line_no: int, text: str, command: order_pb2.OrderEntryCommand) -> None:
        nonlocal failures
        try:
            event = await session.execute(command)
        except ExchangeError as err:
            failures += 1
            printer.failed(line_no, text, err)
            return
        printer.answer(line_no, event)

    async with client.order_entry(cancel_on_disconnect=args.cancel_on_disconnect,
                                  dead_man_seconds=args.dead_man or 0) as session:
        watcher = asyncio.create_task(_notices(session, printer))
        line_no = 0
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            line_no += 1
            text = line.strip()
            try:
                command = parse_line(text)
            except LineError as err:
                failures += 1
                printer.failed(line_no, text, err)
                continue
            if command is None:
                continue
            if command == RENEW:
                await session.renew()
                continue
            assert isinstance(command, order_pb2.OrderEntryCommand)
            task = asyncio.create_task(one(line_no, text, command))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
    watcher.cancel()
    if failures:
        raise SessionFailures(f"{failures} command(s) failed")


class SessionFailures(ValueError):
    """Some lines failed (each was reported where it failed): exit status 1."""


def _dead_man(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_DEAD_MAN_SECONDS:
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_DEAD_MAN_SECONDS}")
    return value


def add_session_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    session = commands.add_parser(
        "session", parents=[common], help="an order-entry session fed from stdin",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Lines: 'buy BTC-USD 0.01 @ 69000 id=o1', 'sell BTC-USD 0.01', 'cancel o1', "
               "'cancel order=ID', 'amend o1 qty=0.02 price=69100', 'renew'; order options "
               "tif= stp= stop= expire= funds= type= post_only. End of input = goodbye.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    session.add_argument("--cancel-on-disconnect", action="store_true",
                         help="if the session ends without a goodbye (killed, dropped), "
                              "the server cancels its open orders")
    session.add_argument("--dead-man", type=_dead_man, metavar="SECONDS",
                         help="cancel all your open orders unless 'renew' comes within "
                              "SECONDS (1-3600)")
    session.set_defaults(handler=cmd_session, needs_key=True)
