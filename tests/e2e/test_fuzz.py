"""Every public RPC survives garbage: property-based fuzzing (hypothesis) of each method
of the order service and market data against the real services (real processes, real
PostgreSQL and Redis), one stack for the whole module.

Inputs: hostile strings in every field (unicode, NUL, right-to-left marks, 1 MB strings,
"NaN", "Infinity", "1e3", "-0", "0x10", "+5", " 5", non-ASCII digits, 40-digit numbers),
enums out of range (raw integers), page sizes negative or huge, page tokens never issued,
truncated, tampered with, issued for other filters or to the other account, and tokens
signed with the stack's key around positions of every wrong shape; metadata of every
shape (missing, empty, 10 KB, repeated x-api-key, over the metadata limit); request bodies
that are not protobuf; messages over the size limit; OrderEntry sessions with garbage
commands, malformed messages and thousands of commands in one message.

After every example: the call ended with a proper code (never UNKNOWN or INTERNAL), and
every non-OK status from a service carries an ErrorInfo with a reason and a small message.
The one exception is a refusal by gRPC itself, before any service code runs (a message
over ``EXCHANGE_MAX_MESSAGE_BYTES``, metadata over ``EXCHANGE_MAX_METADATA_BYTES``): that is
RESOURCE_EXHAUSTED without details, and is expected exactly when the request is over the
limit. The three services stay SERVING. At the end every order in PostgreSQL is valid for
its instrument and no service logged an ERROR.

``make test`` runs a bounded number of examples per method; ``make fuzz``
(``HYPOTHESIS_PROFILE=fuzz``) many more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from e2e_helpers import meta
from fuzz_helpers import (
    ENUM,
    INT32,
    MALFORMED,
    MAX_MESSAGE,
    MAX_METADATA,
    TIMEOUT,
    C,
    check_error,
    check_status_proto,
    fuzz_settings,
    text,
)
from google.protobuf.message import DecodeError, Message
from grpc._cython import cygrpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info
from exchange_common.instruments import load_instruments
from exchange_common.paging import PageTokens
from exchange_dev.stack import Stack
from order_service.validation import check_client_order_id

pytestmark = pytest.mark.e2e

FUZZ = fuzz_settings("fuzz", 25)

SYMBOLS = {"BTC-USD", "ETH-USD"}
ORDER = "/exchange.order.v1.OrderService/"
MARKETDATA = "/exchange.marketdata.v1.MarketDataService/"
MATCHING = "/exchange.matching.v1.MatchingService/"


# -- the stack, once for the module -----------------------------------------------------------

class Fuzz:
    """The running stack, channels to it and what the set-up placed (ids and tokens)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.order = grpc.aio.insecure_channel(stack.order_addr)
        self.marketdata = grpc.aio.insecure_channel(stack.marketdata_addr)
        # Authenticated as an order service: the bodies it sends must reach the handlers.
        self.matching = stack.matching_channel()
        self.orders = opb_grpc.OrderServiceStub(self.order)
        self.md = mdpb_grpc.MarketDataServiceStub(self.marketdata)
        self.tokens = PageTokens(stack.page_token_key.encode())
        self.order_ids: list[str] = []
        self.client_order_ids: list[str] = []
        self.page_tokens: list[str] = []  # real tokens, of alice's and bob's lists

    async def close(self) -> None:
        for channel in (self.order, self.marketdata, self.matching):
            await channel.close()


@pytest_asyncio.fixture(scope="module")
async def fuzz(module_stack: Stack) -> AsyncIterator[Fuzz]:
    f = Fuzz(module_stack)
    try:
        await _set_up(f)
        yield f
    finally:
        await f.close()


async def _set_up(f: Fuzz) -> None:
    """Orders, fills and trades of both accounts, and real page tokens of their lists."""
    for who, side, price in (("alice", cpb.SIDE_BUY, "69000.00"), ("bob", cpb.SIDE_SELL,
                                                                    "71000.00")):
        for i in range(3):
            coid = f"{who}-setup-{i}"
            r = await f.orders.CreateOrder(opb.CreateOrderRequest(
                instrument="BTC-USD", side=side, type=cpb.ORDER_TYPE_LIMIT, price=price,
                quantity="0.01", client_order_id=coid), metadata=meta(f.stack, who),
                timeout=TIMEOUT)
            f.order_ids.append(r.order.order_id)
            f.client_order_ids.append(coid)
    # bob takes alice's bids: fills for both, trades for market data
    await f.orders.CreateOrder(opb.CreateOrderRequest(
        instrument="BTC-USD", side=cpb.SIDE_SELL, type=cpb.ORDER_TYPE_MARKET, quantity="0.02",
        client_order_id="bob-setup-taker"), metadata=meta(f.stack, "bob"), timeout=TIMEOUT)
    for who in ("alice", "bob"):
        page = await f.orders.ListOrders(opb.ListOrdersRequest(page_size=1),
                                         metadata=meta(f.stack, who), timeout=TIMEOUT)
        fills = await f.orders.ListFills(opb.ListFillsRequest(page_size=1),
                                         metadata=meta(f.stack, who), timeout=TIMEOUT)
        f.page_tokens += [page.next_page_token, fills.next_page_token]
    trades = await _until_trades(f)
    f.page_tokens.append(trades.next_page_token)
    assert all(f.page_tokens)


async def _until_trades(f: Fuzz) -> mdpb.ListTradesResponse:
    for _ in range(500):
        trades = await f.md.ListTrades(mdpb.ListTradesRequest(instrument="BTC-USD",
                                                              page_size=1), timeout=TIMEOUT)
        if trades.next_page_token:
            return trades
        await asyncio.sleep(0.02)
    raise AssertionError("market data never showed the set-up's trades")


# -- invariants --------------------------------------------------------------------------------

async def outcome(call: Awaitable[Any], *, over_limit: bool = False) -> Any:
    """The response, or None after checking the error."""
    try:
        response = await call
    except grpc.aio.AioRpcError as err:
        check_error(err, over_limit=over_limit)
        return None
    assert not over_limit, "a request over the size limit was taken"
    return response


async def serving(f: Fuzz) -> None:
    for channel in (f.order, f.marketdata, f.matching):
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    for name, proc in f.stack.processes.items():
        assert proc.poll() is None, f"{name} exited"


def over_message_limit(request: Message) -> bool:
    return request.ByteSize() > MAX_MESSAGE


# -- strategies -------------------------------------------------------------------------------

@st.composite
def order_id(draw) -> str:
    """Ids that exist (both accounts'), could exist, or cannot be ids."""
    kind = draw(st.sampled_from(["text", "number", "edge", "existing"]))
    if kind == "existing":
        return draw(st.sampled_from(FIXTURE.order_ids))
    if kind == "number":
        return str(draw(st.integers(-(1 << 70), 1 << 70)))
    if kind == "edge":
        return draw(st.sampled_from(["1", str(1 << 44 | 1), str((1 << 63) - 1), str(1 << 63),
                                     str(99 << 44 | 1), str(3 << 44 | 5), "0" * 19 + "1"]))
    return draw(text())


@st.composite
def client_order_id(draw) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(FIXTURE.client_order_ids))
    return draw(text())


@st.composite
def page_token(draw) -> str:
    """Never issued, issued (to either account, for any list), truncated, tampered
    with, or signed with the stack's key around a position of any shape."""
    kind = draw(st.sampled_from(["text", "real", "truncated", "tampered", "forged"]))
    if kind == "text":
        return draw(text())
    real = draw(st.sampled_from(FIXTURE.page_tokens))
    if kind == "real":
        return real
    if kind == "truncated":
        return real[:draw(st.integers(0, max(0, len(real) - 1)))]
    if kind == "tampered":
        i = draw(st.integers(0, len(real) - 1))
        return real[:i] + draw(st.sampled_from("A_-.=0z\x00é")) + real[i + 1:]
    position = draw(st.one_of(
        st.lists(st.integers(-(1 << 70), 1 << 70), max_size=4),
        st.sampled_from([[1 << 63], [-1], [(1 << 63) - 1, 3], [1, 2, 3], [], ["x"], [1.5],
                         [True], [None], [[1]], [{"a": 1}]])))
    account = draw(st.sampled_from(list(FIXTURE.stack.account_ids.values())))
    filters = draw(st.sampled_from([
        ("orders", account, None, 0), ("orders", account, 1, 1),
        ("fills", account, None, None), ("fills", account, 1, None), ("trades", 1),
        ("trades", 2)]))
    return FIXTURE.tokens.encode(position, filters)


# Metadata shapes with one x-api-key, alice's or bob's (any other may be refused: how
# repeated, empty or huge keys are told apart is the authentication's to say).
KEYED = {"alice", "bob", "binary", "other"}


@st.composite
def metadata(draw) -> tuple[tuple[tuple[str, str | bytes], ...] | None, str]:
    """(metadata, its shape: "over" is over the metadata limit, KEYED carry a good key)."""
    alice, bob = FIXTURE.stack.keys["alice"], FIXTURE.stack.keys["bob"]
    printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                        max_size=60)
    shape = draw(st.sampled_from(["alice", "bob", "none", "empty", "garbage", "repeated",
                                  "repeated-other", "10k", "binary", "other", "over"]))
    md = {
        "alice": (("x-api-key", alice),),
        "bob": (("x-api-key", bob),),
        "none": None,
        "empty": (("x-api-key", ""),),
        "garbage": (("x-api-key", draw(printable)),),
        "repeated": (("x-api-key", alice), ("x-api-key", bob)),
        "repeated-other": (("x-api-key", draw(printable)), ("x-api-key", alice)),
        "10k": (("x-api-key", "k" * 10_000),),
        "binary": (("x-api-key-bin", draw(st.binary(max_size=64))), ("x-api-key", alice)),
        "other": (("x-api-key", alice), ("x-trace", draw(printable)),
                  ("x-" + "h" * 200, "v" * 2000)),
        "over": (("x-api-key", alice), ("x-padding", "p" * (MAX_METADATA + 4096))),
    }[shape]
    return md, shape


def create_request() -> st.SearchStrategy[opb.CreateOrderRequest]:
    return st.builds(
        opb.CreateOrderRequest, instrument=text(), side=ENUM, type=ENUM, time_in_force=ENUM,
        price=text(), quantity=text(), client_order_id=client_order_id(),
        post_only=st.booleans())


def cancel_request() -> st.SearchStrategy[opb.CancelOrderRequest]:
    return st.builds(opb.CancelOrderRequest, order_id=order_id(),
                     client_order_id=client_order_id())


def amend_request() -> st.SearchStrategy[opb.AmendOrderRequest]:
    return st.builds(opb.AmendOrderRequest, order_id=order_id(),
                     client_order_id=client_order_id(), price=text(), quantity=text())


def order_request() -> st.SearchStrategy[tuple[str, Message]]:
    return st.one_of(
        st.tuples(st.just("CreateOrder"), create_request()),
        st.tuples(st.just("CancelOrder"), cancel_request()),
        st.tuples(st.just("AmendOrder"), amend_request()),
        st.tuples(st.just("GetOrder"), st.builds(opb.GetOrderRequest, order_id=order_id(),
                                                 client_order_id=client_order_id())),
        st.tuples(st.just("ListOrders"), st.builds(
            opb.ListOrdersRequest, instrument=text(), status=ENUM, page_size=INT32,
            page_token=page_token())),
        st.tuples(st.just("ListFills"), st.builds(
            opb.ListFillsRequest, instrument=text(), order_id=order_id(), page_size=INT32,
            page_token=page_token())),
    )


def marketdata_request() -> st.SearchStrategy[tuple[str, Message]]:
    return st.one_of(
        st.tuples(st.just("ListInstruments"), st.just(mdpb.ListInstrumentsRequest())),
        st.tuples(st.just("GetOrderBook"), st.builds(mdpb.GetOrderBookRequest,
                                                     instrument=text(), depth=INT32)),
        st.tuples(st.just("ListTrades"), st.builds(
            mdpb.ListTradesRequest, instrument=text(), page_size=INT32,
            page_token=page_token())),
        st.tuples(st.just("StreamOrderBook"), st.builds(mdpb.StreamOrderBookRequest,
                                                        instrument=text())),
        st.tuples(st.just("StreamTrades"), st.builds(mdpb.StreamTradesRequest,
                                                     instrument=text())),
    )


def entry_command() -> st.SearchStrategy[opb.OrderEntryCommand]:
    return st.one_of(
        st.just(opb.OrderEntryCommand()),
        create_request().map(lambda r: opb.OrderEntryCommand(create=r)),
        cancel_request().map(lambda r: opb.OrderEntryCommand(cancel=r)),
        amend_request().map(lambda r: opb.OrderEntryCommand(amend=r)),
    )


# Filled in by the fixture for the strategies (hypothesis draws ids and tokens from it).
class _Fixture:
    stack: Stack
    tokens: PageTokens
    order_ids: list[str] = []
    client_order_ids: list[str] = []
    page_tokens: list[str] = []


FIXTURE = _Fixture()


@pytest.fixture(autouse=True)
def _fixture_for_strategies(fuzz: Fuzz) -> None:
    FIXTURE.stack = fuzz.stack
    FIXTURE.tokens = fuzz.tokens
    FIXTURE.order_ids = fuzz.order_ids
    FIXTURE.client_order_ids = fuzz.client_order_ids
    FIXTURE.page_tokens = fuzz.page_tokens


# -- the order service -------------------------------------------------------------------------

@FUZZ
@given(call=order_request(), md=metadata())
async def test_order_service_unary_methods(fuzz: Fuzz, call, md) -> None:
    method, request = call
    md_value, shape = md
    over = shape == "over" or over_message_limit(request)
    await outcome(getattr(fuzz.orders, method)(request, metadata=md_value, timeout=TIMEOUT),
                  over_limit=over)
    await serving(fuzz)


async def _stream(call) -> list:
    responses = []
    while True:
        response = await call.read()
        if response is grpc.aio.EOF:
            return responses
        responses.append(response)


class Many:
    """Thousands of commands in one message: ``commands`` repeated to ``count`` (built in
    the test, so that hypothesis keeps and shrinks a small example)."""

    def __init__(self, commands: list[opb.OrderEntryCommand], count: int) -> None:
        self.commands = commands
        self.count = count

    def expand(self) -> list[opb.OrderEntryCommand]:
        """At most ``count`` commands, and no more than fit in a message (a command of
        1 MB strings makes a few, not thousands)."""
        size = max(1, max(c.ByteSize() for c in self.commands) + 5)
        count = max(1, min(self.count, (MAX_MESSAGE - 16) // size))
        return (self.commands * count)[:count]

    def __repr__(self) -> str:
        return f"Many({self.commands!r}, count={self.count})"


def many_commands() -> st.SearchStrategy[Many]:
    # Often commands answered at once (empty ones), so that their answers come together.
    return st.builds(Many, st.one_of(st.just([opb.OrderEntryCommand()]),
                                     st.lists(entry_command(), min_size=1, max_size=3)),
                     st.integers(1000, 40_000))


@FUZZ
@given(messages=st.lists(st.one_of(st.lists(entry_command(), max_size=12),
                                   st.sampled_from(MALFORMED), many_commands()),
                         min_size=1, max_size=4),
       md=metadata())
async def test_order_entry_sessions(fuzz: Fuzz, messages, md) -> None:
    """Garbage commands, malformed messages, thousands of commands in one message: each
    command and each malformed message answered exactly once, errors with a proper code and
    reason; the session ends OK."""
    messages = [m.expand() if isinstance(m, Many) else m for m in messages]
    raw = [m if isinstance(m, bytes) else opb.OrderEntryRequest(commands=m).SerializeToString()
           for m in messages]
    if sum(len(r) for r in raw) > MAX_MESSAGE:  # one command of 1 MB strings is fine
        raw = raw[:1]
        messages = messages[:1]
    expected = sum(1 if isinstance(m, bytes) else len(m) for m in messages)
    md_value, shape = md
    keyed = shape in KEYED
    events = await _entry_session(
        fuzz, raw, metadata=md_value, may_refuse=not keyed,
        over_limit=shape == "over" or (keyed and any(len(r) > MAX_MESSAGE for r in raw)))
    if events is not None:
        assert len(events) == (expected if keyed else 0)
    await serving(fuzz)


async def _entry_session(fuzz: Fuzz, raw: list[bytes], *, metadata: Any = "alice",
                         over_limit: bool = False, may_refuse: bool = False
                         ) -> list[opb.OrderEntryEvent] | None:
    """The answers of a session that sends ``raw`` messages; None when it ended with an
    error, which must be the refusal of a message or metadata over the limit
    (``over_limit``), or one of the key (``may_refuse``)."""
    session = fuzz.order.stream_stream(ORDER + "OrderEntry", request_serializer=None,
                                       response_deserializer=opb.OrderEntryResponse.FromString)
    call = session(metadata=meta(fuzz.stack) if metadata == "alice" else metadata,
                   timeout=TIMEOUT)
    try:
        # A write racing the end of the call makes grpc.aio report its own INTERNAL instead
        # of the server's status (grpc/grpc#36066): nothing is written to a session that
        # may be refused at once, nor after a message over the limit.
        if may_refuse or metadata is None:
            raw = []
        for body in raw:
            await call.write(body)
        if not any(len(body) > MAX_MESSAGE for body in raw):
            with contextlib.suppress(cygrpc.InternalError):  # the call already ended
                await call.done_writing()
        responses = await _stream(call)
    except grpc.aio.AioRpcError as err:
        check_error(err, over_limit=over_limit)
        assert over_limit or (may_refuse and err.code() in (
            C.UNAUTHENTICATED, C.INVALID_ARGUMENT)), (
            f"the session ended with {err.code().name}: {err.details():.300}")
        return None
    assert not over_limit, "a message over the size limit was taken"
    events = [e for r in responses for e in r.events]
    for event in events:
        if event.WhichOneof("result") == "error":
            check_status_proto(event.error)
        assert len(event.client_order_id) <= 64 + 3
    return events


async def test_order_entry_thousands_of_commands_in_one_message(fuzz: Fuzz) -> None:
    commands = []
    for i in range(6000):
        kind = i % 4
        if kind == 0:
            commands.append(opb.OrderEntryCommand())
        elif kind == 1:
            commands.append(opb.OrderEntryCommand(create=opb.CreateOrderRequest(
                instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
                price="NaN", quantity="0.01", client_order_id=f"many-{i}")))
        elif kind == 2:
            commands.append(opb.OrderEntryCommand(cancel=opb.CancelOrderRequest(
                order_id=str(1 << 63))))
        else:
            commands.append(opb.OrderEntryCommand(amend=opb.AmendOrderRequest(
                client_order_id="\u202e" * 100, price="1e3")))
    events = await _entry_session(
        fuzz, [opb.OrderEntryRequest(commands=commands).SerializeToString()])
    assert events is not None and len(events) == len(commands)
    assert all(e.WhichOneof("result") == "error" for e in events)
    await serving(fuzz)


# -- market data --------------------------------------------------------------------------------

@FUZZ
@given(call=marketdata_request(), md=metadata())
async def test_marketdata_methods(fuzz: Fuzz, call, md) -> None:
    method, request = call
    md_value, shape = md
    over = shape == "over" or over_message_limit(request)
    rpc = getattr(fuzz.md, method)
    if method.startswith("Stream"):
        # A trade stream sends nothing until a trade: a subscription to a known
        # instrument may end at the (short) deadline instead, with nothing from the service.
        known = request.instrument.upper() in SYMBOLS and not over
        stream = rpc(request, metadata=md_value, timeout=0.5 if known else TIMEOUT)
        try:
            first = await stream.read()
        except grpc.aio.AioRpcError as err:
            if not (known and err.code() == C.DEADLINE_EXCEEDED):
                check_error(err, over_limit=over)
        else:
            assert not over and first is not grpc.aio.EOF
        finally:
            stream.cancel()
    else:
        await outcome(rpc(request, metadata=md_value, timeout=TIMEOUT), over_limit=over)
    await serving(fuzz)


# -- bodies that are not protobuf, on every method ------------------------------------------

REQUESTS = {
    ORDER + "CreateOrder": opb.CreateOrderRequest, ORDER + "CancelOrder": opb.CancelOrderRequest,
    ORDER + "AmendOrder": opb.AmendOrderRequest, ORDER + "GetOrder": opb.GetOrderRequest,
    ORDER + "ListOrders": opb.ListOrdersRequest, ORDER + "ListFills": opb.ListFillsRequest,
    MARKETDATA + "ListInstruments": mdpb.ListInstrumentsRequest,
    MARKETDATA + "GetOrderBook": mdpb.GetOrderBookRequest,
    MARKETDATA + "ListTrades": mdpb.ListTradesRequest,
    MARKETDATA + "StreamOrderBook": mdpb.StreamOrderBookRequest,
    MARKETDATA + "StreamTrades": mdpb.StreamTradesRequest,
    MATCHING + "GetBook": mpb.GetBookRequest,
}


def _parses(message_class, body: bytes) -> bool:
    try:
        message_class.FromString(body)
    except DecodeError:
        return False
    return True


def _channel(fuzz: Fuzz, method: str) -> grpc.aio.Channel:
    return {ORDER: fuzz.order, MARKETDATA: fuzz.marketdata,
            MATCHING: fuzz.matching}[method[:method.rindex("/") + 1]]


@FUZZ
@given(method=st.sampled_from(sorted(REQUESTS)),
       body=st.one_of(st.sampled_from(MALFORMED), st.binary(max_size=200)))
async def test_bodies_that_are_not_protobuf(fuzz: Fuzz, method: str, body: bytes) -> None:
    """Garbage bytes on every unary and server-streaming method. One that does not parse
    is INVALID_ARGUMENT / MALFORMED_REQUEST; one that happens to parse is a request like
    any other. (Internal matching methods only get bodies that do not parse: one that does
    would be a command from a trusted order service.)"""
    request_class = REQUESTS[method]
    malformed = not _parses(request_class, body)
    if method.startswith(MATCHING) and not malformed:
        body = next(b for b in MALFORMED if not _parses(request_class, b))
        malformed = True
    channel = _channel(fuzz, method)
    streaming = method.endswith(("StreamOrderBook", "StreamTrades"))
    rpc = (channel.unary_stream if streaming else channel.unary_unary)(
        method, request_serializer=None, response_deserializer=None)
    call = rpc(body, metadata=meta(fuzz.stack), timeout=TIMEOUT)
    try:
        if streaming:
            await call.read()
        else:
            await call
    except grpc.aio.AioRpcError as err:
        check_error(err)
        if malformed:
            assert err.code() == C.INVALID_ARGUMENT
            assert error_info(err).reason == "MALFORMED_REQUEST"
            assert "DecodeError" not in err.details()
    else:
        assert not malformed, f"{method} took {body!r}"
    finally:
        if streaming:
            call.cancel()
    await serving(fuzz)


@FUZZ
@given(before=st.integers(0, 3), body=st.sampled_from(MALFORMED))
async def test_malformed_messages_on_the_internal_stream(fuzz: Fuzz, before: int,
                                                         body: bytes) -> None:
    """MatchingService.Execute ends with INVALID_ARGUMENT / MALFORMED_REQUEST at a message
    that does not parse, after the (empty) messages before it. Nothing is written after
    the bad message: a client write racing the end of the call makes grpc.aio report its
    own INTERNAL instead of the server's status (grpc/grpc#36066)."""
    if _parses(mpb.ExecuteRequest, body):
        return
    execute = fuzz.matching.stream_stream(MATCHING + "Execute", request_serializer=None,
                                          response_deserializer=mpb.ExecuteResponse.FromString)
    call = execute(timeout=TIMEOUT)
    for _ in range(before):
        await call.write(b"")
    await call.write(body)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stream(call)
    check_error(err.value)
    assert err.value.code() == C.INVALID_ARGUMENT
    assert error_info(err.value).reason == "MALFORMED_REQUEST"
    await serving(fuzz)


# -- sizes ----------------------------------------------------------------------------------

async def test_messages_over_the_size_limit_on_every_method(fuzz: Fuzz) -> None:
    """gRPC refuses a request over EXCHANGE_MAX_MESSAGE_BYTES before any service code runs:
    RESOURCE_EXHAUSTED without details, on unary, streaming and bidi methods alike."""
    body = b"\x0a" + _varint(MAX_MESSAGE) + b"x" * MAX_MESSAGE
    for method in sorted(REQUESTS):
        channel = _channel(fuzz, method)
        streaming = method.endswith(("StreamOrderBook", "StreamTrades"))
        rpc = (channel.unary_stream if streaming else channel.unary_unary)(
            method, request_serializer=None, response_deserializer=None)
        call = rpc(body, metadata=meta(fuzz.stack), timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if streaming:
                await call.read()
            else:
                await call
        check_error(err.value, over_limit=True)
    assert await _entry_session(fuzz, [body], over_limit=True) is None
    await serving(fuzz)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# -- at the end: no invalid order reached a book, no service logged an error ------------------

async def test_every_order_in_postgresql_is_valid_for_its_instrument(fuzz: Fuzz) -> None:
    conn = await asyncpg.connect(fuzz.stack.database_url)
    try:
        specs = {s.instrument_id: s for s in await load_instruments(conn)}
        rows = await conn.fetch("SELECT * FROM orders")
    finally:
        await conn.close()
    assert rows, "the set-up's orders are there"
    bad = [dict(r) for r in rows if not _valid_order(specs.get(r["instrument_id"]), r)]
    assert not bad, f"invalid orders reached a book: {bad[:5]}"


def _valid_order(spec, row) -> bool:
    if spec is None:
        return False
    quantity = row["quantity"] * spec.lot_size
    if not (spec.min_quantity <= quantity <= spec.max_quantity):
        return False
    if row["side"] not in (cpb.SIDE_BUY, cpb.SIDE_SELL):
        return False
    if row["client_order_id"]:
        try:
            check_client_order_id(row["client_order_id"])
        except Exception:  # noqa: BLE001
            return False
    if row["order_type"] == cpb.ORDER_TYPE_MARKET:
        return (row["price"] == 0 and not row["post_only"]
                and row["time_in_force"] in (cpb.TIME_IN_FORCE_IOC, cpb.TIME_IN_FORCE_FOK))
    if row["order_type"] != cpb.ORDER_TYPE_LIMIT or row["price"] <= 0:
        return False
    if row["time_in_force"] not in (cpb.TIME_IN_FORCE_GTC, cpb.TIME_IN_FORCE_IOC,
                                    cpb.TIME_IN_FORCE_FOK):
        return False
    if row["post_only"] and row["time_in_force"] != cpb.TIME_IN_FORCE_GTC:
        return False
    notional = row["price"] * spec.tick_size * quantity
    return notional >= spec.min_notional and row["price"] < 1 << 63


async def test_no_service_logged_an_error(fuzz: Fuzz) -> None:
    await serving(fuzz)
    for name, path in fuzz.stack.log_paths.items():
        text = path.read_text(errors="replace")
        errors = [line for line in text.splitlines() if " ERROR " in line
                  or "Traceback" in line]
        assert not errors, f"{name} logged errors: {errors[:5]}"
