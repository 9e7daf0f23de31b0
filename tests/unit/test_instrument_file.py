"""The instruments file of `exchange-migrate --instruments` (the chart's `instruments`):
what it takes, and the message for each thing it refuses (the admin API's rules)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from exchange_common.instrument_file import InstrumentFileError, NewInstrument, parse

SOL = {"symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tickSize": "0.001",
       "lotSize": "0.01", "minQuantity": "0.01", "maxQuantity": "100000"}


def test_defaults_and_symbols_alone() -> None:
    got = parse(json.dumps([SOL, {"symbol": "BTC-USD"}]))
    assert got.new == [NewInstrument("SOL-USD", "SOL", "USD", Decimal("0.001"), Decimal("0.01"),
                                     Decimal("0.01"), Decimal("100000"), Decimal("0"), 0, 10, 10)]
    assert got.existing == ["BTC-USD"]
    assert parse("[]") == ([], [])


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not JSON"),
    (json.dumps({"symbol": "SOL-USD"}), "must be a JSON list"),
    (json.dumps(["SOL-USD"]), "instruments[0]: must be an object"),
    (json.dumps([{**SOL, "symbol": "sol-usd"}]), "symbol 'sol-usd' is not a symbol"),
    (json.dumps([{"base": "SOL"}]), "instruments[0]: symbol None is not a symbol"),
    (json.dumps([{k: v for k, v in SOL.items() if k != "lotSize"}]),
     "instruments[0] (SOL-USD): missing lotSize"),
    (json.dumps([{**SOL, "tick": "0.01"}]), "unknown key(s) tick"),
    (json.dumps([SOL, SOL]), "instruments[1] (SOL-USD): SOL-USD is given twice"),
    (json.dumps([{**SOL, "quote": "SOL"}]), "base and quote must differ"),
    (json.dumps([{**SOL, "quote": "usd"}]), "quote 'usd' is not an asset"),
    (json.dumps([{**SOL, "tickSize": 0.001}]), "tickSize must be a decimal string"),
    (json.dumps([{**SOL, "tickSize": "1e-3"}]), "tickSize: '1e-3' is not a plain decimal"),
    (json.dumps([{**SOL, "tickSize": "0"}]), "tickSize must be positive"),
    (json.dumps([{**SOL, "lotSize": "0." + "0" * 18 + "1"}]),
     "lotSize: '0.0000000000000000001' is not a plain decimal"),  # 18 places at most
    (json.dumps([{**SOL, "minQuantity": "0.015"}]), "minQuantity 0.015 is not a multiple"),
    (json.dumps([{**SOL, "maxQuantity": "0.001"}]), "maxQuantity 0.001 is not a multiple"),
    (json.dumps([{**SOL, "minQuantity": "1", "maxQuantity": "0.5"}]),
     "maxQuantity is below minQuantity"),
    (json.dumps([{**SOL, "priceBandBps": 10001}]), "priceBandBps must be a whole number"),
    (json.dumps([{**SOL, "priceBandBps": True}]), "priceBandBps must be a whole number"),
    (json.dumps([{**SOL, "takerFeeBps": -1}]), "takerFeeBps must be a whole number from 0"),
    (json.dumps([{**SOL, "takerFeeBps": 5, "makerFeeBps": -6}]),
     "makerFeeBps must be a whole number from -5 to 10000"),
])
def test_refusals_name_the_entry_and_the_key(text: str, message: str) -> None:
    with pytest.raises(InstrumentFileError) as err:
        parse(text)
    assert message in str(err.value)
