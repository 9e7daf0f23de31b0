"""The internal exchange.matching.v1.MatchingService: protobuf in, commands to the loops.

Only authenticated order services get here (``tls.InternalAuth`` on the port).
``Execute`` is a long-lived session: commands of many request messages are dispatched
to their instruments' loops as they come, and each result goes back as soon as its
batch is committed, coalesced with the others that are ready (``AnswerPump``).
"""

from __future__ import annotations

import grpc

from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange_common.errors import NotFound, grpc_errors
from exchange_common.sessions import AnswerPump
from matching_service.node import MatchingNode


class MatchingServicer(mpb_grpc.MatchingServiceServicer):
    def __init__(self, node: MatchingNode) -> None:
        self.node = node

    @grpc_errors
    async def Execute(self, request_iterator, context: grpc.aio.ServicerContext):
        pump: AnswerPump[mpb.Result] = AnswerPump(max_weight=10_000)

        def admit(request: mpb.ExecuteRequest) -> None:
            pump.expect(len(request.commands))
            for cmd in request.commands:
                self.node.dispatch(cmd, pump.answer)

        async for response in pump.responses(
                request_iterator, admit, lambda results: mpb.ExecuteResponse(results=results)):
            yield response

    @grpc_errors
    async def GetBook(self, request: mpb.GetBookRequest,
                      context: grpc.aio.ServicerContext) -> mpb.GetBookResponse:
        loop = self.node.loops.get(request.instrument_id)
        if loop is None:
            raise NotFound(f"this matching pod does not own instrument {request.instrument_id}",
                           reason="NOT_OWNER")
        return await loop.get_book()
