"""The operator's API: exchange.admin.v1.AdminService.

Authenticated by ``x-admin-key`` (``admin_keys``; a trading key is never one).
The servicer checks and converts requests and answers; the writes and their
audit rows are in ``admin_store.py``. Changes reach every service at once
through the change notifications of migration 0003.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal

import grpc

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common.changes import ChangeListener
from exchange_common.decimals import (
    DecimalFormatError,
    OffGridError,
    amount_str,
    decimals_of,
    format_decimal,
    parse_amount,
    parse_decimal,
)
from exchange_common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    grpc_errors,
)
from exchange_common.instruments import STATUS_BY_NAME, STATUS_NAMES
from exchange_common.keys import MAX_KEY_LENGTH
from exchange_common.paging import INT64_MAX, PageTokens, page_size
from order_service.admin_store import INSTRUMENT_LIMITS, TIER_COLUMNS, Actor, AdminStore
from order_service.auth import FailureBudget, peer_host
from order_service.balances_check import check_balances
from order_service.convert import ts_from_datetime
from order_service.ledger import balance_message

ADMIN_KEY_HEADER = "x-admin-key"
SERVICE = apb.DESCRIPTOR.services_by_name["AdminService"]

_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}\Z")
_TIER_NAME = re.compile(r"^[a-z0-9_-]{1,32}\Z")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}\Z")
_ASSET = re.compile(r"^[A-Z0-9]{1,16}\Z")
# A matching pod's name (EXCHANGE_MATCHING_NAME): a pod name, or host:port in development.
_POD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\[\]-]{0,252}\Z")
# MoveInstrument's wait for the target (milliseconds): the default and the most.
MOVE_TIMEOUT_MS = 10_000
MAX_MOVE_TIMEOUT_MS = 120_000
_KEY_PREFIX = re.compile(r"^(ex|exa)_[0-9a-f]{1,8}\Z")
MAX_LABEL = 128
MAX_LIMIT = 1_000_000_000
MAX_BAND_BPS = 10_000
MAX_DECIMALS = 18
MAX_FEE_BPS = 10_000
MAX_IDEMPOTENCY_KEY = 128
MAX_REFERENCE = 256
# The most one transfer moves, in the asset's smallest units (a balance is a bigint).
MAX_TRANSFER_UNITS = 10**18


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _checked(pattern: re.Pattern[str], value: str, field: str, what: str) -> str:
    if not pattern.match(value):
        raise InvalidArgument(f"{field} {_clip(value)!r} is not a valid {what}",
                              reason=f"{field.upper()}_INVALID", field=field)
    return value


def _decimal(text: str, field: str) -> Decimal:
    try:
        value = parse_decimal(text)
    except DecimalFormatError:
        raise InvalidArgument(f"{field} {_clip(text)!r} is not a plain decimal number",
                              reason="INVALID_DECIMAL", field=field) from None
    if decimals_of(value) > MAX_DECIMALS:
        raise InvalidArgument(f"{field} has more than {MAX_DECIMALS} decimals",
                              reason="INVALID_DECIMAL", field=field)
    return value


def _band(value: int, field: str = "price_band_bps") -> int:
    if not 0 <= value <= MAX_BAND_BPS:
        raise InvalidArgument(f"{field} must be 0-{MAX_BAND_BPS}", reason="PRICE_BAND_INVALID",
                              field=field)
    return value


def _fees(maker: int, taker: int, prefix: str = "") -> tuple[int, int]:
    """Fees as the instruments' and account_fees' CHECK allows them: a taker fee of
    0-10,000 bps, a maker fee from minus the taker fee (a rebate) to 10,000."""
    if not 0 <= taker <= MAX_FEE_BPS:
        raise InvalidArgument(f"{prefix}taker_fee_bps must be 0-{MAX_FEE_BPS}",
                              reason="FEE_INVALID", field=f"{prefix}taker_fee_bps")
    if not -taker <= maker <= MAX_FEE_BPS:
        raise InvalidArgument(
            f"{prefix}maker_fee_bps must be from -taker_fee_bps ({-taker}) to {MAX_FEE_BPS}",
            reason="FEE_INVALID", field=f"{prefix}maker_fee_bps")
    return maker, taker


def _text(value: str, field: str, limit: int, required: bool = False) -> str:
    if (required and not value) or len(value) > limit or not value.isascii() or (
            value and not value.isprintable()):
        raise InvalidArgument(
            f"{field} must be {'1-' if required else 'at most '}{limit} printable ASCII "
            "characters", reason=f"{field.upper()}_INVALID", field=field)
    return value


def _multiple(value: Decimal, step: Decimal, field: str) -> None:
    if value % step:
        raise InvalidArgument(f"{field} {format_decimal(value)} is not a multiple of the lot "
                              f"size {format_decimal(step)}", reason="QUANTITY_OFF_LOT",
                              field=field)


def _check_limits(lot: Decimal, min_q: Decimal, max_q: Decimal) -> None:
    if min_q <= 0:
        raise InvalidArgument("min_quantity must be positive", reason="QUANTITY_NOT_POSITIVE",
                              field="min_quantity")
    _multiple(min_q, lot, "min_quantity")
    _multiple(max_q, lot, "max_quantity")
    if max_q < min_q:
        raise InvalidArgument("max_quantity is below min_quantity",
                              reason="QUANTITY_BOUNDS_INVALID", field="max_quantity")


class AdminAuth:
    """``x-admin-key`` -> the admin key's name and prefix, cached until ``admin_keys``
    changes; failures counted per peer like the trading keys'."""

    def __init__(self, store: AdminStore, changes: ChangeListener, *, ttl: float,
                 max_failed_per_minute: int) -> None:
        self.store = store
        self.changes = changes
        self.ttl = ttl
        self.failures = FailureBudget(max_failed_per_minute)
        self._cache: dict[str, tuple[tuple[str, str] | None, float]] = {}
        changes.on("admin_keys", self._cache.clear)

    async def actor(self, context: grpc.aio.ServicerContext) -> Actor:
        keys = [value for key, value in context.invocation_metadata() or ()
                if key == ADMIN_KEY_HEADER]
        if not keys or not keys[0]:
            raise Unauthenticated(f"the admin API needs an admin key as metadata "
                                  f"'{ADMIN_KEY_HEADER}'", reason="ADMIN_KEY_MISSING")
        if len(keys) > 1:
            raise Unauthenticated(f"send one '{ADMIN_KEY_HEADER}'", reason="ADMIN_KEY_REPEATED")
        key, peer = keys[0], peer_host(context)
        hit = self._cache.get(key) if isinstance(key, str) else None
        if hit is not None and time.monotonic() - hit[1] < self.changes.max_age(self.ttl):
            found = hit[0]
        else:
            wait = self.failures.exhausted(peer)
            if wait:
                raise ResourceExhausted("too many failed authentications from this address",
                                        reason="AUTH_RATE_LIMITED", retry_after=wait)
            found = None
            if (isinstance(key, str) and len(key) <= MAX_KEY_LENGTH and key.isascii()
                    and key.isprintable()):
                generation = self.changes.generation
                row = await self.store.admin_for_key(key)
                found = None if row is None else (row["name"], row["prefix"])
                if generation == self.changes.generation:
                    if len(self._cache) > 10_000:
                        self._cache.clear()
                    self._cache[key] = (found, time.monotonic())
        if found is None:
            self.failures.failed(peer)
            raise Unauthenticated("unknown or revoked admin key", reason="ADMIN_KEY_INVALID")
        return Actor(found[0], found[1], context.peer() or "")


def _ts(value, message) -> None:
    if value is not None:
        message.CopyFrom(ts_from_datetime(value))


def account_message(row) -> apb.Account:
    out = apb.Account(account_id=row["account_id"], name=row["name"],
                      enabled=row["disabled_at"] is None, tier=row["tier"])
    _ts(row["created_at"], out.create_time)
    _ts(row["disabled_at"], out.disable_time)
    return out


def api_key_message(row) -> apb.ApiKey:
    out = apb.ApiKey(prefix=row["prefix"], account=row["account"],
                     account_id=row["account_id"], label=row["label"])
    _ts(row["created_at"], out.create_time)
    _ts(row["revoked_at"], out.revoke_time)
    return out


def admin_key_message(row) -> apb.AdminKey:
    out = apb.AdminKey(prefix=row["prefix"], name=row["name"], created_by=row["created_by"])
    _ts(row["created_at"], out.create_time)
    _ts(row["revoked_at"], out.revoke_time)
    return out


def tier_message(row) -> apb.RateTier:
    return apb.RateTier(name=row["name"], **{c: row[c] for c in TIER_COLUMNS})


def instrument_message(row) -> apb.Instrument:
    tick, lot = row["tick_size"], row["lot_size"]
    places_q = decimals_of(lot)
    return apb.Instrument(
        instrument_id=row["instrument_id"], symbol=row["symbol"],
        base_asset=row["base_asset"], quote_asset=row["quote_asset"],
        tick_size=format_decimal(tick), lot_size=format_decimal(lot),
        min_quantity=format_decimal(row["min_quantity"], places_q),
        max_quantity=format_decimal(row["max_quantity"], places_q),
        min_notional=format_decimal(row["min_notional"]),
        price_band_bps=row["price_band_bps"], status=STATUS_BY_NAME[row["status"]],
        owner=row["owner_address"] or "", owner_epoch=row["owner_epoch"],
        sequence=row["last_sequence"], maker_fee_bps=row["maker_fee_bps"],
        taker_fee_bps=row["taker_fee_bps"], owner_pod=row["owner_name"] or "",
        assigned_to=row["assigned_to"] or "")


def matching_pod_message(row) -> apb.MatchingPod:
    out = apb.MatchingPod(name=row["name"], address=row["address"], home=row["home"],
                          may_own=row["may_own"], live=row["live"], owned=row["owned"])
    _ts(row["reserved_until"], out.reserved_until)
    _ts(row["started_at"], out.start_time)
    return out


def balance_of(row) -> opb.Balance:
    return balance_message(row["symbol"], row["decimals"], row["available"], row["held"])


class AdminServicer(apb_grpc.AdminServiceServicer):
    def __init__(self, store: AdminStore, auth: AdminAuth, page_tokens: PageTokens) -> None:
        self.store = store
        self.auth = auth
        self.page_tokens = page_tokens

    # -- accounts -------------------------------------------------------------------

    @grpc_errors
    async def CreateAccount(self, request, context):
        actor = await self.auth.actor(context)
        name = _checked(_ACCOUNT_NAME, request.name, "name", "account name")
        tier = _checked(_TIER_NAME, request.tier or "default", "tier", "tier name")
        row = await self.store.create_account(actor, name, tier)
        return apb.CreateAccountResponse(account=account_message(row))

    @grpc_errors
    async def GetAccount(self, request, context):
        actor = await self.auth.actor(context)
        name = _checked(_ACCOUNT_NAME, request.name, "name", "account name")
        row = await self.store.account(name)
        if row is None:
            raise NotFound(f"no account {name!r}", reason="ACCOUNT_NOT_FOUND")
        await self.store.audit_read(actor, "GetAccount", f"account:{name}")
        return apb.GetAccountResponse(account=account_message(row))

    @grpc_errors
    async def ListAccounts(self, request, context):
        actor = await self.auth.actor(context)
        size = page_size(request.page_size)
        filters = ("admin-accounts",)
        position = self.page_tokens.decode(request.page_token, filters, (INT64_MAX,))
        rows = await self.store.list_accounts(position[0] if position else 0, size + 1)
        token = (self.page_tokens.encode([rows[size - 1]["account_id"]], filters)
                 if len(rows) > size else "")
        await self.store.audit_read(actor, "ListAccounts", "accounts")
        return apb.ListAccountsResponse(accounts=[account_message(r) for r in rows[:size]],
                                        next_page_token=token)

    @grpc_errors
    async def SetAccountEnabled(self, request, context):
        actor = await self.auth.actor(context)
        name = _checked(_ACCOUNT_NAME, request.name, "name", "account name")
        row = await self.store.update_account(actor, "SetAccountEnabled", name,
                                              enabled=request.enabled)
        return apb.SetAccountEnabledResponse(account=account_message(row))

    @grpc_errors
    async def SetAccountTier(self, request, context):
        actor = await self.auth.actor(context)
        name = _checked(_ACCOUNT_NAME, request.name, "name", "account name")
        tier = _checked(_TIER_NAME, request.tier, "tier", "tier name")
        row = await self.store.update_account(actor, "SetAccountTier", name, tier=tier)
        return apb.SetAccountTierResponse(account=account_message(row))

    # -- API keys -------------------------------------------------------------------

    @grpc_errors
    async def CreateApiKey(self, request, context):
        actor = await self.auth.actor(context)
        account = _checked(_ACCOUNT_NAME, request.account, "account", "account name")
        label = request.label
        if len(label) > MAX_LABEL or not label.isprintable():
            raise InvalidArgument(f"label must be at most {MAX_LABEL} printable characters",
                                  reason="LABEL_INVALID", field="label")
        row, secret = await self.store.create_api_key(actor, account, label)
        return apb.CreateApiKeyResponse(key=api_key_message(row), secret=secret)

    @grpc_errors
    async def ListApiKeys(self, request, context):
        actor = await self.auth.actor(context)
        if request.account:
            _checked(_ACCOUNT_NAME, request.account, "account", "account name")
        if request.prefix and not re.match(r"^[a-z0-9_]{1,12}\Z", request.prefix):
            raise InvalidArgument("prefix is not the start of a key prefix",
                                  reason="PREFIX_INVALID", field="prefix")
        size = page_size(request.page_size)
        filters = ("admin-keys", request.account, request.prefix, request.include_revoked)
        position = self.page_tokens.decode(request.page_token, filters, (INT64_MAX,))
        rows = await self.store.list_api_keys(request.account, request.prefix,
                                              request.include_revoked,
                                              position[0] if position else 0, size + 1)
        token = (self.page_tokens.encode([rows[size - 1]["key_id"]], filters)
                 if len(rows) > size else "")
        await self.store.audit_read(
            actor, "ListApiKeys", f"api_keys:account={request.account},prefix={request.prefix}")
        return apb.ListApiKeysResponse(keys=[api_key_message(r) for r in rows[:size]],
                                       next_page_token=token)

    @grpc_errors
    async def RevokeApiKey(self, request, context):
        actor = await self.auth.actor(context)
        prefix = _checked(_KEY_PREFIX, request.prefix, "prefix", "key prefix (ex_xxxxxxxx)")
        row = await self.store.revoke_api_key(actor, prefix)
        return apb.RevokeApiKeyResponse(key=api_key_message(row))

    # -- rate tiers -----------------------------------------------------------------

    @grpc_errors
    async def SetRateTier(self, request, context):
        actor = await self.auth.actor(context)
        tier = request.tier
        name = _checked(_TIER_NAME, tier.name, "tier.name", "tier name")
        limits = {}
        for column in TIER_COLUMNS:
            value = getattr(tier, column)
            if not 0 <= value <= MAX_LIMIT:
                raise InvalidArgument(f"tier.{column} must be 0-{MAX_LIMIT}",
                                      reason="TIER_LIMIT_INVALID", field=f"tier.{column}")
            limits[column] = value
        row = await self.store.set_tier(actor, name, limits)
        return apb.SetRateTierResponse(tier=tier_message(row))

    @grpc_errors
    async def ListRateTiers(self, request, context):
        actor = await self.auth.actor(context)
        tiers = [tier_message(r) for r in await self.store.list_tiers()]
        await self.store.audit_read(actor, "ListRateTiers", "tiers")
        return apb.ListRateTiersResponse(tiers=tiers)

    # -- instruments ----------------------------------------------------------------

    @grpc_errors
    async def CreateInstrument(self, request, context):
        actor = await self.auth.actor(context)
        i = request.instrument
        if not 0 <= i.instrument_id <= 524287:
            raise InvalidArgument("instrument_id must be 1-524287 (0: the next free one)",
                                  reason="INSTRUMENT_ID_INVALID",
                                  field="instrument.instrument_id")
        values = {
            "instrument_id": i.instrument_id,
            "symbol": _checked(_SYMBOL, i.symbol, "instrument.symbol", "symbol"),
            "base_asset": _checked(_ASSET, i.base_asset, "instrument.base_asset", "asset"),
            "quote_asset": _checked(_ASSET, i.quote_asset, "instrument.quote_asset", "asset"),
            "tick_size": _decimal(i.tick_size, "instrument.tick_size"),
            "lot_size": _decimal(i.lot_size, "instrument.lot_size"),
            "min_quantity": _decimal(i.min_quantity, "instrument.min_quantity"),
            "max_quantity": _decimal(i.max_quantity, "instrument.max_quantity"),
            "min_notional": _decimal(i.min_notional or "0", "instrument.min_notional"),
            "price_band_bps": _band(i.price_band_bps, "instrument.price_band_bps"),
            "status": STATUS_NAMES.get(i.status or cpb.INSTRUMENT_STATUS_TRADING),
        }
        if values["base_asset"] == values["quote_asset"]:
            raise InvalidArgument("base and quote asset must differ", reason="ASSET_INVALID",
                                  field="instrument.quote_asset")
        for field in ("tick_size", "lot_size"):
            if values[field] <= 0:
                raise InvalidArgument(f"instrument.{field} must be positive",
                                      reason="STEP_NOT_POSITIVE", field=f"instrument.{field}")
        if values["status"] is None:
            raise InvalidArgument("status must be an InstrumentStatus",
                                  reason="STATUS_INVALID", field="instrument.status")
        _check_limits(values["lot_size"], values["min_quantity"], values["max_quantity"])
        row = await self.store.create_instrument(actor, values)
        return apb.CreateInstrumentResponse(instrument=instrument_message(row))

    @grpc_errors
    async def ListInstruments(self, request, context):
        actor = await self.auth.actor(context)
        instruments = [instrument_message(r) for r in await self.store.instruments()]
        await self.store.audit_read(actor, "ListInstruments", "instruments")
        return apb.ListInstrumentsResponse(instruments=instruments)

    @grpc_errors
    async def UpdateInstrument(self, request, context):
        actor = await self.auth.actor(context)
        symbol = _checked(_SYMBOL, request.symbol, "symbol", "symbol")
        current = await self.store.instrument(self.store.pool, symbol)
        changes: dict[str, object] = {}
        for field in INSTRUMENT_LIMITS[:3]:
            text = getattr(request, field)
            if text:
                changes[field] = _decimal(text, field)
        if request.HasField("price_band_bps"):
            changes["price_band_bps"] = _band(request.price_band_bps)
        if request.HasField("maker_fee_bps") or request.HasField("taker_fee_bps"):
            maker = (request.maker_fee_bps if request.HasField("maker_fee_bps")
                     else current["maker_fee_bps"])
            taker = (request.taker_fee_bps if request.HasField("taker_fee_bps")
                     else current["taker_fee_bps"])
            changes["maker_fee_bps"], changes["taker_fee_bps"] = _fees(maker, taker)
        _check_limits(current["lot_size"], changes.get("min_quantity", current["min_quantity"]),
                      changes.get("max_quantity", current["max_quantity"]))
        row = await self.store.update_instrument(actor, "UpdateInstrument", symbol, changes)
        return apb.UpdateInstrumentResponse(instrument=instrument_message(row))

    @grpc_errors
    async def SetInstrumentStatus(self, request, context):
        actor = await self.auth.actor(context)
        symbol = _checked(_SYMBOL, request.symbol, "symbol", "symbol")
        status = STATUS_NAMES.get(request.status)
        if status is None:
            raise InvalidArgument("status must be TRADING, CANCEL_ONLY or HALTED",
                                  reason="STATUS_INVALID", field="status")
        row = await self.store.update_instrument(actor, "SetInstrumentStatus", symbol,
                                                 {"status": status})
        return apb.SetInstrumentStatusResponse(instrument=instrument_message(row))

    @grpc_errors
    async def MoveInstrument(self, request, context):
        actor = await self.auth.actor(context)
        symbol = _checked(_SYMBOL, request.symbol, "symbol", "symbol")
        to = _checked(_POD_NAME, request.to, "to", "matching pod name")
        timeout_ms = request.timeout_ms or MOVE_TIMEOUT_MS
        if timeout_ms > MAX_MOVE_TIMEOUT_MS:
            raise InvalidArgument(f"timeout_ms must be at most {MAX_MOVE_TIMEOUT_MS}",
                                  reason="TIMEOUT_INVALID", field="timeout_ms")
        before, after = await self.store.assign_instrument(actor, symbol, to)
        previous = before["owner_name"] or ""
        if previous == to:
            moved = after  # there already: nothing moves
        else:
            moved = await self.store.wait_owned(symbol, to, before["owner_epoch"],
                                                timeout_ms / 1000)
            if moved is None:
                raise DeadlineExceeded(
                    f"{symbol} is not owned by {to} after {timeout_ms} ms; it stays assigned "
                    "to it and moves when that pod can take it",
                    reason="MOVE_NOT_DONE")
        return apb.MoveInstrumentResponse(instrument=instrument_message(moved),
                                          previous_owner=previous,
                                          previous_epoch=before["owner_epoch"])

    @grpc_errors
    async def ListMatchingPods(self, request, context):
        actor = await self.auth.actor(context)
        pods = [matching_pod_message(r) for r in await self.store.matching_pods()]
        await self.store.audit_read(actor, "ListMatchingPods", "matching_pods")
        return apb.ListMatchingPodsResponse(pods=pods)

    # -- money ----------------------------------------------------------------------

    async def _transfer(self, request: apb.TransferRequest, context, action: str,
                        kind: str) -> apb.TransferResponse:
        actor = await self.auth.actor(context)
        account = _checked(_ACCOUNT_NAME, request.account, "account", "account name")
        symbol = _checked(_ASSET, request.asset, "asset", "asset")
        key = _text(request.idempotency_key, "idempotency_key", MAX_IDEMPOTENCY_KEY,
                    required=True)
        reference = request.reference
        if len(reference) > MAX_REFERENCE or not reference.isprintable():
            raise InvalidArgument(f"reference must be at most {MAX_REFERENCE} printable "
                                  "characters", reason="REFERENCE_INVALID", field="reference")
        asset = await self.store.asset(symbol)
        try:
            amount = parse_amount(request.amount, asset["decimals"], signed=kind == "adjustment")
        except OffGridError:
            raise InvalidArgument(
                f"amount {_clip(request.amount)!r} has more decimals than {symbol} "
                f"({asset['decimals']})", reason="AMOUNT_OFF_GRID", field="amount") from None
        except DecimalFormatError:
            raise InvalidArgument(f"amount {_clip(request.amount)!r} is not a plain decimal "
                                  "number", reason="INVALID_DECIMAL", field="amount") from None
        if abs(amount) > MAX_TRANSFER_UNITS:
            most = amount_str(MAX_TRANSFER_UNITS, asset["decimals"])
            raise InvalidArgument(f"amount is above {most} {symbol}",
                                  reason="AMOUNT_TOO_LARGE", field="amount")
        if amount == 0 or (kind != "adjustment" and amount < 0):
            raise InvalidArgument("amount must not be zero" if kind == "adjustment" else
                                  "amount must be positive", reason="AMOUNT_INVALID",
                                  field="amount")
        entry, duplicate, after = await self.store.transfer(
            actor, action, kind, account, asset, -amount if kind == "withdrawal" else amount,
            key, reference)
        return apb.TransferResponse(
            entry_id=f"ledger:{entry['entry_id']}", duplicate=duplicate,
            balance=balance_message(symbol, asset["decimals"], after["available"],
                                    after["held"]))

    @grpc_errors
    async def Deposit(self, request, context):
        return await self._transfer(request, context, "Deposit", "deposit")

    @grpc_errors
    async def Withdraw(self, request, context):
        return await self._transfer(request, context, "Withdraw", "withdrawal")

    @grpc_errors
    async def Adjust(self, request, context):
        return await self._transfer(request, context, "Adjust", "adjustment")

    @grpc_errors
    async def GetAccountBalances(self, request, context):
        actor = await self.auth.actor(context)
        account = _checked(_ACCOUNT_NAME, request.account, "account", "account name")
        rows = await self.store.balances(account)
        await self.store.audit_read(actor, "GetAccountBalances", f"balances:{account}")
        return apb.GetAccountBalancesResponse(balances=[balance_of(r) for r in rows])

    @grpc_errors
    async def ListAssets(self, request, context):
        actor = await self.auth.actor(context)
        rows = await self.store.assets()
        await self.store.audit_read(actor, "ListAssets", "assets")
        return apb.ListAssetsResponse(assets=[apb.Asset(symbol=r["symbol"],
                                                        decimals=r["decimals"]) for r in rows])

    @grpc_errors
    async def SetAccountFees(self, request, context):
        actor = await self.auth.actor(context)
        account = _checked(_ACCOUNT_NAME, request.account, "account", "account name")
        symbol = _checked(_SYMBOL, request.instrument, "instrument", "symbol")
        fees = None if request.clear else _fees(request.maker_fee_bps, request.taker_fee_bps)
        await self.store.set_account_fees(actor, account, symbol, fees)
        return apb.SetAccountFeesResponse()

    @grpc_errors
    async def CheckBalances(self, request, context):
        actor = await self.auth.actor(context)
        async with self.store.pool.acquire() as conn:
            report = await check_balances(conn)
        await self.store.audit_read(actor, "CheckBalances", "balances")
        return apb.CheckBalancesResponse(
            ok=report.ok, problems=report.problems,
            totals=[apb.AssetTotal(asset=t.symbol, balances=amount_str(t.balances, t.decimals),
                                   transfers=amount_str(t.transfers, t.decimals),
                                   fees=amount_str(t.fees, t.decimals))
                    for t in report.totals])

    # -- admin keys -----------------------------------------------------------------

    @grpc_errors
    async def CreateAdminKey(self, request, context):
        actor = await self.auth.actor(context)
        name = _checked(_ACCOUNT_NAME, request.name, "name", "admin name")
        row, secret = await self.store.create_admin_key(actor, name)
        return apb.CreateAdminKeyResponse(key=admin_key_message(row), secret=secret)

    @grpc_errors
    async def ListAdminKeys(self, request, context):
        actor = await self.auth.actor(context)
        rows = await self.store.list_admin_keys(request.include_revoked)
        await self.store.audit_read(actor, "ListAdminKeys", "admin_keys")
        return apb.ListAdminKeysResponse(keys=[admin_key_message(r) for r in rows])

    @grpc_errors
    async def RevokeAdminKey(self, request, context):
        actor = await self.auth.actor(context)
        prefix = _checked(_KEY_PREFIX, request.prefix, "prefix", "key prefix (exa_xxxxxxxx)")
        row = await self.store.revoke_admin_key(actor, prefix)
        return apb.RevokeAdminKeyResponse(key=admin_key_message(row))

    # -- audit ----------------------------------------------------------------------

    @grpc_errors
    async def ListAuditEntries(self, request, context):
        actor = await self.auth.actor(context)
        if len(request.target) > 128:
            raise InvalidArgument("target is at most 128 characters", reason="TARGET_INVALID",
                                  field="target")
        size = page_size(request.page_size)
        filters = ("admin-audit", request.target)
        position = self.page_tokens.decode(request.page_token, filters, (INT64_MAX,))
        rows = await self.store.audit_entries(request.target,
                                              position[0] if position else (1 << 63) - 1,
                                              size + 1)
        entries = []
        for r in rows[:size]:
            entry = apb.AuditEntry(audit_id=r["audit_id"], actor=r["actor"],
                                   action=r["action"], target=r["target"],
                                   before=r["before"] or "", after=r["after"] or "",
                                   peer=r["peer"])
            _ts(r["created_at"], entry.time)
            entries.append(entry)
        token = (self.page_tokens.encode([rows[size - 1]["audit_id"]], filters)
                 if len(rows) > size else "")
        # Recorded after the read: a page never lists its own reading.
        await self.store.audit_read(actor, "ListAuditEntries", f"audit:{request.target}")
        return apb.ListAuditEntriesResponse(entries=entries, next_page_token=token)
