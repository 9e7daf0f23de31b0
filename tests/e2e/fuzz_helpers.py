"""What the fuzz tests share: hostile inputs, and the checks every answer must pass."""

from __future__ import annotations

import os

import grpc
from google.rpc import code_pb2, error_details_pb2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from exchange_common.config import CommonSettings
from exchange_common.errors import error_info

C = grpc.StatusCode
NEVER = {C.UNKNOWN, C.INTERNAL}
# A status message never repeats much of the request (errors.clip).
MAX_DETAILS = 1000
LIMITS = CommonSettings.model_construct()
MAX_MESSAGE = LIMITS.max_message_bytes
MAX_METADATA = LIMITS.max_metadata_bytes
TIMEOUT = 30


def fuzz_settings(name: str, examples: int) -> settings:
    """The hypothesis settings of a fuzz module: ``examples`` per test in ``make test``,
    1,000 with HYPOTHESIS_PROFILE=fuzz (``make fuzz``); no deadline (real services)."""
    bounded = settings(max_examples=examples, deadline=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                              HealthCheck.function_scoped_fixture])
    settings.register_profile(f"{name}-bounded", bounded)
    settings.register_profile(name, bounded, max_examples=1000)
    return settings.get_profile(
        name if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else f"{name}-bounded")


def check_error(err: grpc.aio.AioRpcError, *, over_limit: bool = False) -> None:
    """A failed call: a proper code; ErrorInfo with a reason and a small message, unless
    gRPC refused a request over a size limit (``over_limit``), which is exactly
    RESOURCE_EXHAUSTED without details."""
    code = err.code()
    assert code not in NEVER, f"{code.name}: {err.details()!r:.300}"
    if over_limit:
        assert code == C.RESOURCE_EXHAUSTED and error_info(err) is None, (
            f"{code.name}: {err.details()!r:.300}")
        return
    info = error_info(err)
    assert info is not None and info.reason and info.domain == "exchange", (
        f"{code.name} without a reason: {err.details()!r:.300}")
    assert len(err.details() or "") <= MAX_DETAILS, f"{len(err.details())}-character message"


def check_status_proto(status) -> None:
    """An error inside an OrderEntry event."""
    assert status.code not in (code_pb2.UNKNOWN, code_pb2.INTERNAL, code_pb2.OK), status
    reasons = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
    assert reasons and all(reasons), status
    assert len(status.message) <= MAX_DETAILS


MEGABYTE = 1 << 20
HOSTILE = [
    "", " ", "NaN", "nan", "-NaN", "Infinity", "-Infinity", "inf", "1e3", "1E3", "1e-2",
    "-0", "0", "0.0", "00", "-1", "0x10", "0b1", "+5", " 5", "5 ", "5\n", "\t5", "1,000",
    "1_000", "٥", "５", "߅", "१२३", "Ⅻ", "1" * 40, "9" * 19, "9" * 18, "0." + "0" * 17 + "1",
    "1." + "1" * 19, "70000.00", "70000", "70000.001", "0.01", "0.0001", "1000.0001",
    "BTC-USD", "btc-usd", "ETH-USD", "BTC-USD ", "BTC-USD\x00", "\x00", "\u202eDSU-CTB",
    "\u200fBTC-USD", "BTC\u2010USD", "\ufeffBTC-USD", "\U0001f4a9", "' OR 1=1 --",
    "%s%n%x", "{0}{1}", "\\x00", "x-" + "a" * 62, "a" * 65, "a b", "é",
    "7" * MEGABYTE, "é" * (MEGABYTE // 2), "\u202e" * (MEGABYTE // 3),
]


def text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE), st.text(max_size=80),
                     st.text(alphabet="0123456789.-+eE ", max_size=45))


ENUM = st.one_of(st.integers(-2, 5), st.integers(-(1 << 31), (1 << 31) - 1))
INT32 = st.one_of(st.sampled_from([0, 1, -1, 999, 1000, 1001, (1 << 31) - 1, -(1 << 31)]),
                  st.integers(-(1 << 31), (1 << 31) - 1))


# Bodies that are not valid protobuf for any request message: truncated varint and
# length, wire types 3/4/6/7 (groups and reserved), a tag of field 0, a length past the
# end, invalid UTF-8 in string field 1, nesting past the parser's limit.
MALFORMED = [
    b"\x08", b"\x80", b"\x0a", b"\x0a\x05ab", b"\x0b", b"\x0c", b"\x0e", b"\x0f", b"\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0a\x02\xff\xfe",
    b"\x0a\x80\x80\x80\x80\x10", b"\x0a" + b"\x02\x0a\x00" * 3, b"\x0a" * 200,
]
