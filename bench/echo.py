"""The floor: an echo ``exchange.order.v1.OrderService`` that does no work.

Same service name, same request and response messages as the order service,
with health checking and reflection, so the load generator (and ghz) can run
the very same load against it and the exchange's cost can be stated as a
ratio to the bare gRPC transport measured in the same run:

* ``CreateOrder`` answers a fixed ``CreateOrderResponse`` of realistic size
  (a full ``Order`` with ids, decimal strings and timestamps, and one fill);
* ``CancelOrder`` / ``AmendOrder`` answer a fixed order likewise;
* ``OrderEntry`` answers each request message with one ``OrderEntryResponse``
  holding one ``OrderEntryEvent`` per command (the order, with the command's
  ``client_order_id``), as the order service's coalesced answers would.

The API key metadata is not checked. Run it as its own process::

    python -m bench.echo --listen 127.0.0.1:50070
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.config import CommonSettings
from exchange_common.server import server_options

SERVICE = opb.DESCRIPTOR.services_by_name["OrderService"].full_name

_NOW = Timestamp(seconds=1_790_000_000, nanos=123_456_000)


def sample_order(client_order_id: str = "bench-a1b2c3-0-123456") -> opb.Order:
    """An order as the order service answers it (a partly filled limit buy)."""
    return opb.Order(
        order_id="17592186044417", client_order_id=client_order_id, instrument="BTC-USD",
        side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT, time_in_force=cpb.TIME_IN_FORCE_GTC,
        price="70012.34", quantity="0.2500", filled_quantity="0.1000",
        remaining_quantity="0.1500", average_fill_price="70011.990000",
        state=cpb.ORDER_STATE_PARTIALLY_FILLED, create_time=_NOW, update_time=_NOW)


def sample_fill(client_order_id: str = "bench-a1b2c3-0-123456") -> opb.Fill:
    return opb.Fill(trade_id="17592186044418", order_id="17592186044417",
                    client_order_id=client_order_id, instrument="BTC-USD", side=cpb.SIDE_BUY,
                    price="70011.99", quantity="0.1000", liquidity=cpb.LIQUIDITY_TAKER,
                    time=_NOW)


CREATE_RESPONSE = opb.CreateOrderResponse(order=sample_order(), fills=[sample_fill()])
CANCEL_RESPONSE = opb.CancelOrderResponse(order=sample_order())
AMEND_RESPONSE = opb.AmendOrderResponse(order=sample_order())


class EchoOrderService(opb_grpc.OrderServiceServicer):
    async def CreateOrder(self, request, context):  # noqa: N802 - gRPC method name
        return CREATE_RESPONSE

    async def CancelOrder(self, request, context):  # noqa: N802
        return CANCEL_RESPONSE

    async def AmendOrder(self, request, context):  # noqa: N802
        return AMEND_RESPONSE

    async def OrderEntry(self, request_iterator, context):  # noqa: N802
        template = sample_order()
        async for request in request_iterator:
            events = []
            for command in request.commands:
                which = command.WhichOneof("command")
                coid = getattr(command, which).client_order_id if which else ""
                order = opb.Order()
                order.CopyFrom(template)
                order.client_order_id = coid
                events.append(opb.OrderEntryEvent(client_order_id=coid, order=order))
            yield opb.OrderEntryResponse(events=events)


# The exchange's own server options (keepalive, pending-call limit), with the defaults of its
# settings; EXCHANGE_GRPC_MAX_PENDING_CALLS applies here too. The database and Redis URLs the
# settings require are not needed for these, so the settings are not validated.
SERVER_OPTIONS = server_options(CommonSettings.model_construct(
    grpc_max_pending_calls=int(os.environ.get("EXCHANGE_GRPC_MAX_PENDING_CALLS") or 1000)))


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    opb_grpc.add_OrderServiceServicer_to_server(EchoOrderService(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise SystemExit(f"echo: cannot listen on {listen}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logging.info("echo OrderService listening on %s", listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:50070")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s echo %(message)s",
                        datefmt="%H:%M:%S")
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
