"""The size options of exchange_common.server take effect on a real grpc.aio server and
channel (a misspelled option is silently ignored): a message of exactly the limit passes,
one byte more is RESOURCE_EXHAUSTED; metadata is refused exactly when over its limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from exchange_common.config import CommonSettings
from exchange_common.server import channel_options, server_options

LIMIT = 100_000  # not gRPC's default (4 MiB), so only the option can make it hold
METADATA = 20_000  # gRPC's defaults: 8 KiB soft, 16 KiB hard
SETTINGS = CommonSettings.model_construct(max_message_bytes=LIMIT,
                                          max_metadata_bytes=METADATA)


async def _echo(request: bytes, context) -> bytes:
    """Answers ``request`` bytes of its own size when asked for ``b"size:N"``."""
    if request.startswith(b"size:"):
        return b"r" * int(request[5:])
    return request[:1]


def _ident(data: bytes) -> bytes:
    return data


async def _server(options) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "t.T", {"Echo": grpc.unary_unary_rpc_method_handler(
            _echo, request_deserializer=_ident, response_serializer=_ident)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def limited() -> AsyncIterator[grpc.aio.UnaryUnaryMultiCallable]:
    """A server with server_options, called over a channel without limits."""
    server, port = await _server(server_options(SETTINGS))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[
                ("grpc.max_receive_message_length", -1)]) as ch:
            yield ch.unary_unary("/t.T/Echo")
    finally:
        await server.stop(0)


async def _refused(call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return err.value.details()


async def test_the_server_takes_a_message_of_the_limit_and_refuses_a_byte_more(limited):
    assert await limited(b"x" * LIMIT, timeout=5) == b"x"
    assert "larger than max" in await _refused(limited(b"x" * (LIMIT + 1), timeout=5))


async def test_the_server_sends_a_message_of_the_limit_and_not_a_byte_more(limited):
    assert len(await limited(f"size:{LIMIT}".encode(), timeout=5)) == LIMIT
    assert "larger than max" in await _refused(limited(f"size:{LIMIT + 1}".encode(),
                                                       timeout=5))


async def test_the_server_takes_metadata_below_its_limit_and_refuses_it_above(limited):
    # Over gRPC's default hard limit (16 KiB): only the option lets it through, every time.
    for _ in range(20):
        assert await limited(b"x", metadata=(("x-pad", "p" * (METADATA - 2_000)),),
                             timeout=5) == b"x"
    # Just over the limit: refused every time (the soft limit alone would refuse about one
    # in fifty this far over it).
    for _ in range(5):
        assert "metadata size exceeds" in await _refused(
            limited(b"x", metadata=(("x-pad", "p" * (METADATA - 300)),), timeout=5))


async def test_a_channel_with_channel_options_holds_to_the_same_limits():
    server, port = await _server([("grpc.max_receive_message_length", -1),
                                  ("grpc.max_send_message_length", -1)])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                             options=channel_options(SETTINGS)) as ch:
            echo = ch.unary_unary("/t.T/Echo")
            assert len(await echo(f"size:{LIMIT}".encode(), timeout=5)) == LIMIT
            await _refused(echo(f"size:{LIMIT + 1}".encode(), timeout=5))
            assert await echo(b"x" * LIMIT, timeout=5) == b"x"
            await _refused(echo(b"x" * (LIMIT + 1), timeout=5))
    finally:
        await server.stop(0)
