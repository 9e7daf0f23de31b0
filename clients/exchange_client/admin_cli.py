"""``exchange admin ...``: the operator's commands (exchange.admin.v1.AdminService).

    exchange admin account create NAME [--tier TIER]
    exchange admin account list | get NAME | disable NAME | enable NAME
    exchange admin account tier NAME TIER
    exchange admin key create ACCOUNT [--label TEXT]        # prints the secret, once
    exchange admin key list [--account NAME] [--prefix P] [--all]
    exchange admin key revoke PREFIX
    exchange admin tier list
    exchange admin tier set NAME [--orders-per-second N] [--orders-burst N] ...
    exchange admin instrument list
    exchange admin instrument create SYMBOL --base B --quote Q --tick 0.01 --lot 0.0001
                                     --min-quantity Q --max-quantity Q [--min-notional N]
                                     [--price-band-bps N] [--id N] [--status S]
    exchange admin instrument update SYMBOL [--min-quantity Q] [--max-quantity Q]
                                     [--min-notional N] [--price-band-bps N]
                                     [--maker-fee-bps N] [--taker-fee-bps N]
    exchange admin instrument status SYMBOL trading|cancel-only|halted
    exchange admin instrument move SYMBOL --to POD [--wait SECONDS]
    exchange admin pods                                 # the matching pods, what each owns
    exchange admin admin-key create NAME | list [--all] | revoke PREFIX
    exchange admin audit [--target PREFIX] [--limit N]
    exchange admin deposit|withdraw|adjust ACCOUNT ASSET AMOUNT --key IDEMPOTENCY_KEY
                                     [--reference TEXT]
    exchange admin balances ACCOUNT
    exchange admin assets
    exchange admin fees ACCOUNT INSTRUMENT --maker-bps N --taker-bps N | --clear
    exchange admin check-balances                       # exits 1 when a check fails

The admin key comes from ``--admin-key`` or ``EXCHANGE_ADMIN_KEY``; the address from
``--admin-addr`` or ``EXCHANGE_ADMIN_ADDR`` (default: the order service's).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.message import Message
from rich.table import Table

from exchange.admin.v1 import admin_pb2 as apb
from exchange.common.v1 import common_pb2
from exchange_client.admin import STATUSES, AsyncAdminClient

ADMIN_KEY_HELP = ("admin commands need an admin key; pass --admin-key KEY or set "
                  "EXCHANGE_ADMIN_KEY")
TIER_LIMITS = ("orders_per_second", "orders_burst", "cancels_per_second", "cancels_burst",
               "queries_per_second", "queries_burst", "max_open_orders")

Handler = Callable[[AsyncAdminClient, argparse.Namespace, Any], Any]


def _when(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def _table(title: str, columns: list[str], rows: Iterable[list[Any]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


def accounts_table(accounts: Iterable[apb.Account]) -> Table:
    return _table("Accounts", ["id", "name", "tier", "enabled", "created", "disabled"],
                  ([a.account_id, a.name, a.tier, "yes" if a.enabled else "no",
                    _when(a.create_time), _when(a.disable_time)] for a in accounts))


def keys_table(keys: Iterable[apb.ApiKey]) -> Table:
    return _table("API keys", ["prefix", "account", "label", "created", "revoked"],
                  ([k.prefix, k.account, k.label, _when(k.create_time),
                    _when(k.revoke_time)] for k in keys))


def admin_keys_table(keys: Iterable[apb.AdminKey]) -> Table:
    return _table("Admin keys", ["prefix", "name", "created by", "created", "revoked"],
                  ([k.prefix, k.name, k.created_by, _when(k.create_time),
                    _when(k.revoke_time)] for k in keys))


def tiers_table(tiers: Iterable[apb.RateTier]) -> Table:
    return _table("Rate tiers (per second / burst; 0 = no limit)",
                  ["tier", "orders", "cancels", "queries", "open orders per instrument"],
                  ([t.name, f"{t.orders_per_second}/{t.orders_burst}",
                    f"{t.cancels_per_second}/{t.cancels_burst}",
                    f"{t.queries_per_second}/{t.queries_burst}", t.max_open_orders]
                   for t in tiers))


def _status(value: int) -> str:
    return common_pb2.InstrumentStatus.Name(value).removeprefix("INSTRUMENT_STATUS_").lower()


def instruments_table(instruments: Iterable[apb.Instrument]) -> Table:
    return _table("Instruments", ["id", "symbol", "status", "tick", "lot", "min qty",
                                  "max qty", "min notional", "band bps", "owner (epoch)",
                                  "sequence"],
                  ([i.instrument_id, i.symbol, _status(i.status), i.tick_size, i.lot_size,
                    i.min_quantity, i.max_quantity, i.min_notional, i.price_band_bps,
                    f"{i.owner_pod or i.owner or '-'} ({i.owner_epoch})", i.sequence]
                   for i in instruments))


def matching_pods_table(pods: Iterable[apb.MatchingPod]) -> Table:
    return _table("Matching pods", ["name", "address", "live", "home", "may own", "owns",
                                    "reserved until"],
                  ([p.name, p.address, "yes" if p.live else "no", p.home or "-", p.may_own,
                    ", ".join(p.owned) or "-", _when(p.reserved_until)] for p in pods))


def assets_table(assets: Iterable[apb.Asset]) -> Table:
    return _table("Assets", ["asset", "decimals"], ([a.symbol, a.decimals] for a in assets))


def totals_table(totals: Iterable[apb.AssetTotal]) -> Table:
    return _table("Totals per asset", ["asset", "balances", "transfers in - out", "fees"],
                  ([t.asset, t.balances, t.transfers, t.fees] for t in totals))


def audit_table(entries: Iterable[apb.AuditEntry]) -> Table:
    return _table("Audit log, newest first", ["id", "time", "actor", "action", "target",
                                              "before", "after"],
                  ([e.audit_id, _when(e.time), e.actor, e.action, e.target, e.before or "-",
                    e.after or "-"] for e in entries))


def _show(out: Any, message: Message | list[Message], table: Table, key: str) -> None:
    from exchange_client.cli import to_dict

    if out.json:
        value = ([to_dict(m) for m in message] if isinstance(message, list)
                 else to_dict(message))
        out.print_json({key: value})
    else:
        out.print(table)


# -- handlers ----------------------------------------------------------------------------

async def account_create(admin, args, out) -> None:
    account = await admin.create_account(args.name, args.tier or "")
    _show(out, account, accounts_table([account]), "account")


async def account_get(admin, args, out) -> None:
    account = await admin.get_account(args.name)
    _show(out, account, accounts_table([account]), "account")


async def account_list(admin, args, out) -> None:
    accounts = [a async for a in admin.iter_accounts()]
    _show(out, accounts, accounts_table(accounts), "accounts")


async def account_enable(admin, args, out) -> None:
    account = await admin.set_account_enabled(args.name, args.enabled)
    _show(out, account, accounts_table([account]), "account")


async def account_tier(admin, args, out) -> None:
    account = await admin.set_account_tier(args.name, args.tier)
    _show(out, account, accounts_table([account]), "account")


async def key_create(admin, args, out) -> None:
    made = await admin.create_api_key(args.account, args.label or "")
    if out.json:
        from exchange_client.cli import to_dict

        out.print_json(to_dict(made))
        return
    out.print(keys_table([made.key]))
    out.print(f"secret (shown once, keep it safe): {made.secret}")


async def key_list(admin, args, out) -> None:
    keys = [k async for k in admin.iter_api_keys(args.account or "", args.prefix or "",
                                                 args.all)]
    _show(out, keys, keys_table(keys), "keys")


async def key_revoke(admin, args, out) -> None:
    key = await admin.revoke_api_key(args.prefix)
    _show(out, key, keys_table([key]), "key")


async def tier_list(admin, args, out) -> None:
    tiers = await admin.list_rate_tiers()
    _show(out, tiers, tiers_table(tiers), "tiers")


async def tier_set(admin, args, out) -> None:
    current = {t.name: t for t in await admin.list_rate_tiers()}.get(args.name)
    tier = apb.RateTier(name=args.name)
    for limit in TIER_LIMITS:
        given = getattr(args, limit)
        setattr(tier, limit, given if given is not None else
                (getattr(current, limit) if current is not None else 0))
    tier = await admin.set_rate_tier(tier)
    _show(out, tier, tiers_table([tier]), "tier")


async def instrument_list(admin, args, out) -> None:
    instruments = await admin.list_instruments()
    _show(out, instruments, instruments_table(instruments), "instruments")


async def instrument_create(admin, args, out) -> None:
    instrument = await admin.create_instrument(apb.Instrument(
        instrument_id=args.id or 0, symbol=args.symbol, base_asset=args.base,
        quote_asset=args.quote, tick_size=args.tick, lot_size=args.lot,
        min_quantity=args.min_quantity, max_quantity=args.max_quantity,
        min_notional=args.min_notional or "0", price_band_bps=args.price_band_bps or 0,
        status=STATUSES[args.status]))
    _show(out, instrument, instruments_table([instrument]), "instrument")


async def instrument_update(admin, args, out) -> None:
    request = apb.UpdateInstrumentRequest(
        symbol=args.symbol, min_quantity=args.min_quantity or "",
        max_quantity=args.max_quantity or "", min_notional=args.min_notional or "")
    if args.price_band_bps is not None:
        request.price_band_bps = args.price_band_bps
    if args.maker_fee_bps is not None:
        request.maker_fee_bps = args.maker_fee_bps
    if args.taker_fee_bps is not None:
        request.taker_fee_bps = args.taker_fee_bps
    instrument = await admin.update_instrument(request)
    _show(out, instrument, instruments_table([instrument]), "instrument")


async def instrument_status(admin, args, out) -> None:
    instrument = await admin.set_instrument_status(args.symbol, args.status)
    _show(out, instrument, instruments_table([instrument]), "instrument")


async def instrument_move(admin, args, out) -> None:
    moved = await admin.move_instrument(args.symbol, args.to, args.wait)
    if out.json:
        _show(out, moved, instruments_table([moved.instrument]), "move")
        return
    i = moved.instrument
    out.print(f"{i.symbol}: {moved.previous_owner or 'nobody'} (epoch {moved.previous_epoch})"
              f" -> {i.owner_pod} (epoch {i.owner_epoch})")


async def pods(admin, args, out) -> None:
    found = await admin.list_matching_pods()
    _show(out, found, matching_pods_table(found), "pods")


async def admin_key_create(admin, args, out) -> None:
    made = await admin.create_admin_key(args.name)
    if out.json:
        from exchange_client.cli import to_dict

        out.print_json(to_dict(made))
        return
    out.print(admin_keys_table([made.key]))
    out.print(f"secret (shown once, keep it safe): {made.secret}")


async def admin_key_list(admin, args, out) -> None:
    keys = await admin.list_admin_keys(args.all)
    _show(out, keys, admin_keys_table(keys), "keys")


async def admin_key_revoke(admin, args, out) -> None:
    key = await admin.revoke_admin_key(args.prefix)
    _show(out, key, admin_keys_table([key]), "key")


async def audit(admin, args, out) -> None:
    entries = [e async for e in admin.iter_audit(args.target or "", args.limit)]
    _show(out, entries, audit_table(entries), "entries")


async def transfer(admin, args, out) -> None:
    from exchange_client.cli import balances_table, to_dict
    made = await getattr(admin, args.transfer)(args.account, args.asset, args.amount, args.key,
                                               args.reference or "")
    if out.json:
        out.print_json(to_dict(made))
        return
    what = f"{made.entry_id} (duplicate: nothing moved)" if made.duplicate else made.entry_id
    out.print(balances_table([made.balance], title=f"{args.account} after {what}"))


async def balances(admin, args, out) -> None:
    from exchange_client.cli import balances_table
    found = await admin.get_account_balances(args.account)
    _show(out, found, balances_table(found, title=f"Balances of {args.account}"), "balances")


async def assets(admin, args, out) -> None:
    found = await admin.list_assets()
    _show(out, found, assets_table(found), "assets")


async def fees(admin, args, out) -> None:
    if not args.clear and (args.maker_bps is None or args.taker_bps is None):
        from exchange_client.cli import CliError
        raise CliError("give --maker-bps and --taker-bps, or --clear")
    await admin.set_account_fees(args.account, args.instrument, args.maker_bps or 0,
                                 args.taker_bps or 0, clear=args.clear)
    if out.json:
        out.print_json({})
    elif args.clear:
        out.print(f"{args.account} pays the {args.instrument} fees again")
    else:
        out.print(f"{args.account} on {args.instrument}: maker {args.maker_bps} bps, "
                  f"taker {args.taker_bps} bps")


async def check_balances(admin, args, out) -> None:
    from exchange_client.cli import CliError, to_dict
    report = await admin.check_balances()
    if out.json:
        out.print_json(to_dict(report))
    else:
        out.print(totals_table(report.totals))
        for problem in report.problems:
            out.print(f"problem: {problem}")
        if report.ok:
            out.print("ok: every balance check holds")
    if not report.ok:
        raise CliError(f"{len(report.problems)} balance check(s) failed")


# -- the parser --------------------------------------------------------------------------

def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def add_admin_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """``exchange admin ...`` under the CLI's ``commands`` (subparsers)."""
    admin = commands.add_parser("admin", parents=[common],
                                help="operate the exchange (needs an admin key)")
    nouns = admin.add_subparsers(dest="admin_noun", metavar="WHAT", required=True)

    def verb(noun: Any, name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        parser = noun.add_parser(name, parents=[common], help=text)
        parser.set_defaults(handler=handler, needs_key=False, admin=True)
        return parser

    accounts = nouns.add_parser("account", parents=[common], help="trading accounts")
    acts = accounts.add_subparsers(dest="admin_verb", metavar="ACTION", required=True)
    p = verb(acts, "create", account_create, "create an account")
    p.add_argument("name")
    p.add_argument("--tier", help="rate tier (default: default)")
    verb(acts, "list", account_list, "list the accounts")
    verb(acts, "get", account_get, "show an account").add_argument("name")
    p = verb(acts, "disable", account_enable, "refuse the account's keys at once")
    p.add_argument("name")
    p.set_defaults(enabled=False)
    p = verb(acts, "enable", account_enable, "accept the account's keys again")
    p.add_argument("name")
    p.set_defaults(enabled=True)
    p = verb(acts, "tier", account_tier, "move an account to another rate tier")
    p.add_argument("name")
    p.add_argument("tier")

    keys = nouns.add_parser("key", parents=[common], help="trading API keys")
    acts = keys.add_subparsers(dest="admin_verb", metavar="ACTION", required=True)
    p = verb(acts, "create", key_create, "make a key for an account (the secret is shown once)")
    p.add_argument("account")
    p.add_argument("--label", help="free text, e.g. the desk or the machine")
    p = verb(acts, "list", key_list, "list keys (never their secrets)")
    p.add_argument("--account")
    p.add_argument("--prefix", help="keys whose prefix starts with this, e.g. ex_1a")
    p.add_argument("--all", action="store_true", help="revoked keys too")
    verb(acts, "revoke", key_revoke, "refuse a key at once, everywhere").add_argument("prefix")

    tiers = nouns.add_parser("tier", parents=[common], help="rate tiers")
    acts = tiers.add_subparsers(dest="admin_verb", metavar="ACTION", required=True)
    verb(acts, "list", tier_list, "list the rate tiers")
    p = verb(acts, "set", tier_set, "create or change a tier (limits not given are kept)")
    p.add_argument("name")
    for limit in TIER_LIMITS:
        p.add_argument("--" + limit.replace("_", "-"), type=_non_negative, metavar="N",
                       help="0 = no limit")

    instruments = nouns.add_parser("instrument", parents=[common], help="instruments")
    acts = instruments.add_subparsers(dest="admin_verb", metavar="ACTION", required=True)
    verb(acts, "list", instrument_list, "instruments with their status, limits and owner")
    p = verb(acts, "create", instrument_create, "add an instrument")
    p.add_argument("symbol", help="e.g. SOL-USD")
    p.add_argument("--base", required=True, help="base asset, e.g. SOL")
    p.add_argument("--quote", required=True, help="quote asset, e.g. USD")
    p.add_argument("--tick", required=True, help="price step, e.g. 0.01")
    p.add_argument("--lot", required=True, help="quantity step, e.g. 0.001")
    p.add_argument("--min-quantity", required=True)
    p.add_argument("--max-quantity", required=True)
    p.add_argument("--min-notional", help="smallest price x quantity (default 0)")
    p.add_argument("--price-band-bps", type=_non_negative,
                   help="limit prices within this many basis points of the last trade")
    p.add_argument("--id", type=_non_negative, help="instrument id (default: the next)")
    p.add_argument("--status", choices=list(STATUSES), default="trading")
    p = verb(acts, "update", instrument_update, "change an instrument's limits")
    p.add_argument("symbol")
    p.add_argument("--min-quantity")
    p.add_argument("--max-quantity")
    p.add_argument("--min-notional")
    p.add_argument("--price-band-bps", type=_non_negative, help="0 removes the band")
    p.add_argument("--maker-fee-bps", type=int, metavar="N",
                   help="maker fee in basis points (negative: a rebate)")
    p.add_argument("--taker-fee-bps", type=_non_negative, metavar="N",
                   help="taker fee in basis points")
    p = verb(acts, "status", instrument_status, "trading, cancel-only or halted, at once")
    p.add_argument("symbol")
    p.add_argument("status", choices=list(STATUSES))
    p = verb(acts, "move", instrument_move,
             "hand an instrument over to another matching pod, live (it stays there)")
    p.add_argument("symbol")
    p.add_argument("--to", required=True, metavar="POD",
                   help="the matching pod's name (exchange admin pods lists them)")
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the pod to own it (default 10)")
    verb(nouns, "pods", pods, "the matching pods: live or not, homes, what each owns")

    admin_keys = nouns.add_parser("admin-key", parents=[common], help="admin keys")
    acts = admin_keys.add_subparsers(dest="admin_verb", metavar="ACTION", required=True)
    verb(acts, "create", admin_key_create,
         "make an admin key (the secret is shown once)").add_argument("name")
    verb(acts, "list", admin_key_list, "list admin keys").add_argument(
        "--all", action="store_true", help="revoked keys too")
    verb(acts, "revoke", admin_key_revoke, "revoke an admin key").add_argument("prefix")

    for name, text in (("deposit", "credit an account"), ("withdraw", "debit an account"),
                       ("adjust", "correct an account (a signed amount)")):
        p = verb(nouns, name, transfer, text)
        p.add_argument("account")
        p.add_argument("asset", help="e.g. USD")
        p.add_argument("amount", help="decimal, e.g. 1000.50" + (
            " (negative takes away; put -- before it)" if name == "adjust" else ""))
        p.add_argument("--key", required=True, metavar="IDEMPOTENCY_KEY",
                       help="unique per transfer: the same key again moves nothing")
        p.add_argument("--reference", metavar="TEXT", help="kept with the entry")
        p.set_defaults(transfer=name)
    verb(nouns, "balances", balances, "an account's balances").add_argument("account")
    verb(nouns, "assets", assets, "the assets and their decimal places")
    p = verb(nouns, "fees", fees, "an account's fees on an instrument (overrides its own)")
    p.add_argument("account")
    p.add_argument("instrument")
    p.add_argument("--maker-bps", type=int, metavar="N", help="negative: a rebate")
    p.add_argument("--taker-bps", type=_non_negative, metavar="N")
    p.add_argument("--clear", action="store_true", help="back to the instrument's fees")
    verb(nouns, "check-balances", check_balances,
         "check the money invariants (exits 1 when one fails)")
    p = verb(nouns, "audit", audit, "the audit log, newest first")
    p.add_argument("--target", help="only targets starting with this, e.g. account:bob")
    p.add_argument("--limit", type=_non_negative, default=50, help="default %(default)s")
