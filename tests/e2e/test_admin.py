"""The admin API against the real services: accounts, keys, tiers, instruments, audit;
every change bites at the next call on every order-service process, and the
matching pod journals and enforces instrument statuses."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import grpc
import pytest
from e2e_helpers import execute_once, meta

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.changes import ChangeListener
from exchange_common.errors import error_info
from exchange_dev.stack import Stack

LIMIT, BUY, SELL = cpb.ORDER_TYPE_LIMIT, cpb.SIDE_BUY, cpb.SIDE_SELL


def reason(err: grpc.aio.AioRpcError) -> str | None:
    info = error_info(err)
    return info.reason if info else None


def order(instrument: str = "BTC-USD", side: int = BUY, price: str = "70000",
          quantity: str = "0.01", coid: str = "") -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(instrument=instrument, side=side, type=LIMIT, price=price,
                                  quantity=quantity, client_order_id=coid)


class Exchange:
    """Stubs on one stack: the admin API with the stack's admin key, trading as anyone."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.channels: list[grpc.aio.Channel] = []
        self.admin = apb_grpc.AdminServiceStub(self.channel(stack.order_addr))
        self.admin_meta = (("x-admin-key", stack.admin_key),)

    def channel(self, addr: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(addr)
        self.channels.append(channel)
        return channel

    def orders(self, addr: str | None = None) -> opb_grpc.OrderServiceStub:
        return opb_grpc.OrderServiceStub(self.channel(addr or self.stack.order_addr))

    async def call(self, rpc: str, request):
        return await getattr(self.admin, rpc)(request, metadata=self.admin_meta, timeout=10)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


@pytest.fixture
async def ex(stack: Stack):
    e = Exchange(stack)
    yield e
    await e.close()


async def refused(call, code: grpc.StatusCode, why: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value
    assert reason(caught.value) == why, caught.value
    return caught.value


async def test_admin_credentials_are_separate_from_trading_keys(ex: Exchange) -> None:
    alice = ex.stack.keys["alice"]
    await refused(ex.admin.ListAccounts(apb.ListAccountsRequest(), timeout=5),
                  grpc.StatusCode.UNAUTHENTICATED, "ADMIN_KEY_MISSING")
    await refused(ex.admin.ListAccounts(apb.ListAccountsRequest(),
                                        metadata=(("x-admin-key", alice),), timeout=5),
                  grpc.StatusCode.UNAUTHENTICATED, "ADMIN_KEY_INVALID")
    await refused(ex.admin.ListAccounts(apb.ListAccountsRequest(),
                                        metadata=(("x-api-key", alice),), timeout=5),
                  grpc.StatusCode.UNAUTHENTICATED, "ADMIN_KEY_MISSING")
    # The admin key is no trading key.
    await refused(ex.orders().CreateOrder(order(), metadata=ex.admin_meta, timeout=5),
                  grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")
    await refused(ex.orders().CreateOrder(
        order(), metadata=(("x-api-key", ex.stack.admin_key),), timeout=5),
        grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")
    # A repeated key is refused, not guessed at.
    await refused(ex.orders().ListOrders(opb.ListOrdersRequest(), metadata=(
        ("x-api-key", alice), ("x-api-key", alice)), timeout=5),
        grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REPEATED")
    listed = await ex.call("ListAccounts", apb.ListAccountsRequest())
    assert {"alice", "bob"} <= {a.name for a in listed.accounts}


async def test_keys_revoked_and_restored_bite_at_the_next_call_on_every_replica(
        ex: Exchange, stack: Stack) -> None:
    replica = stack.add_order("order-b")
    await stack.start_service("order-b")
    created = await ex.call("CreateAccount", apb.CreateAccountRequest(name="carol"))
    assert created.account.enabled and created.account.tier == "default"
    made = await ex.call("CreateApiKey", apb.CreateApiKeyRequest(account="carol",
                                                                 label="desk 1"))
    secret, prefix = made.secret, made.key.prefix
    assert secret.startswith(prefix + "_") and prefix.startswith("ex_")
    await ex.call("Deposit", apb.TransferRequest(account="carol", asset="USD", amount="1000",
                                                 idempotency_key="carol-funding"))
    meta = (("x-api-key", secret),)
    a, b = ex.orders(), ex.orders(replica)
    for stub in (a, b):  # both processes now cache the key as good
        await stub.ListOrders(opb.ListOrdersRequest(), metadata=meta, timeout=5)

    listed = await ex.call("ListApiKeys", apb.ListApiKeysRequest(prefix=prefix[:6]))
    assert [k.prefix for k in listed.keys if k.account == "carol"] == [prefix]
    assert secret not in str(listed)  # the secret is never shown again

    await ex.call("RevokeApiKey", apb.RevokeApiKeyRequest(prefix=prefix))
    for stub in (a, b):
        await refused(stub.ListOrders(opb.ListOrdersRequest(), metadata=meta, timeout=5),
                      grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")
    # Restored by hand in SQL: the refusal was cached too, and is dropped once the
    # change is notified (the admin API waits for that itself; here the test does).
    listener = ChangeListener(stack.database_url)
    listener.start()
    conn = await asyncpg.connect(stack.database_url)
    try:
        assert await listener.connected(10)
        async with conn.transaction():
            txid = await conn.fetchval("SELECT txid_current()")
            await conn.execute("UPDATE api_keys SET revoked_at = NULL WHERE prefix = $1",
                               prefix)
        assert await listener.wait_applied(conn, txid, timeout=10) == set()
    finally:
        await conn.close()
        await listener.stop()
    for stub in (a, b):
        await stub.ListOrders(opb.ListOrdersRequest(), metadata=meta, timeout=5)

    # A disabled account's keys are refused everywhere, and work again once enabled.
    await ex.call("SetAccountEnabled", apb.SetAccountEnabledRequest(name="carol",
                                                                    enabled=False))
    for stub in (a, b):
        await refused(stub.CreateOrder(order(coid="c1"), metadata=meta, timeout=5),
                      grpc.StatusCode.PERMISSION_DENIED, "ACCOUNT_DISABLED")
    await ex.call("SetAccountEnabled", apb.SetAccountEnabledRequest(name="carol",
                                                                    enabled=True))
    placed = await b.CreateOrder(order(coid="c1"), metadata=meta, timeout=5)
    assert placed.order.state == cpb.ORDER_STATE_NEW

    audit = await ex.call("ListAuditEntries", apb.ListAuditEntriesRequest(
        target="account:carol"))
    assert [e.action for e in audit.entries] == [
        "SetAccountEnabled", "SetAccountEnabled", "CreateAccount"]
    newest = audit.entries[0]
    assert json.loads(newest.before)["disabled_at"] is not None
    assert json.loads(newest.after)["disabled_at"] is None
    assert newest.actor.startswith("dev (exa_") and newest.peer
    keys = await ex.call("ListAuditEntries", apb.ListAuditEntriesRequest(target="api_key:"))
    assert [e.action for e in keys.entries] == ["RevokeApiKey", "CreateApiKey"]
    assert all(secret not in e.after and secret not in e.before for e in keys.entries)


async def test_statuses_are_enforced_at_once_and_journaled_by_matching(
        ex: Exchange, stack: Stack) -> None:
    alice = meta(stack)
    orders = ex.orders()
    resting = await orders.CreateOrder(order(price="60000", coid="r1"), metadata=alice,
                                       timeout=5)

    async def set_status(status: int) -> apb.Instrument:
        reply = await ex.call("SetInstrumentStatus", apb.SetInstrumentStatusRequest(
            symbol="BTC-USD", status=status))
        return reply.instrument

    await set_status(cpb.INSTRUMENT_STATUS_CANCEL_ONLY)
    await refused(orders.CreateOrder(order(coid="r2"), metadata=alice, timeout=5),
                  grpc.StatusCode.FAILED_PRECONDITION, "INSTRUMENT_CANCEL_ONLY")
    await refused(orders.AmendOrder(opb.AmendOrderRequest(
        order_id=resting.order.order_id, quantity="0.005"), metadata=alice, timeout=5),
        grpc.StatusCode.FAILED_PRECONDITION, "INSTRUMENT_CANCEL_ONLY")
    await set_status(cpb.INSTRUMENT_STATUS_HALTED)
    await refused(orders.CancelOrder(opb.CancelOrderRequest(order_id=resting.order.order_id),
                                     metadata=alice, timeout=5),
                  grpc.StatusCode.FAILED_PRECONDITION, "INSTRUMENT_HALTED")

    # Matching enforces it too, whoever calls it: a command sent straight to the pod.
    channel = stack.matching_channel()
    ex.channels.append(channel)
    matching = mpb_grpc.MatchingServiceStub(channel)

    async def book_status() -> int:
        return (await matching.GetBook(mpb.GetBookRequest(instrument_id=1),
                                       timeout=5)).status

    for _ in range(100):
        if await book_status() == cpb.INSTRUMENT_STATUS_HALTED:
            break
        await asyncio.sleep(0.05)
    direct = await execute_once(channel, mpb.ExecuteRequest(commands=[mpb.Command(
        request_id=1, new_order=mpb.NewOrder(
            instrument_id=1, account_id=stack.account_ids["alice"], side=BUY, type=LIMIT,
            time_in_force=cpb.TIME_IN_FORCE_GTC, price=6_000_000, quantity=100,
            client_order_id="direct"))]))
    assert direct.results[0].error.code == mpb.ERROR_CODE_HALTED

    # The status is in the journal and survives a crash of the pod.
    stack.kill_service("matching")
    await stack.start_service("matching")
    assert await book_status() == cpb.INSTRUMENT_STATUS_HALTED
    await set_status(cpb.INSTRUMENT_STATUS_TRADING)
    await orders.CancelOrder(opb.CancelOrderRequest(order_id=resting.order.order_id),
                             metadata=alice, timeout=10)
    conn = await asyncpg.connect(stack.database_url)
    try:
        statuses = [r["quantity"] for r in await conn.fetch(
            "SELECT quantity FROM journal WHERE instrument_id = 1 AND kind = 7 "
            "ORDER BY sequence")]
        placed = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE client_order_id IN ('r2', 'direct')")
    finally:
        await conn.close()
    assert statuses == [cpb.INSTRUMENT_STATUS_CANCEL_ONLY, cpb.INSTRUMENT_STATUS_HALTED,
                        cpb.INSTRUMENT_STATUS_TRADING]
    assert placed == 0
    md = mdpb_grpc.MarketDataServiceStub(ex.channel(stack.marketdata_addr))
    listed = await md.ListInstruments(mdpb.ListInstrumentsRequest(), timeout=5)
    assert {i.symbol: i.status for i in listed.instruments}["BTC-USD"] == \
        mdpb.INSTRUMENT_STATUS_TRADING


async def test_price_band_and_limits_changed_by_admin(ex: Exchange, stack: Stack) -> None:
    alice = meta(stack)
    bob = meta(stack, "bob")
    orders = ex.orders()
    updated = await ex.call("UpdateInstrument", apb.UpdateInstrumentRequest(
        symbol="ETH-USD", price_band_bps=100))
    assert updated.instrument.price_band_bps == 100
    # No trade yet: no reference price, no band.
    await orders.CreateOrder(order("ETH-USD", SELL, "3000", "1", "s1"), metadata=alice,
                             timeout=5)
    await orders.CreateOrder(order("ETH-USD", BUY, "3000", "1", "b1"), metadata=bob, timeout=5)
    # The last trade is at 3,000: a 1% band is 2,970-3,030.
    err = await refused(orders.CreateOrder(order("ETH-USD", BUY, "10", "1", "b2"),
                                           metadata=bob, timeout=5),
                        grpc.StatusCode.INVALID_ARGUMENT, "PRICE_OUTSIDE_BAND")
    assert "2970.00-3030.00" in err.details()
    await refused(orders.CreateOrder(order("ETH-USD", SELL, "3030.01", "1", "s2"),
                                     metadata=alice, timeout=5),
                  grpc.StatusCode.INVALID_ARGUMENT, "PRICE_OUTSIDE_BAND")
    edge = await orders.CreateOrder(order("ETH-USD", SELL, "3030", "1", "s3"), metadata=alice,
                                    timeout=5)
    await refused(orders.AmendOrder(opb.AmendOrderRequest(order_id=edge.order.order_id,
                                                          price="3100"),
                                    metadata=alice, timeout=5),
                  grpc.StatusCode.INVALID_ARGUMENT, "PRICE_OUTSIDE_BAND")
    # A new minimum quantity applies to the next order.
    await ex.call("UpdateInstrument", apb.UpdateInstrumentRequest(symbol="ETH-USD",
                                                                  min_quantity="2"))
    await refused(orders.CreateOrder(order("ETH-USD", SELL, "3000", "1", "s4"), metadata=alice,
                                     timeout=5),
                  grpc.StatusCode.INVALID_ARGUMENT, "QUANTITY_BELOW_MIN")
    # Tick and lot are fixed; a bad update is refused with the field named.
    await refused(ex.call("UpdateInstrument", apb.UpdateInstrumentRequest(
        symbol="ETH-USD", min_quantity="0.0005")),
        grpc.StatusCode.INVALID_ARGUMENT, "QUANTITY_OFF_LOT")


async def test_new_instrument_is_owned_and_traded(ex: Exchange, stack: Stack) -> None:
    created = await ex.call("CreateInstrument", apb.CreateInstrumentRequest(
        instrument=apb.Instrument(symbol="SOL-USD", base_asset="SOL", quote_asset="USD",
                                  tick_size="0.001", lot_size="0.01", min_quantity="0.01",
                                  max_quantity="100000", min_notional="1")))
    assert created.instrument.instrument_id == 3
    await refused(ex.call("CreateInstrument", apb.CreateInstrumentRequest(
        instrument=created.instrument)), grpc.StatusCode.ALREADY_EXISTS, "INSTRUMENT_EXISTS")
    for _ in range(100):
        listed = await ex.call("ListInstruments", apb.ListInstrumentsRequest())
        sol = next(i for i in listed.instruments if i.symbol == "SOL-USD")
        if sol.owner:
            break
        await asyncio.sleep(0.1)
    assert sol.owner == stack.matching_addr and sol.owner_epoch == 1
    alice = meta(stack)
    placed = await ex.orders().CreateOrder(order("SOL-USD", BUY, "150.125", "2"),
                                           metadata=alice, timeout=5)
    assert placed.order.state == cpb.ORDER_STATE_NEW
    md = mdpb_grpc.MarketDataServiceStub(ex.channel(stack.marketdata_addr))
    book = await md.GetOrderBook(mdpb.GetOrderBookRequest(instrument="SOL-USD"), timeout=5)
    for _ in range(50):
        if book.bids:
            break
        await asyncio.sleep(0.1)
        book = await md.GetOrderBook(mdpb.GetOrderBookRequest(instrument="SOL-USD"), timeout=5)
    assert [(lv.price, lv.quantity) for lv in book.bids] == [("150.125", "2.00")]


async def test_admin_input_is_checked(ex: Exchange) -> None:
    await refused(ex.call("CreateAccount", apb.CreateAccountRequest(name="bad name!")),
                  grpc.StatusCode.INVALID_ARGUMENT, "NAME_INVALID")
    await refused(ex.call("CreateAccount", apb.CreateAccountRequest(name="dora", tier="gold")),
                  grpc.StatusCode.NOT_FOUND, "TIER_NOT_FOUND")
    await refused(ex.call("CreateAccount", apb.CreateAccountRequest(name="alice")),
                  grpc.StatusCode.ALREADY_EXISTS, "ACCOUNT_EXISTS")
    await refused(ex.call("RevokeApiKey", apb.RevokeApiKeyRequest(prefix="ex_00000000")),
                  grpc.StatusCode.NOT_FOUND, "API_KEY_NOT_FOUND")
    await refused(ex.call("SetInstrumentStatus", apb.SetInstrumentStatusRequest(
        symbol="BTC-USD", status=99)), grpc.StatusCode.INVALID_ARGUMENT, "STATUS_INVALID")
    await refused(ex.call("CreateInstrument", apb.CreateInstrumentRequest(
        instrument=apb.Instrument(symbol="X-Y", base_asset="X", quote_asset="Y",
                                  tick_size="1e-2", lot_size="1", min_quantity="1",
                                  max_quantity="1"))),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DECIMAL")
    me = (await ex.call("ListAdminKeys", apb.ListAdminKeysRequest())).keys[0]
    await refused(ex.call("RevokeAdminKey", apb.RevokeAdminKeyRequest(prefix=me.prefix)),
                  grpc.StatusCode.FAILED_PRECONDITION, "ADMIN_KEY_IS_CALLER")
    # A second admin key works at once, and once revoked, not at all.
    made = await ex.call("CreateAdminKey", apb.CreateAdminKeyRequest(name="ops-erin"))
    other = (("x-admin-key", made.secret),)
    await ex.admin.ListRateTiers(apb.ListRateTiersRequest(), metadata=other, timeout=5)
    await ex.call("RevokeAdminKey", apb.RevokeAdminKeyRequest(prefix=made.key.prefix))
    await refused(ex.admin.ListRateTiers(apb.ListRateTiersRequest(), metadata=other,
                                         timeout=5),
                  grpc.StatusCode.UNAUTHENTICATED, "ADMIN_KEY_INVALID")
