"""``python -m bench.otlp_sink``: a trace collector that keeps nothing, for benchmarks.

An OTLP/gRPC ``TraceService`` that counts the spans it is sent and drops them, so that the
services' tracing can be measured with its exporter really sending (a collector that is
not there costs the exporter retries instead). It stops by itself after ``--duration``
seconds and prints the spans and requests it received::

    .venv/bin/python -m bench.otlp_sink --listen 127.0.0.1:4317 --duration 300 &
    OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \\
        OTEL_TRACES_SAMPLER=always_on .venv/bin/python -m bench.loadgen ...

Its CPU shows in the load generator's ``other`` column: in production it is the
collector's, on another machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tpb_grpc


class Sink(tpb_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests = 0
        self.spans = 0

    async def Export(self, request: tpb.ExportTraceServiceRequest,
                     context: grpc.aio.ServicerContext) -> tpb.ExportTraceServiceResponse:
        self.requests += 1
        self.spans += sum(len(scope.spans) for resource in request.resource_spans
                          for scope in resource.scope_spans)
        return tpb.ExportTraceServiceResponse()


async def main_async(listen: str, duration: float) -> None:
    sink = Sink()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    tpb_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"otlp sink on {listen.rpartition(':')[0]}:{port} for {duration:.0f} s", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(duration)
    await server.stop(1)
    print(f"otlp sink: {sink.spans} spans in {sink.requests} requests", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:4317")
    parser.add_argument("--duration", type=float, default=300.0,
                        help="seconds before it stops by itself (300)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args.listen, args.duration))


if __name__ == "__main__":
    main()
