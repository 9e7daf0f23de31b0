"""Send each ghz configuration's requests a few times, resolved the way ghz resolves them.

For machines without ghz: the method and its message types come from the server's
reflection service (no proto files, like ghz without ``--proto``), the data is rendered
with ghz's template rules (``bench.ghz.template``), and the metadata is the
configuration's. It proves the configurations work against a running exchange; it is not
a load tool (the calls are made one after the other).

    python -m bench.ghz.check                       # every configuration, 3 calls each
    python -m bench.ghz.check order_entry.json --calls 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

from bench.ghz import CONFIGS, GHZ_DIR
from bench.ghz.template import messages_for_call, render_text


def _seconds(duration: str | None) -> float:
    if not duration:
        return 0.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    if not m:
        raise ValueError(f"unsupported duration {duration!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


async def _resolve(channel, call_name: str, reflect_metadata: dict | None):
    """(method descriptor, pool) from the server's reflection service."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    service, _, method = call_name.replace("/", ".").rpartition(".")
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    metadata = tuple((reflect_metadata or {}).items())

    async def ask(request) -> list[bytes]:
        # The published stub types ServerReflectionInfo as binascii.Incomplete (an
        # exception class), not as a stream-stream callable.
        responses = stub.ServerReflectionInfo(  # type: ignore[operator]
            iter([request]), metadata=metadata)
        async for response in responses:
            if response.HasField("error_response"):
                raise LookupError(response.error_response.error_message)
            return list(response.file_descriptor_response.file_descriptor_proto)
        raise LookupError("no reflection answer")

    async def add(files: list[bytes]) -> None:
        protos = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in files]
        by_name = {f.name: f for f in protos}

        async def ensure(fp) -> None:
            if fp.name in added:
                return
            for dep in fp.dependency:
                if dep not in added:
                    dep_fp = by_name.get(dep)
                    if dep_fp is None:
                        more = await ask(reflection_pb2.ServerReflectionRequest(
                            file_by_filename=dep))
                        for b in more:
                            f = descriptor_pb2.FileDescriptorProto.FromString(b)
                            by_name.setdefault(f.name, f)
                        dep_fp = by_name[dep]
                    await ensure(dep_fp)
            pool.Add(fp)
            added.add(fp.name)

        for fp in protos:
            await ensure(fp)

    await add(await ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)))
    return pool.FindServiceByName(service).methods_by_name[method]


async def check(path: Path, calls: int, key: str | None,
                hosts: dict[str, str] | None = None) -> dict:
    import grpc
    from google.protobuf import json_format, message_factory

    config = json.loads(path.read_text())
    rng = random.Random()
    outcome: Counter[str] = Counter()
    latencies = []
    service = config["call"].replace("/", ".").rpartition(".")[0]
    host = (hosts or {}).get(service) or config["host"]
    async with grpc.aio.insecure_channel(host) as channel:
        method = await _resolve(channel, config["call"], config.get("reflect-metadata"))
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        path_name = f"/{method.containing_service.full_name}/{method.name}"
        streaming = method.client_streaming
        interval = _seconds(config.get("stream-interval"))
        for n in range(calls):
            metadata_text = render_text(json.dumps(config.get("metadata") or {}), n, rng)
            metadata = json.loads(metadata_text)
            if key and "x-api-key" in metadata:
                metadata["x-api-key"] = key
            md = tuple(metadata.items())
            requests = [json_format.ParseDict(m, request_cls())
                        for m in messages_for_call(config, n, rng, streaming)]
            t0 = time.perf_counter()
            try:
                if streaming:
                    stream_rpc = channel.stream_stream(
                        path_name, request_serializer=request_cls.SerializeToString,
                        response_deserializer=response_cls.FromString)
                    call = stream_rpc(metadata=md, timeout=_seconds(config.get("timeout")) or 20)
                    for r in requests:
                        await call.write(r)
                        if interval:
                            await asyncio.sleep(interval)
                    await call.done_writing()
                    async for response in call:
                        for event in getattr(response, "events", ()):
                            outcome["command error" if event.HasField("error")
                                    else "command ok"] += 1
                else:
                    unary_rpc = channel.unary_unary(
                        path_name, request_serializer=request_cls.SerializeToString,
                        response_deserializer=response_cls.FromString)
                    await unary_rpc(requests[0], metadata=md, timeout=10)
                outcome["OK"] += 1
            except grpc.aio.AioRpcError as err:
                outcome[f"{err.code().name}: {err.details()}"] += 1
            latencies.append(time.perf_counter() - t0)
    return {"config": path.name, "call": config["call"], "outcome": dict(outcome),
            "mean_ms": round(1000 * sum(latencies) / max(1, len(latencies)), 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ghz.check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*",
                   help=f"files in bench/ghz/ (default: {', '.join(CONFIGS)})")
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--key", help="use this x-api-key instead of the configurations' one")
    p.add_argument("--order-addr", help="instead of the configurations' 127.0.0.1:50051")
    p.add_argument("--marketdata-addr", help="instead of the configurations' 127.0.0.1:50052")
    args = p.parse_args(argv)
    hosts = {"exchange.order.v1.OrderService": args.order_addr,
             "exchange.marketdata.v1.MarketDataService": args.marketdata_addr}
    failed = False
    for name in args.configs or CONFIGS:
        path = Path(name) if Path(name).exists() else GHZ_DIR / name
        result = asyncio.run(check(path, args.calls, args.key, hosts))
        bad = [k for k in result["outcome"] if k not in ("OK", "command ok")]
        failed |= bool(bad)
        print(f"{result['config']:<24} {result['call']:<55} {result['outcome']} "
              f"mean {result['mean_ms']} ms")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
