"""InternalCaller.channel adds the internal token to every kind of call (a channel files an
interceptor under the first kind of call it is an instance of, so a single class of all
four kinds only ever saw unary calls: streams to matching went without the token)."""

from __future__ import annotations

import grpc

from exchange_common.tls import INTERNAL_TOKEN_HEADER, InternalCaller


async def test_every_kind_of_call_carries_the_token() -> None:
    seen: list[str | None] = []

    def token(context: grpc.aio.ServicerContext) -> None:
        seen.append(dict(context.invocation_metadata()).get(INTERNAL_TOKEN_HEADER))

    async def unary_unary(request, context):
        token(context)
        return request

    async def unary_stream(request, context):
        token(context)
        yield request

    async def stream_unary(requests, context):
        token(context)
        return b"".join([r async for r in requests])

    async def stream_stream(requests, context):
        token(context)
        async for r in requests:
            yield r

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", {
        "UU": grpc.unary_unary_rpc_method_handler(unary_unary),
        "US": grpc.unary_stream_rpc_method_handler(unary_stream),
        "SU": grpc.stream_unary_rpc_method_handler(stream_unary),
        "SS": grpc.stream_stream_rpc_method_handler(stream_stream),
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with InternalCaller(token="s3cret").channel(f"127.0.0.1:{port}") as channel:
            await channel.unary_unary("/t.S/UU")(b"x", metadata=(("x-api-key", "k"),))
            [_ async for _ in channel.unary_stream("/t.S/US")(b"x")]
            await channel.stream_unary("/t.S/SU")(iter([b"x"]))
            call = channel.stream_stream("/t.S/SS")()
            await call.write(b"x")
            await call.done_writing()
            [_ async for _ in call]
    finally:
        await server.stop(None)
    assert seen == ["s3cret"] * 4
