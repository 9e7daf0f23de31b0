"""The admin API survives garbage too: every AdminService method fuzzed with hypothesis
against the real services (its own stack: admin calls change what the other fuzz module
relies on), with hostile strings and numbers in every field, enums out of range, page
tokens never issued or tampered with, and admin metadata of every shape (none, empty, a
trading key, garbage, repeated, 10 KB, over the limit).

After every example: a proper code (never UNKNOWN or INTERNAL) with a reason, the services
SERVING. At the end: every successful call left exactly one audit entry, and every
instrument in PostgreSQL is one the exchange can trade (positive steps, bounds on the lot
grid, a known status, a band of 0-10,000 bps).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import grpc
import pytest
import pytest_asyncio
from fuzz_helpers import (
    ENUM,
    HOSTILE,
    INT32,
    MALFORMED,
    MAX_MESSAGE,
    MAX_METADATA,
    TIMEOUT,
    check_error,
    fuzz_settings,
    text,
)
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

FUZZ = fuzz_settings("fuzz-admin", 40)

ADMIN = "/exchange.admin.v1.AdminService/"
ACCOUNTS = ["alice", "bob", "carol"]
SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]


class Admin:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.channel = grpc.aio.insecure_channel(stack.order_addr)
        self.stub = apb_grpc.AdminServiceStub(self.channel)
        self.ok = 0  # successful calls: each must have left one audit entry
        self.tokens: list[str] = []


@pytest_asyncio.fixture(scope="module")
async def admin(module_stack: Stack) -> AsyncIterator[Admin]:
    a = Admin(module_stack)
    meta = (("x-admin-key", module_stack.admin_key),)
    for name in ("dora", "emil"):  # enough to page through, and real tokens to tamper with
        await a.stub.CreateAccount(apb.CreateAccountRequest(name=name), metadata=meta,
                                   timeout=TIMEOUT)
        a.ok += 1
    page = await a.stub.ListAccounts(apb.ListAccountsRequest(page_size=1), metadata=meta,
                                     timeout=TIMEOUT)
    audit = await a.stub.ListAuditEntries(apb.ListAuditEntriesRequest(page_size=1),
                                          metadata=meta, timeout=TIMEOUT)
    a.ok += 2
    a.tokens = [page.next_page_token, audit.next_page_token]
    assert all(a.tokens)
    try:
        yield a
    finally:
        await a.channel.close()


TOKENS: list[str] = []


@pytest.fixture(autouse=True)
def _tokens(admin: Admin) -> None:
    TOKENS[:] = admin.tokens


@st.composite
def page_token(draw) -> str:
    kind = draw(st.sampled_from(["text", "real", "tampered"]))
    if kind == "text" or not TOKENS:
        return draw(text())
    real = draw(st.sampled_from(TOKENS))
    if kind == "real":
        return real
    i = draw(st.integers(0, len(real) - 1))
    return real[:i] + draw(st.sampled_from("A_-0z")) + real[i + 1:]


def name() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ACCOUNTS), text())


def symbol() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(SYMBOLS), text())


DECIMALS = st.one_of(st.sampled_from(["0.01", "0.0001", "1", "100000", "0", "1e-2", "-1",
                                      "0." + "0" * 19 + "1", "9" * 19]), text())


def instrument() -> st.SearchStrategy[apb.Instrument]:
    return st.builds(apb.Instrument, instrument_id=INT32, symbol=symbol(), base_asset=text(),
                     quote_asset=text(), tick_size=DECIMALS, lot_size=DECIMALS,
                     min_quantity=DECIMALS, max_quantity=DECIMALS, min_notional=DECIMALS,
                     price_band_bps=INT32, status=ENUM)


def tier() -> st.SearchStrategy[apb.RateTier]:
    return st.builds(apb.RateTier, name=st.one_of(st.sampled_from(["default", "dev", "vip"]),
                                                  text()),
                     orders_per_second=INT32, orders_burst=INT32, cancels_per_second=INT32,
                     cancels_burst=INT32, queries_per_second=INT32, queries_burst=INT32,
                     max_open_orders=INT32)


@st.composite
def update_instrument(draw) -> apb.UpdateInstrumentRequest:
    request = apb.UpdateInstrumentRequest(symbol=draw(symbol()), min_quantity=draw(DECIMALS),
                                          max_quantity=draw(DECIMALS),
                                          min_notional=draw(DECIMALS))
    if draw(st.booleans()):
        request.price_band_bps = draw(INT32)
    return request


def admin_request() -> st.SearchStrategy[tuple[str, Message]]:
    b = st.builds
    return st.one_of(
        st.tuples(st.just("CreateAccount"), b(apb.CreateAccountRequest, name=name(),
                                              tier=st.one_of(st.just(""), text()))),
        st.tuples(st.just("GetAccount"), b(apb.GetAccountRequest, name=name())),
        st.tuples(st.just("ListAccounts"), b(apb.ListAccountsRequest, page_size=INT32,
                                             page_token=page_token())),
        st.tuples(st.just("SetAccountEnabled"), b(apb.SetAccountEnabledRequest, name=name(),
                                                  enabled=st.booleans())),
        st.tuples(st.just("SetAccountTier"), b(apb.SetAccountTierRequest, name=name(),
                                               tier=text())),
        st.tuples(st.just("CreateApiKey"), b(apb.CreateApiKeyRequest, account=name(),
                                             label=text())),
        st.tuples(st.just("ListApiKeys"), b(apb.ListApiKeysRequest, account=name(),
                                            prefix=text(), include_revoked=st.booleans(),
                                            page_size=INT32, page_token=page_token())),
        st.tuples(st.just("RevokeApiKey"), b(apb.RevokeApiKeyRequest, prefix=text())),
        st.tuples(st.just("SetRateTier"), b(apb.SetRateTierRequest, tier=tier())),
        st.tuples(st.just("ListRateTiers"), st.just(apb.ListRateTiersRequest())),
        st.tuples(st.just("CreateInstrument"), b(apb.CreateInstrumentRequest,
                                                 instrument=instrument())),
        st.tuples(st.just("ListInstruments"), st.just(apb.ListInstrumentsRequest())),
        st.tuples(st.just("UpdateInstrument"), update_instrument()),
        st.tuples(st.just("SetInstrumentStatus"), b(apb.SetInstrumentStatusRequest,
                                                    symbol=symbol(), status=ENUM)),
        st.tuples(st.just("CreateAdminKey"), b(apb.CreateAdminKeyRequest, name=text())),
        st.tuples(st.just("ListAdminKeys"), b(apb.ListAdminKeysRequest,
                                              include_revoked=st.booleans())),
        st.tuples(st.just("RevokeAdminKey"), b(apb.RevokeAdminKeyRequest, prefix=text())),
        st.tuples(st.just("ListAuditEntries"), b(apb.ListAuditEntriesRequest, target=text(),
                                                 page_size=INT32, page_token=page_token())),
    )


@st.composite
def admin_metadata(draw) -> tuple[tuple[tuple[str, str], ...] | None, str]:
    """(metadata, shape): "admin" carries the stack's admin key (alone), "over" is over the
    metadata limit; any other shape must be refused."""
    key = ADMIN_KEY[0]
    shape = draw(st.sampled_from(["admin", "admin", "admin", "none", "empty", "trading",
                                  "garbage", "repeated", "10k", "over"]))
    return {
        "admin": (("x-admin-key", key),),
        "none": None,
        "empty": (("x-admin-key", ""),),
        "trading": (("x-admin-key", "test-key-alice-0123456789"),
                    ("x-api-key", "test-key-alice-0123456789")),
        # Header values a client can send: printable ASCII.
        "garbage": (("x-admin-key", draw(st.one_of(
            st.sampled_from([h for h in HOSTILE[:60] if h.isascii() and h.isprintable()]),
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                    max_size=80)))),),
        "repeated": (("x-admin-key", key), ("x-admin-key", key)),
        "10k": (("x-admin-key", "k" * 10_000),),
        "over": (("x-admin-key", key), ("x-padding", "p" * (MAX_METADATA + 4096))),
    }[shape], shape


ADMIN_KEY: list[str] = [""]


@pytest.fixture(autouse=True)
def _admin_key(admin: Admin) -> None:
    ADMIN_KEY[0] = admin.stack.admin_key


@FUZZ
@given(call=admin_request(), md=admin_metadata())
async def test_admin_methods(admin: Admin, call, md) -> None:
    method, request = call
    md_value, shape = md
    over = shape == "over" or request.ByteSize() > MAX_MESSAGE
    try:
        await getattr(admin.stub, method)(request, metadata=md_value, timeout=TIMEOUT)
    except grpc.aio.AioRpcError as err:
        check_error(err, over_limit=over)
        if shape not in ("admin", "over"):
            assert err.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED), err
    else:
        assert shape == "admin" and not over, f"{method} with {shape} metadata was taken"
        admin.ok += 1


@FUZZ
@given(method=st.sampled_from(sorted(apb.DESCRIPTOR.services_by_name["AdminService"]
                                     .methods_by_name)),
       body=st.sampled_from(MALFORMED))
async def test_admin_bodies_that_are_not_protobuf(admin: Admin, method: str,
                                                  body: bytes) -> None:
    rpc = admin.channel.unary_unary(ADMIN + method, request_serializer=None,
                                    response_deserializer=None)
    request_class = getattr(apb, apb.DESCRIPTOR.services_by_name["AdminService"]
                            .methods_by_name[method].input_type.name)
    try:
        request_class.FromString(body)
        return  # it parses: a request like any other, fuzzed above
    except Exception:  # noqa: BLE001 - DecodeError: the case this test is about
        pass
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await rpc(body, metadata=(("x-admin-key", admin.stack.admin_key),), timeout=TIMEOUT)
    check_error(refused.value)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_every_success_audited_and_every_instrument_tradable(admin: Admin) -> None:
    conn = await asyncpg.connect(admin.stack.database_url)
    try:
        audited = await conn.fetchval("SELECT count(*) FROM admin_audit")
        instruments = await conn.fetch("SELECT * FROM instruments")
    finally:
        await conn.close()
    assert audited == admin.ok
    for row in instruments:
        tick, lot = Decimal(row["tick_size"]), Decimal(row["lot_size"])
        assert tick > 0 and lot > 0, dict(row)
        assert 0 < row["min_quantity"] <= row["max_quantity"], dict(row)
        assert row["min_quantity"] % lot == 0 and row["max_quantity"] % lot == 0, dict(row)
        assert row["min_notional"] >= 0 and 0 <= row["price_band_bps"] <= 10_000, dict(row)
        assert row["status"] in ("trading", "cancel_only", "halted"), dict(row)
