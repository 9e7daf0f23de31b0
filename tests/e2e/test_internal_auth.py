"""Service-to-service authentication with the shared token (TLS off, as in ``make run``).

The attack this answers: a grpcurl call to MatchingService/ExecuteOnce (an RPC since
removed) placed an order as bob. Here a caller without the token, or with a wrong one, is refused
UNAUTHENTICATED (reason INTERNAL_CALLER_UNKNOWN) on every MatchingService method
and nothing reaches PostgreSQL; the order service, which has the token, trades as
before; health checking stays open. One stack for the module (real processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from e2e_helpers import execute_once, matching_new_order, meta, orders_named
from google.rpc import status_pb2
from google.rpc.error_details_pb2 import ErrorInfo
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.tls import INTERNAL_TOKEN_HEADER
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

KEYS = {"alice": "auth-key-alice-0123456789", "bob": "auth-key-bob-0123456789"}
BTC = 1


@pytest.fixture(scope="module")
async def stack(module_database_url: str, module_redis_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with Stack(database_url=module_database_url, redis_url=module_redis_url, keys=KEYS,
                     log_dir=tmp_path_factory.mktemp("internal-auth") / "logs"
                     ).running(60) as s:
        yield s



def assert_refused(code: grpc.StatusCode, details: str, status: status_pb2.Status | None,
                   word: str) -> None:
    assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)
    assert f"{word} {INTERNAL_TOKEN_HEADER}" in details
    assert status is not None
    infos = [ErrorInfo.FromString(d.value) for d in status.details if d.Is(ErrorInfo.DESCRIPTOR)]
    assert [i.reason for i in infos] == ["INTERNAL_CALLER_UNKNOWN"]


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no-token", "wrong-token"])
async def test_matching_refuses_a_caller_without_the_token(stack: Stack, token: str | None
                                                           ) -> None:
    md = () if token is None else ((INTERNAL_TOKEN_HEADER, token),)
    word = "missing" if token is None else "wrong"
    bob = stack.account_ids["bob"]
    prefix = f"intruder-{word}-"
    async with grpc.aio.insecure_channel(stack.matching_addr) as ch:
        stub = mpb_grpc.MatchingServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetBook(mpb.GetBookRequest(instrument_id=BTC), metadata=md, timeout=10)
        assert_refused(err.value.code(), err.value.details(), rpc_status.from_call(err.value),
                       word)

        # The order service's way, a long-lived stream: refused before anything is sent.
        call = stub.Execute(metadata=md, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert_refused(err.value.code(), err.value.details(), rpc_status.from_call(err.value),
                       word)
        # ... and with a command written at once: the write may or may not go out before
        # the refusal arrives (when it does not, gRPC's client reports INTERNAL for the
        # failed send); either way the stream ends without an answer.
        call = stub.Execute(metadata=md, timeout=10)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await call.write(mpb.ExecuteRequest(
                commands=[await matching_new_order(stack, bob, prefix + "2")]))
            async for _ in call:
                pytest.fail("the Execute stream answered an unauthenticated caller")
        assert await call.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL)

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetBook(mpb.GetBookRequest(instrument_id=BTC), metadata=md, timeout=10)
        assert_refused(err.value.code(), err.value.details(), rpc_status.from_call(err.value),
                       word)

        # Refused by the guard, not by a broken port: health checking stays open.
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert await orders_named(stack, prefix) == 0


async def test_matching_takes_commands_with_the_token(stack: Stack) -> None:
    alice = stack.account_ids["alice"]
    async with stack.matching_channel() as ch:  # the token on every call
        stub = mpb_grpc.MatchingServiceStub(ch)
        resp = await execute_once(
            ch, mpb.ExecuteRequest(
                commands=[await matching_new_order(stack, alice, "token-direct-1", 6_800_000)]))
        (result,) = resp.results
        assert result.WhichOneof("result") == "order", result
        book = await stub.GetBook(mpb.GetBookRequest(instrument_id=BTC), timeout=10)
        assert result.order.order_id in {o.order_id for o in book.bids}
    # The same call by hand: the header is all it takes.
    async with grpc.aio.insecure_channel(stack.matching_addr) as ch:
        book = await mpb_grpc.MatchingServiceStub(ch).GetBook(
            mpb.GetBookRequest(instrument_id=BTC),
            metadata=((INTERNAL_TOKEN_HEADER, stack.internal_token),), timeout=10)
        assert result.order.order_id in {o.order_id for o in book.bids}
    assert await orders_named(stack, "token-direct-") == 1


async def test_orders_through_the_order_service_still_trade(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        sell = await orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=cpb.SIDE_SELL, type=cpb.ORDER_TYPE_LIMIT,
            price="71000", quantity="0.01", client_order_id="path-sell"),
            metadata=meta(stack, "alice"), timeout=10)
        assert sell.order.state == cpb.ORDER_STATE_NEW
        buy = await orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
            price="71000", quantity="0.01", client_order_id="path-buy"),
            metadata=meta(stack, "bob"), timeout=10)
        assert buy.order.state == cpb.ORDER_STATE_FILLED
        assert [f.price for f in buy.fills] == ["71000.00"]
    assert await orders_named(stack, "path-") == 2


def _start_matching(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    return subprocess.run([sys.executable, "-m", "matching_service"], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


async def test_matching_will_not_start_without_a_way_to_authenticate_or_with_bad_files(
        stack: Stack, tmp_path: Path) -> None:
    env = {"EXCHANGE_DATABASE_URL": stack.database_url, "EXCHANGE_REDIS_URL": stack.redis_url,
           "EXCHANGE_MATCHING_LISTEN": "127.0.0.1:0", "EXCHANGE_MATCHING_INSTRUMENTS": "NONE"}
    proc = _start_matching(env)
    assert proc.returncode == 2, proc.stderr
    assert "EXCHANGE_INTERNAL_TOKEN" in proc.stderr and "Traceback" not in proc.stderr

    missing = tmp_path / "missing.crt"
    proc = _start_matching({**env, "EXCHANGE_INTERNAL_TLS_CERT_FILE": str(missing),
                            "EXCHANGE_INTERNAL_TLS_KEY_FILE": str(missing),
                            "EXCHANGE_INTERNAL_TLS_CA_FILE": str(missing)})
    assert proc.returncode != 0
    assert f"EXCHANGE_INTERNAL_TLS_CERT_FILE={missing}: cannot read it" in proc.stderr
    assert "Traceback" not in proc.stderr

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    proc = _start_matching({**env, "EXCHANGE_INTERNAL_TLS_CERT_FILE": str(garbage),
                            "EXCHANGE_INTERNAL_TLS_KEY_FILE": str(garbage),
                            "EXCHANGE_INTERNAL_TLS_CA_FILE": str(garbage)})
    assert proc.returncode != 0
    assert "cannot listen on 127.0.0.1:0 with TLS (are the certificate and key valid PEM" \
        in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


async def test_an_order_service_with_a_wrong_token_places_nothing_and_says_why(
        database_url: str, module_redis_url: str, tmp_path: Path) -> None:
    """Misconfigured (its token is not matching's): every order fails UNAVAILABLE or
    DEADLINE_EXCEEDED, none is placed, and the order service's log names the cause.
    A stack of its own, on a database of its own (it places nothing in Redis)."""
    wrong = Stack(database_url=database_url, redis_url=module_redis_url, keys=KEYS,
                  log_dir=tmp_path / "logs",
                  service_env={"order": {"EXCHANGE_INTERNAL_TOKEN": "not-the-token",
                                         "EXCHANGE_MATCHING_TIMEOUT": "1"}})
    async with wrong.running(60):
        async with grpc.aio.insecure_channel(wrong.order_addr) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await opb_grpc.OrderServiceStub(ch).CreateOrder(opb.CreateOrderRequest(
                    instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
                    price="60000", quantity="0.01", client_order_id="misconfigured-1"),
                    metadata=meta(wrong), timeout=30)
            assert err.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.DEADLINE_EXCEEDED)
        assert await orders_named(wrong, "misconfigured-") == 0
        log = wrong.log_paths["order"].read_text()
        assert "refuses this order service" in log and "wrong x-internal-token" in log
