"""The ghz configurations in bench/ghz/: valid for ghz, and their requests are real requests.

ghz resolves the method by server reflection, so a typo in ``call`` or in a data field only
shows at run time on a machine with ghz; these tests catch it without ghz: every ``call``
names a method of the generated descriptors, every data element (rendered as ghz renders
it, ``bench.ghz.template``) parses into the method's request message with
``json_format.ParseDict`` (which refuses unknown fields and enum names), orders pass the
order service's own validation, ids are unique, and every target is loopback.
"""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal

import pytest
from google.protobuf import json_format, message_factory

from bench.ghz import CONFIGS, GHZ_DIR
from bench.ghz.place_resting import DEFAULT_KEY, DEFAULT_PREFIX, client_order_id
from bench.ghz.template import TemplateError, messages_for_call, render, render_text
from bench.orders import SEED_MIX, price_str, qty_str
from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2
from exchange.order.v1 import order_pb2
from exchange_common.instruments import InstrumentSpec
from order_service.validation import validate_new_order

DESCRIPTORS = (order_pb2.DESCRIPTOR, marketdata_pb2.DESCRIPTOR)
DEFAULT_PORTS = {"exchange.order.v1.OrderService": 50051,
                 "exchange.marketdata.v1.MarketDataService": 50052}
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h)$")
# Fields ghz reads from a JSON configuration (runner.Config).
GHZ_FIELDS = {
    "proto", "protoset", "call", "cacert", "cert", "key", "skipTLS", "skipFirst", "cname",
    "authority", "insecure", "total", "async", "concurrency", "concurrency-schedule",
    "concurrency-start", "concurrency-end", "concurrency-step", "concurrency-step-duration",
    "concurrency-max-duration", "connections", "rps", "duration", "duration-stop",
    "max-duration", "timeout", "data", "data-file", "binary-file", "metadata",
    "metadata-file", "stream-interval", "stream-call-duration", "stream-call-count",
    "stream-dynamic-messages", "reflect-metadata", "output", "format", "connect-timeout",
    "keepalive", "cpus", "import-paths", "name", "tags", "debug", "host",
    "enable-compression", "load-schedule", "load-start", "load-end", "load-step",
    "load-step-duration", "load-max-duration", "count-errors", "lb-strategy",
    "max-recv-message-size", "max-send-message-size", "disable-template-functions",
    "disable-template-data",
}

BTC_USD = InstrumentSpec(
    instrument_id=1, symbol="BTC-USD", base_asset="BTC", quote_asset="USD",
    tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"), min_quantity=Decimal("0.0001"),
    max_quantity=Decimal("1000"), min_notional=Decimal("1"), price_band_bps=0,
    status="trading", price_decimals=2, quantity_decimals=4)


def load(name: str) -> dict:
    return json.loads((GHZ_DIR / name).read_text())


def method_of(call: str):
    service, _, name = call.replace("/", ".").rpartition(".")
    for file in DESCRIPTORS:
        for svc in file.services_by_name.values():
            if svc.full_name == service:
                assert name in svc.methods_by_name, f"{service} has no method {name}"
                return svc.methods_by_name[name]
    raise AssertionError(f"no service {service} in the generated descriptors")


def requests_of(config: dict, request_number: int, rng: random.Random) -> list:
    method = method_of(config["call"])
    cls = message_factory.GetMessageClass(method.input_type)
    return [json_format.ParseDict(m, cls())
            for m in messages_for_call(config, request_number, rng, method.client_streaming)]


def creates_in(requests: list) -> list[order_pb2.CreateOrderRequest]:
    out = []
    for r in requests:
        if r.DESCRIPTOR.name == "CreateOrderRequest":
            out.append(order_pb2.CreateOrderRequest.FromString(r.SerializeToString()))
        elif r.DESCRIPTOR.name == "OrderEntryRequest":
            entry = order_pb2.OrderEntryRequest.FromString(r.SerializeToString())
            out += [c.create for c in entry.commands if c.HasField("create")]
    return out


def test_every_config_is_listed_and_the_guide_names_it():
    on_disk = sorted(p.name for p in GHZ_DIR.glob("*.json"))
    assert on_disk == sorted(CONFIGS)
    guide = (GHZ_DIR / "README.md").read_text()
    for name in CONFIGS:
        assert name in guide, f"bench/ghz/README.md does not mention {name}"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_has_what_ghz_needs(name):
    config = load(name)
    assert isinstance(config, dict)
    assert set(config) <= GHZ_FIELDS, f"fields ghz does not know: {set(config) - GHZ_FIELDS}"
    # Server reflection: no proto files.
    assert not {"proto", "protoset", "import-paths"} & set(config)
    assert config["insecure"] is True
    method = method_of(config["call"])
    host, _, port = config["host"].rpartition(":")
    assert host in LOOPBACK, f"{name} targets {config['host']}: loopback only"
    assert int(port) == DEFAULT_PORTS[method.containing_service.full_name]
    # Each run stops by itself, at a bounded rate.
    assert isinstance(config.get("rps"), int) and config["rps"] > 0
    assert config.get("total") or config.get("duration")
    for field in ("duration", "timeout", "stream-interval", "max-duration"):
        if field in config:
            assert DURATION.match(config[field]), f"{field}: {config[field]!r}"
    if config.get("total"):
        assert isinstance(config["total"], int) and config["total"] > 0
    assert isinstance(config.get("concurrency", 50), int) and config.get("concurrency", 50) > 0
    if method.client_streaming:
        # The stream must end by itself, and the dynamic provider of ghz repeats element
        # 0 once the count passes the array: keep the array at least as long.
        count = config.get("stream-call-count")
        assert isinstance(count, int) and count > 0
        data = config["data"] if isinstance(config["data"], list) else [config["data"]]
        if config.get("stream-dynamic-messages"):
            assert len(data) == 1 or len(data) >= count
    if method.containing_service.full_name == "exchange.order.v1.OrderService":
        assert config["metadata"]["x-api-key"] == DEFAULT_KEY
    assert isinstance(config["data"], dict | list) and config["data"]


@pytest.mark.parametrize("name", CONFIGS)
def test_data_renders_into_the_request_message(name):
    config = load(name)
    rng = random.Random(7)
    for n in range(0, 60):
        requests = requests_of(config, n, rng)
        assert requests
        for r in requests:
            assert r.ByteSize() > 0


@pytest.mark.parametrize("name", [n for n in CONFIGS if "order" in n and "book" not in n
                                  and "cancel" not in n])
def test_orders_are_valid_seed_orders_with_unique_ids(name):
    config = load(name)
    rng = random.Random(11)
    ids = []
    orders = []
    for n in range(40):
        for order in creates_in(requests_of(config, n, rng)):
            validate_new_order(order, BTC_USD)  # raises on anything the service refuses
            orders.append(order)
            ids.append(order.client_order_id)
            assert len(order.client_order_id) <= 64 and order.client_order_id.isascii()
            assert order.client_order_id.isprintable()
            # The seed mix as bench.orders makes it (the one order maker of the benches).
            qty = Decimal(order.quantity)
            assert Decimal(qty_str(SEED_MIX.qty_min)) <= qty <= Decimal(qty_str(SEED_MIX.qty_max))
            if order.type == cpb.ORDER_TYPE_LIMIT:
                low = price_str(SEED_MIX.mid - SEED_MIX.half_width)
                high = price_str(SEED_MIX.mid + SEED_MIX.half_width)
                assert Decimal(low) <= Decimal(order.price) <= Decimal(high)
    assert len(set(ids)) == len(ids), "client_order_ids repeat"
    limits = sum(1 for o in orders if o.type == cpb.ORDER_TYPE_LIMIT)
    assert abs(limits / len(orders) - SEED_MIX.limit_fraction) < 0.05  # 70% limit, 30% market
    sides = {o.side for o in orders}
    assert len(sides) == 2


def test_cancel_names_the_orders_place_resting_places():
    config = load("cancel_order.json")
    rng = random.Random(3)
    for n in (0, 1, 1999, 2000):
        (request,) = requests_of(config, n, rng)
        assert request.client_order_id == client_order_id(DEFAULT_PREFIX, n)
        assert not request.order_id


def test_order_entry_sends_one_command_per_message_and_the_batch_many():
    single = load("order_entry.json")
    batch = load("order_entry_batch.json")
    rng = random.Random(5)
    msgs = requests_of(single, 0, rng)
    assert len(msgs) == single["stream-call-count"]
    assert all(len(m.commands) == 1 for m in msgs)
    msgs = requests_of(batch, 0, rng)
    assert len(msgs) == batch["stream-call-count"]
    assert all(len(m.commands) == 100 for m in msgs)


def test_template_rules():
    rng = random.Random(1)
    assert render({"a": "x-{{.RequestNumber}}"}, 42, rng) == {"a": "x-42"}
    assert re.fullmatch(r"0\.\d{4}", render({"q": "0.{{printf `%04d` (randomInt 1 10)}}"},
                                            0, rng)["q"])
    a, b = (render({"id": "{{newUUID}}"}, 0, rng)["id"] for _ in range(2))
    assert a != b
    # A quote inside an action is escaped by ghz's JSON encoding: ghz would send it raw.
    with pytest.raises(TemplateError):
        render({"q": '{{printf "%04d" 5}}'}, 0, rng)
    with pytest.raises(TemplateError):
        render_text("{{env `HOME`}}", 0, rng)
