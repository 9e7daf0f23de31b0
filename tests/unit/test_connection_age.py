"""EXCHANGE_GRPC_MAX_CONNECTION_AGE on a real grpc.aio server (exchange_common.server's
options; a misspelled option would be silently ignored): a connection older than the age
gets GOAWAY and the client's next calls go over a new connection (another source port at
the server), which is how clients spread over replicas added after they connected. A
stream open at the age runs to its end unless a grace is set, then it is cut after it.

The ages are a fraction of a second; each wait for what must happen is bounded by many
times the age, so nothing here depends on the machine's speed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from exchange_common.config import CommonSettings
from exchange_common.server import channel_options, server_options

AGE = 0.5
# What "eventually" means here: 40 ages.
PATIENCE = 40 * AGE


def _ident(data: bytes) -> bytes:
    return data


async def _peer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """The client's address as the server sees it: a new connection has a new port."""
    return context.peer().encode()


async def _ticks(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    """A message every 50 ms: ``request`` (a number) of them, or until cancelled."""
    limit = int(request) if request else None
    n = 0
    while limit is None or n < limit:
        yield b"tick"
        n += 1
        await asyncio.sleep(0.05)


async def _server(settings: CommonSettings) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=server_options(settings))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {
        "Peer": grpc.unary_unary_rpc_method_handler(
            _peer, request_deserializer=_ident, response_serializer=_ident),
        "Ticks": grpc.unary_stream_rpc_method_handler(
            _ticks, request_deserializer=_ident, response_serializer=_ident),
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def _settings(age: float, grace: float = 0.0) -> CommonSettings:
    return CommonSettings.model_construct(grpc_max_connection_age=age,
                                          grpc_max_connection_age_grace=grace)


async def _until_peer_changes(peer: grpc.aio.UnaryUnaryMultiCallable, first: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while loop.time() < deadline:
        now = await peer(b"", timeout=5)
        if now != first:
            return now
        await asyncio.sleep(AGE / 5)
    pytest.fail(f"still on the first connection ({first!r}) after {PATIENCE} s")


def test_no_age_option_unless_set() -> None:
    names = {name for name, _ in server_options(CommonSettings.model_construct())}
    assert not {n for n in names if "max_connection_age" in n}
    assert ("grpc.max_connection_age_ms", 300_000) in server_options(_settings(300))
    assert not [o for o in server_options(_settings(300))
                if o[0] == "grpc.max_connection_age_grace_ms"]  # 0: no limit
    assert ("grpc.max_connection_age_grace_ms", 30_000) in server_options(_settings(300, 30))


def test_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("EXCHANGE_REDIS_URL", "redis://x")
    assert CommonSettings().grpc_max_connection_age == 0
    monkeypatch.setenv("EXCHANGE_GRPC_MAX_CONNECTION_AGE", "300")
    monkeypatch.setenv("EXCHANGE_GRPC_MAX_CONNECTION_AGE_GRACE", "0.5")
    options = dict(server_options(CommonSettings()))
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 500
    monkeypatch.setenv("EXCHANGE_GRPC_MAX_CONNECTION_AGE", "-1")
    with pytest.raises(ValueError, match="grpc_max_connection_age"):
        CommonSettings()


async def test_a_connection_older_than_the_age_is_replaced() -> None:
    server, port = await _server(_settings(AGE))
    try:
        async with grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", options=channel_options(_settings(0))) as ch:
            peer = ch.unary_unary("/t.T/Peer")
            first = await peer(b"", timeout=5)
            second = await _until_peer_changes(peer, first)
            # ... and the new one is replaced in its turn.
            await _until_peer_changes(peer, second)
    finally:
        await server.stop(0)


async def test_without_an_age_the_connection_stays() -> None:
    server, port = await _server(_settings(0))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            peer = ch.unary_unary("/t.T/Peer")
            first = await peer(b"", timeout=5)
            for _ in range(6):  # three times the age the other tests use
                await asyncio.sleep(AGE / 2)
                assert await peer(b"", timeout=5) == first
    finally:
        await server.stop(0)


async def test_a_stream_open_at_the_age_runs_to_its_end_without_a_grace() -> None:
    server, port = await _server(_settings(AGE))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            peer = ch.unary_unary("/t.T/Peer")
            first = await peer(b"", timeout=5)
            stream = ch.unary_stream("/t.T/Ticks")(b"", timeout=PATIENCE * 2)
            got = 0
            async for _ in stream:
                got += 1
                if got == 1:
                    # The connection (the stream's) got its GOAWAY: new calls go elsewhere.
                    await _until_peer_changes(peer, first)
                    after = got
                elif got == after + 20:  # and the stream still delivers afterwards
                    stream.cancel()
                    break
            assert got == after + 20
    finally:
        await server.stop(0)


async def test_a_stream_is_cut_after_the_age_and_its_grace() -> None:
    server, port = await _server(_settings(AGE, grace=AGE))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stream = ch.unary_stream("/t.T/Ticks")(b"", timeout=PATIENCE)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stream:
                    pass
            # Cut by the server, not by the call's own deadline.
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    finally:
        await server.stop(0)
