"""TLS on the public ports and mutual TLS between services, with real handshakes.

One stack for the module, as ``make run TLS=1`` starts it (``Stack(tls=True)``:
certificates made with ``cryptography`` by ``exchange_dev.certs``), plus
market data requiring client certificates (``EXCHANGE_TLS_CLIENT_CA_FILE``) and
health-only plaintext ports on the order service and matching
(``EXCHANGE_HEALTH_LISTEN``, what the chart's probes use when TLS is on).

No test measures time: a plaintext client against a TLS port must fail with
UNAVAILABLE, and that code (instead of DEADLINE_EXCEEDED at the end of a long
deadline) is what shows it did not hang.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from e2e_helpers import execute_once, matching_new_order, meta, orders_named
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_client import AsyncExchangeClient, Unavailable
from exchange_common.errors import error_info
from exchange_common.tls import InternalCaller
from exchange_dev import certs as devcerts
from exchange_dev.cli import banner
from exchange_dev.embedded import free_port
from exchange_dev.stack import Stack, health_check

pytestmark = pytest.mark.e2e

KEYS = {"alice": "tls-key-alice-0123456789", "bob": "tls-key-bob-0123456789"}
EXCHANGE = str(Path(sys.executable).parent / "exchange")
BTC = 1
# Long enough that a hang would end DEADLINE_EXCEEDED, not UNAVAILABLE.
LONG_DEADLINE = 30.0


@pytest.fixture(scope="module")
def health_ports() -> dict[str, str]:
    """Service -> its plaintext health-only address (EXCHANGE_HEALTH_LISTEN)."""
    return {"order": f"127.0.0.1:{free_port()}", "matching": f"127.0.0.1:{free_port()}"}


@pytest.fixture(scope="module")
async def stack(module_database_url: str, module_redis_url: str, health_ports: dict[str, str],
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    work = tmp_path_factory.mktemp("tls")
    certs = devcerts.ensure_dev_certs(work / "tls")  # the stack finds and keeps them
    env = {"marketdata": {"EXCHANGE_TLS_CLIENT_CA_FILE": str(certs.ca)}}
    for name, addr in health_ports.items():
        env[name] = {"EXCHANGE_HEALTH_LISTEN": addr}
    async with Stack(database_url=module_database_url, redis_url=module_redis_url, keys=KEYS,
                     log_dir=work / "logs", tls=True, tls_dir=work / "tls", service_env=env
                     ).running(60) as s:
        assert s.certs is not None and s.certs.ca.read_bytes() == certs.ca.read_bytes()
        yield s


def creds(stack: Stack, *, cert: devcerts.Pair | None = None,
          ca: Path | None = None) -> grpc.ChannelCredentials:
    assert stack.certs is not None
    root = (ca or stack.certs.ca).read_bytes()
    if cert is None:
        return grpc.ssl_channel_credentials(root)
    return grpc.ssl_channel_credentials(root, cert.key.read_bytes(), cert.cert.read_bytes())


def create_request(coid: str, side: int = cpb.SIDE_BUY, price: str = "65000"
                   ) -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(instrument="BTC-USD", side=side, type=cpb.ORDER_TYPE_LIMIT,
                                  price=price, quantity="0.01", client_order_id=coid)



# --- the public ports ---------------------------------------------------------------------


async def test_orders_over_tls_reach_matching_over_mutual_tls(stack: Stack) -> None:
    assert stack.certs is not None
    async with AsyncExchangeClient(stack.order_addr, stack.marketdata_addr,
                                   api_key=KEYS["alice"], ca_file=str(stack.certs.ca),
                                   cert_file=str(stack.certs.client.cert),
                                   key_file=str(stack.certs.client.key)) as client:
        sell = await client.create_order("BTC-USD", "sell", "0.01", price="72000",
                                         client_order_id="tls-sell")
        assert sell.order.state == cpb.ORDER_STATE_NEW
        got = await client.get_order(client_order_id="tls-sell")
        assert got.order.order_id == sell.order.order_id
        # Market data over mutual TLS (it requires a client certificate here).
        assert "BTC-USD" in {i.symbol for i in await client.list_instruments()}
    async with AsyncExchangeClient(stack.order_addr, api_key=KEYS["bob"],
                                   ca_file=str(stack.certs.ca)) as client:
        buy = await client.create_order("BTC-USD", "buy", "0.01", price="72000",
                                        client_order_id="tls-buy")
        assert buy.order.state == cpb.ORDER_STATE_FILLED
    assert await orders_named(stack, "tls-") == 2


async def test_plaintext_client_against_a_tls_port_fails_fast(stack: Stack) -> None:
    for addr in (stack.order_addr, stack.marketdata_addr):
        async with grpc.aio.insecure_channel(addr) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=LONG_DEADLINE)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await opb_grpc.OrderServiceStub(ch).CreateOrder(
                create_request("plain-1"), metadata=meta(stack),
                timeout=LONG_DEADLINE)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # The client library says the same, as its Unavailable.
    async with AsyncExchangeClient(stack.order_addr, api_key=KEYS["alice"],
                                   timeout=LONG_DEADLINE) as client:
        with pytest.raises(Unavailable) as lib_err:
            await client.create_order("BTC-USD", "buy", "0.01", price="65000",
                                      client_order_id="plain-2")
        assert lib_err.value.reason is None
    assert await orders_named(stack, "plain-") == 0


async def test_public_mutual_tls_refuses_a_client_without_a_certificate(stack: Stack) -> None:
    assert stack.certs is not None
    rogue_ca, rogue_key = devcerts.make_ca("rogue CA")
    rogue = devcerts.write(stack.certs.directory.parent / "rogue", "client",
                           *devcerts.issue(rogue_ca, rogue_key, "exchange-dev-client",
                                           client=True))
    for name, credentials in [("no certificate", creds(stack)),
                              ("another CA's certificate", creds(stack, cert=rogue))]:
        async with grpc.aio.secure_channel(stack.marketdata_addr, credentials) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await mdpb_grpc.MarketDataServiceStub(ch).ListInstruments(
                    mdpb.ListInstrumentsRequest(), timeout=LONG_DEADLINE)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, name
    # The order port does not ask for one.
    async with grpc.aio.secure_channel(stack.order_addr, creds(stack)) as ch:
        placed = await opb_grpc.OrderServiceStub(ch).CreateOrder(
            create_request("nocert-1"), metadata=meta(stack), timeout=10)
        assert placed.order.state == cpb.ORDER_STATE_NEW


async def test_a_client_that_does_not_trust_the_ca_is_refused(stack: Stack) -> None:
    assert stack.certs is not None
    rogue_ca, _ = devcerts.make_ca("rogue CA")
    other = devcerts.write(stack.certs.directory.parent / "other", "ca", rogue_ca).cert
    async with grpc.aio.secure_channel(stack.order_addr, creds(stack, ca=other)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                       timeout=LONG_DEADLINE)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


# --- the CLI ------------------------------------------------------------------------------


def cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    base.update({"EXCHANGE_ORDER_ADDR": stack.order_addr,
                 "EXCHANGE_MARKETDATA_ADDR": stack.marketdata_addr,
                 "EXCHANGE_API_KEY": KEYS["alice"], **env})
    return subprocess.run([EXCHANGE, *args], env=base, capture_output=True, text=True,
                          timeout=60)


async def test_cli_with_tls(stack: Stack) -> None:
    assert stack.certs is not None
    ca = str(stack.certs.ca)
    run = asyncio.to_thread
    placed = await run(cli, stack, "--ca-file", ca, "order", "create", "BTC-USD", "buy",
                       "0.01", "--price", "64000", "--client-order-id", "cli-1", "--json")
    assert placed.returncode == 0, placed.stderr
    assert '"client_order_id": "cli-1"' in placed.stdout
    # EXCHANGE_TLS_CA_FILE alone is enough (a CA file implies TLS).
    listed = await run(cli, stack, "order", "get", "--client-order-id", "cli-1", "--json",
                       EXCHANGE_TLS_CA_FILE=ca)
    assert listed.returncode == 0, listed.stderr
    # Market data here wants a client certificate too.
    book = await run(cli, stack, "--ca-file", ca, "--cert-file", str(stack.certs.client.cert),
                     "--key-file", str(stack.certs.client.key), "book", "BTC-USD", "--json")
    assert book.returncode == 0, book.stderr

    # Plaintext against TLS: one error line and a hint, fast (no deadline reached).
    plain = await run(cli, stack, "--timeout", str(LONG_DEADLINE), "order", "list")
    assert plain.returncode == 1
    error, hint = plain.stderr.splitlines()
    assert error.startswith("error: UNAVAILABLE "), plain.stderr
    assert hint.startswith("hint: is the server using TLS? try --tls")
    # TLS without the dev CA (the system's roots do not know it): a handshake hint.
    untrusted = await run(cli, stack, "--tls", "order", "list")
    assert untrusted.returncode == 1
    assert "hint: TLS handshake failed" in untrusted.stderr, untrusted.stderr
    # Mutual TLS without a client certificate: that hint.
    nocert = await run(cli, stack, "--ca-file", ca, "instruments")
    assert nocert.returncode == 1
    assert "hint: the server closed the connection: does it require a client certificate" \
        in nocert.stderr, nocert.stderr
    assert "Traceback" not in plain.stderr + untrusted.stderr + nocert.stderr


def test_banner_says_how_to_call_with_tls(stack: Stack) -> None:
    text = banner(stack, "test")
    assert stack.certs is not None
    assert f"--ca-file {stack.certs.ca} order create BTC-USD buy" in text
    assert f"-cacert {stack.certs.ca} -d " in text and "-plaintext" not in text


# --- between services ---------------------------------------------------------------------


async def test_matching_accepts_the_order_service_certificate(stack: Stack) -> None:
    alice = stack.account_ids["alice"]
    async with stack.matching_channel() as ch:
        resp = await execute_once(
            ch, mpb.ExecuteRequest(
                commands=[await matching_new_order(stack, alice, "mtls-direct-1", 6_000_000)]))
        assert resp.results[0].WhichOneof("result") == "order"
    # By name, as the chart's order services do (EXCHANGE_INTERNAL_TLS_SERVER_NAME):
    # the matching certificate names "matching", not the address dialled.
    caller = stack.internal_caller()
    named = InternalCaller(cert_file=caller.cert_file, key_file=caller.key_file,
                           ca_file=caller.ca_file, server_name="matching")
    port = stack.matching_addr.rpartition(":")[2]
    async with named.channel(f"localhost:{port}") as ch:
        await mpb_grpc.MatchingServiceStub(ch).GetBook(mpb.GetBookRequest(instrument_id=BTC),
                                                       timeout=10)
    wrong = InternalCaller(cert_file=caller.cert_file, key_file=caller.key_file,
                           ca_file=caller.ca_file, server_name="someone-else")
    async with wrong.channel(stack.matching_addr) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await mpb_grpc.MatchingServiceStub(ch).GetBook(
                mpb.GetBookRequest(instrument_id=BTC), timeout=LONG_DEADLINE)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await orders_named(stack, "mtls-direct-") == 1


async def test_matching_refuses_a_certificate_naming_another_client(stack: Stack) -> None:
    assert stack.certs is not None
    # client.crt is signed by the same CA, so the handshake succeeds; its name does not.
    async with grpc.aio.secure_channel(stack.matching_addr,
                                       creds(stack, cert=stack.certs.client)) as ch:
        stub = mpb_grpc.MatchingServiceStub(ch)
        for name, call in [
            ("GetBook", stub.GetBook(mpb.GetBookRequest(instrument_id=BTC), timeout=10)),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            info = error_info(err.value)
            assert info is not None and info.reason == "INTERNAL_CALLER_UNKNOWN"
            assert "exchange-dev-client" in err.value.details()
        stream = stub.Execute(metadata=(), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_matching_refuses_other_cas_no_certificate_and_plaintext(stack: Stack) -> None:
    assert stack.certs is not None
    rogue_ca, rogue_key = devcerts.make_ca("rogue CA")
    # A certificate that names an order service, from a CA matching does not trust.
    forged = devcerts.write(stack.certs.directory.parent / "forged", "order-service",
                            *devcerts.issue(rogue_ca, rogue_key, "order-service", client=True))
    channels: list[tuple[str, Any]] = [
        ("another CA", lambda: grpc.aio.secure_channel(stack.matching_addr,
                                                      creds(stack, cert=forged))),
        ("no client certificate", lambda: grpc.aio.secure_channel(stack.matching_addr,
                                                                  creds(stack))),
        ("plaintext", lambda: grpc.aio.insecure_channel(stack.matching_addr)),
    ]
    for name, make in channels:
        async with make() as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await mpb_grpc.MatchingServiceStub(ch).GetBook(
                    mpb.GetBookRequest(instrument_id=BTC),
                    metadata=(("x-internal-token", stack.internal_token),),
                    timeout=LONG_DEADLINE)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, (name, err.value.details())


async def test_health_ports_answer_plaintext_and_serve_nothing_else(
        stack: Stack, health_ports: dict[str, str]) -> None:
    for name, addr in health_ports.items():
        assert await health_check(addr) == health_pb2.HealthCheckResponse.SERVING, name
    async with grpc.aio.insecure_channel(health_ports["matching"]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await mpb_grpc.MatchingServiceStub(ch).GetBook(
                mpb.GetBookRequest(instrument_id=BTC), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    async with grpc.aio.insecure_channel(health_ports["order"]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await opb_grpc.OrderServiceStub(ch).CreateOrder(
                create_request("health-port-1"), metadata=meta(stack),
                timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
