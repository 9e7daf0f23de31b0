"""The money API against the real services: deposits, withdrawals and adjustments with
their idempotency keys and errors; balances after trades with fees (exact figures); the
ledger's pages, which sum to the balances; check-balances, and what it finds after a
deliberate corruption. Fresh accounts per test, made through the admin API."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

import asyncpg
import grpc
import pytest

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info, field_violations
from exchange_common.instruments import FEE_ACCOUNT
from exchange_dev.stack import Stack
from order_service.balances_check import check_balances

BUY, SELL = cpb.SIDE_BUY, cpb.SIDE_SELL
LIMIT, MARKET = cpb.ORDER_TYPE_LIMIT, cpb.ORDER_TYPE_MARKET


class Money:
    """Admin and trading stubs on one stack, and fresh funded accounts."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.channel = grpc.aio.insecure_channel(stack.order_addr)
        self.admin = apb_grpc.AdminServiceStub(self.channel)
        self.orders = opb_grpc.OrderServiceStub(self.channel)
        self.admin_meta = (("x-admin-key", stack.admin_key),)

    async def call(self, rpc: str, request):
        return await getattr(self.admin, rpc)(request, metadata=self.admin_meta, timeout=10)

    async def account(self, **deposits: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """A new account with ``deposits`` (asset -> amount): its name and metadata."""
        name = f"acct-{uuid.uuid4().hex[:10]}"
        await self.call("CreateAccount", apb.CreateAccountRequest(name=name))
        key = await self.call("CreateApiKey", apb.CreateApiKeyRequest(account=name))
        for asset, amount in deposits.items():
            await self.deposit(name, asset, amount)
        return name, (("x-api-key", key.secret),)

    async def deposit(self, account: str, asset: str, amount: str, key: str = "",
                      rpc: str = "Deposit", reference: str = "") -> apb.TransferResponse:
        return await self.call(rpc, apb.TransferRequest(
            account=account, asset=asset, amount=amount,
            idempotency_key=key or uuid.uuid4().hex, reference=reference))

    async def balances(self, meta) -> dict[str, tuple[str, str]]:
        got = await self.orders.GetBalances(opb.GetBalancesRequest(), metadata=meta, timeout=10)
        return {b.asset: (b.available, b.held) for b in got.balances}

    async def order(self, meta, side: int, quantity: str, price: str = "", *,
                    type: int = LIMIT, funds: str = "") -> opb.Order:
        got = await self.orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=side, type=type, price=price, quantity=quantity,
            funds=funds), metadata=meta, timeout=10)
        return got.order

    async def ledger(self, meta, page_size: int = 0, asset: str = "") -> list[opb.LedgerEntry]:
        entries, token = [], ""
        while True:
            page = await self.orders.ListLedgerEntries(opb.ListLedgerEntriesRequest(
                asset=asset, page_size=page_size, page_token=token), metadata=meta, timeout=10)
            entries += page.entries
            token = page.next_page_token
            if not token:
                return entries

    async def check(self) -> apb.CheckBalancesResponse:
        return await self.call("CheckBalances", apb.CheckBalancesRequest())

    async def close(self) -> None:
        await self.channel.close()


@pytest.fixture
async def money(module_stack: Stack):
    m = Money(module_stack)
    yield m
    await m.close()


async def refused(call, code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    err = caught.value
    assert err.code() == code, err
    info = error_info(err)
    assert info is not None and info.reason == reason, err
    return err


def sums(entries: list[opb.LedgerEntry]) -> dict[str, tuple[Decimal, Decimal]]:
    total: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for e in entries:
        total[e.asset][0] += Decimal(e.available)
        total[e.asset][1] += Decimal(e.held)
    return {a: (v[0], v[1]) for a, v in total.items()}


async def assert_ledger_sums_to_balances(money: Money, meta, page_size: int = 7) -> None:
    entries = await money.ledger(meta, page_size=page_size)
    ids = [e.entry_id for e in entries]
    assert len(ids) == len(set(ids)), "an entry on two pages"
    times = [e.time.ToNanoseconds() for e in entries]
    assert times == sorted(times, reverse=True)
    assert entries == await money.ledger(meta, page_size=1000)  # the same, in one page
    balances = await money.balances(meta)
    assert sums(entries) == {a: (Decimal(v[0]), Decimal(v[1])) for a, v in balances.items()
                             if Decimal(v[0]) or Decimal(v[1]) or a in sums(entries)}


async def test_transfers_are_idempotent_and_refused_as_they_should(money: Money) -> None:
    name, meta = await money.account()
    first = await money.deposit(name, "USD", "1000", "dep-1", reference="wire 42")
    assert first.entry_id.startswith("ledger:") and not first.duplicate
    assert (first.balance.asset, first.balance.available, first.balance.held,
            first.balance.total) == ("USD", "1000.000000", "0.000000", "1000.000000")
    again = await money.deposit(name, "USD", "1000", "dep-1", reference="wire 42")
    assert again.duplicate and again.entry_id == first.entry_id
    assert again.balance.available == "1000.000000"  # nothing moved
    await refused(money.deposit(name, "USD", "999", "dep-1", reference="wire 42"),
                  grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    await refused(money.deposit(name, "USD", "1000", "dep-1", rpc="Withdraw",
                                reference="wire 42"),
                  grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")

    short = await refused(money.deposit(name, "USD", "1000.000001", rpc="Withdraw"),
                          grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    info = error_info(short)
    assert info is not None and dict(info.metadata) == {
        "asset": "USD", "needed": "1000.000001", "available": "1000.000000"}
    out = await money.deposit(name, "USD", "100.5", "wd-1", rpc="Withdraw")
    assert out.balance.available == "899.500000"
    adjusted = await money.deposit(name, "USD", "-899.4", rpc="Adjust")
    assert adjusted.balance.available == "0.100000"
    await refused(money.deposit(name, "USD", "-0.100001", rpc="Adjust"),
                  grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    assert (await money.deposit(name, "BTC", "0.00000001", rpc="Adjust")
            ).balance.available == "0.00000001"

    for amount, rpc in (("1.0000001", "Deposit"), ("abc", "Deposit"), ("-5", "Deposit"),
                        ("0", "Deposit"), ("0", "Adjust"), ("1e3", "Withdraw"),
                        ("", "Deposit"), ("99999999999999999", "Deposit")):
        err = await refused(money.deposit(name, "USD", amount, rpc=rpc),
                            grpc.StatusCode.INVALID_ARGUMENT,
                            error_info_reason := {"1.0000001": "AMOUNT_OFF_GRID",
                                                  "99999999999999999": "AMOUNT_TOO_LARGE",
                                                  "-5": "INVALID_DECIMAL", "abc":
                                                  "INVALID_DECIMAL", "1e3": "INVALID_DECIMAL",
                                                  "": "INVALID_DECIMAL"}.get(amount,
                                                                             "AMOUNT_INVALID"))
        assert [v.field for v in field_violations(err)] == ["amount"], error_info_reason
    await refused(money.deposit(name, "USD", "1", key="\n"), grpc.StatusCode.INVALID_ARGUMENT,
                  "IDEMPOTENCY_KEY_INVALID")
    await refused(money.call("Deposit", apb.TransferRequest(account=name, asset="USD",
                                                           amount="1")),
                  grpc.StatusCode.INVALID_ARGUMENT, "IDEMPOTENCY_KEY_INVALID")
    await refused(money.deposit("nobody-here", "USD", "1"), grpc.StatusCode.NOT_FOUND,
                  "ACCOUNT_NOT_FOUND")
    await refused(money.deposit(name, "XYZ", "1"), grpc.StatusCode.NOT_FOUND,
                  "ASSET_NOT_FOUND")

    entries = await money.ledger(meta)
    assert [(e.kind, e.asset, e.available, e.held, e.reference) for e in entries][-2:] == [
        (opb.LEDGER_ENTRY_KIND_WITHDRAWAL, "USD", "-100.500000", "0.000000", ""),
        (opb.LEDGER_ENTRY_KIND_DEPOSIT, "USD", "1000.000000", "0.000000", "wire 42")]
    await assert_ledger_sums_to_balances(money, meta)
    admin_view = await money.call("GetAccountBalances",
                                  apb.GetAccountBalancesRequest(account=name))
    assert {b.asset: b.available for b in admin_view.balances} == {
        "USD": "0.100000", "BTC": "0.00000001"}
    await refused(money.orders.GetBalances(opb.GetBalancesRequest(asset="XYZ"), metadata=meta,
                                           timeout=10),
                  grpc.StatusCode.INVALID_ARGUMENT, "ASSET_UNKNOWN")
    got = await money.orders.GetBalances(opb.GetBalancesRequest(asset="BTC"), metadata=meta,
                                         timeout=10)
    assert [b.asset for b in got.balances] == ["BTC"]
    assets = await money.call("ListAssets", apb.ListAssetsRequest())
    assert {(a.symbol, a.decimals) for a in assets.assets} >= {("BTC", 8), ("USD", 6)}


async def test_a_trade_moves_the_notional_and_the_fees_exactly(money: Money) -> None:
    fees = await money.call("GetAccountBalances", apb.GetAccountBalancesRequest(
        account=FEE_ACCOUNT))
    fees_before = Decimal({b.asset: b.available for b in fees.balances}.get("USD", "0"))
    buyer, buyer_meta = await money.account(USD="1000")
    seller, seller_meta = await money.account(BTC="1")
    resting = await money.order(seller_meta, SELL, "0.0123", "70000.00")
    assert resting.held == "0.01230000"
    assert await money.balances(seller_meta) == {"BTC": ("0.98770000", "0.01230000"),
                                                 "USD": ("0.000000", "0.000000")}
    taken = await money.order(buyer_meta, BUY, "0.0123", "70000.00")
    assert taken.state == cpb.ORDER_STATE_FILLED
    # 0.0123 BTC at 70,000.00: 861.000000 USD, 10 bps each side: 0.861000
    assert await money.balances(buyer_meta) == {"USD": ("138.139000", "0.000000"),
                                                "BTC": ("0.01230000", "0.00000000")}
    assert await money.balances(seller_meta) == {"BTC": ("0.98770000", "0.00000000"),
                                                 "USD": ("860.139000", "0.000000")}
    fees = await money.call("GetAccountBalances", apb.GetAccountBalancesRequest(
        account=FEE_ACCOUNT))
    assert Decimal({b.asset: b.available for b in fees.balances}["USD"]) - fees_before == \
        Decimal("1.722")

    entries = await money.ledger(buyer_meta)
    trade_id = next(e.trade_id for e in entries if e.trade_id)
    assert [(e.entry_id, e.kind, e.asset, e.available, e.held) for e in entries] == [
        (f"trade:{trade_id}:buyer-base", opb.LEDGER_ENTRY_KIND_TRADE, "BTC", "0.01230000",
         "0.00000000"),
        (f"trade:{trade_id}:buyer-fee", opb.LEDGER_ENTRY_KIND_FEE, "USD", "0.000000",
         "-0.861000"),
        (f"trade:{trade_id}:buyer-quote", opb.LEDGER_ENTRY_KIND_TRADE, "USD", "0.000000",
         "-861.000000"),
        (f"order:{taken.order_id}:hold", opb.LEDGER_ENTRY_KIND_HOLD, "USD", "-861.861000",
         "861.861000"),
        (entries[-1].entry_id, opb.LEDGER_ENTRY_KIND_DEPOSIT, "USD", "1000.000000",
         "0.000000")]
    assert {e.entry_id: (e.available, e.held) for e in await money.ledger(seller_meta)
            if e.trade_id} == {
        f"trade:{trade_id}:seller-base": ("0.00000000", "-0.01230000"),
        f"trade:{trade_id}:seller-quote": ("861.000000", "0.000000"),
        f"trade:{trade_id}:seller-fee": ("-0.861000", "0.000000")}
    for meta in (buyer_meta, seller_meta):
        await assert_ledger_sums_to_balances(money, meta)
    assert (await money.check()).ok


async def test_the_ledger_sums_to_the_balances_through_real_trading(
        money: Money, module_stack: Stack) -> None:
    maker, a = await money.account(USD="5000", BTC="1")
    taker, b = await money.account(USD="5000", BTC="1")
    # a rebate for the maker: -2 bps (taker 5)
    await money.call("SetAccountFees", apb.SetAccountFeesRequest(
        account=maker, instrument="BTC-USD", maker_fee_bps=-2, taker_fee_bps=5))
    bid = await money.order(a, BUY, "0.01", "69000")
    await money.order(b, SELL, "0.004", "68000")  # partly fills the bid at 69,000
    # amend up (an extra hold), then down (a release), then fills by a market sell
    amended = await money.orders.AmendOrder(opb.AmendOrderRequest(
        order_id=bid.order_id, quantity="0.02"), metadata=a, timeout=10)
    assert amended.order.quantity == "0.0200"
    await money.orders.AmendOrder(opb.AmendOrderRequest(
        order_id=bid.order_id, quantity="0.015", price="69000.5"), metadata=a, timeout=10)
    await money.order(b, SELL, "0.003", type=MARKET)
    await money.orders.CancelOrder(opb.CancelOrderRequest(order_id=bid.order_id),
                                   metadata=a, timeout=10)
    # price improvement for a buyer who takes
    await money.order(a, SELL, "0.005", "70000")
    await money.order(b, BUY, "0.005", "71000")
    # market buys, with and without funds, against a resting ask
    await money.order(b, SELL, "0.004", "70500")
    await money.order(a, BUY, "0.001", type=MARKET)
    await money.order(a, BUY, "", type=MARKET, funds="150")
    for meta in (a, b):
        await assert_ledger_sums_to_balances(money, meta)
    balances = await money.balances(a)
    # the rebate: the maker's fills earned it
    entries = await money.ledger(a)
    assert any(e.kind == opb.LEDGER_ENTRY_KIND_FEE and Decimal(e.available) > 0
               for e in entries)
    ids = [e.entry_id for e in entries + await money.ledger(b)]
    for part in (":amend:", ":release", ":buyer-release", ":seller-fee", ":buyer-fee"):
        assert any(part in i for i in ids), (part, ids)
    assert balances["USD"][1] == "0.000000"  # nothing open
    conn = await asyncpg.connect(module_stack.database_url)
    try:
        report = await check_balances(conn)
        assert report.ok, report.problems
    finally:
        await conn.close()
    await money.call("SetAccountFees", apb.SetAccountFeesRequest(
        account=maker, instrument="BTC-USD", clear=True))
    await refused(money.call("SetAccountFees", apb.SetAccountFeesRequest(
        account=maker, instrument="BTC-USD", maker_fee_bps=-6, taker_fee_bps=5)),
        grpc.StatusCode.INVALID_ARGUMENT, "FEE_INVALID")


async def test_check_balances_finds_a_corrupted_balance(money: Money,
                                                        module_stack: Stack) -> None:
    name, meta = await money.account(USD="10")
    assert (await money.check()).ok
    conn = await asyncpg.connect(module_stack.database_url)
    try:
        account_id = await conn.fetchval("SELECT account_id FROM accounts WHERE name = $1",
                                         name)
        await conn.execute("UPDATE balances SET available = available + 1 "
                           "WHERE account_id = $1 AND asset_id = "
                           "(SELECT asset_id FROM assets WHERE symbol = 'USD')", account_id)
        report = await money.check()
        assert not report.ok
        assert any("USD: balances sum to" in p for p in report.problems), report.problems
        assert any(p.startswith(f"{name} USD: balance available 10.000001 USD")
                   for p in report.problems), report.problems
        assert not (await check_balances(conn)).ok
    finally:
        await conn.execute("UPDATE balances SET available = available - 1 "
                           "WHERE account_id = $1 AND asset_id = "
                           "(SELECT asset_id FROM assets WHERE symbol = 'USD')", account_id)
        await conn.close()
    assert (await money.check()).ok


async def test_instrument_fees_are_set_and_checked(money: Money) -> None:
    got = await money.call("UpdateInstrument", apb.UpdateInstrumentRequest(
        symbol="ETH-USD", maker_fee_bps=-1, taker_fee_bps=7))
    assert (got.instrument.maker_fee_bps, got.instrument.taker_fee_bps) == (-1, 7)
    got = await money.call("UpdateInstrument", apb.UpdateInstrumentRequest(
        symbol="ETH-USD", maker_fee_bps=10))
    assert (got.instrument.maker_fee_bps, got.instrument.taker_fee_bps) == (10, 7)
    for maker, taker in ((-8, 7), (0, 10001), (10001, 10), (0, -1)):
        await refused(money.call("UpdateInstrument", apb.UpdateInstrumentRequest(
            symbol="ETH-USD", maker_fee_bps=maker, taker_fee_bps=taker)),
            grpc.StatusCode.INVALID_ARGUMENT, "FEE_INVALID")
    await money.call("UpdateInstrument", apb.UpdateInstrumentRequest(
        symbol="ETH-USD", maker_fee_bps=10, taker_fee_bps=10))
    created = await money.call("CreateInstrument", apb.CreateInstrumentRequest(
        instrument=apb.Instrument(symbol="SOL-EUR", base_asset="SOL", quote_asset="EUR",
                                  tick_size="0.01", lot_size="0.01", min_quantity="0.01",
                                  max_quantity="1000")))
    assert created.instrument.maker_fee_bps == 10
    assets = await money.call("ListAssets", apb.ListAssetsRequest())
    assert {"SOL", "EUR"} <= {a.symbol for a in assets.assets}
