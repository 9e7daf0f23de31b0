"""logs.ClientGoneFilter: a client going away mid-stream is one DEBUG line; everything
else gRPC logs keeps its level and traceback. logs.JsonFormatter: a line logged under a
span carries its trace and span ids."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from grpc._cython import cygrpc
from opentelemetry.sdk.trace import TracerProvider

from exchange_common.logs import (
    ASYNCPG_POOL_LOGGER,
    GRPC_SERVER_LOGGER,
    ClientGoneFilter,
    JsonFormatter,
    PoolRetryFilter,
)

METHOD = "/exchange.marketdata.v1.MarketDataService/StreamOrderBook"
WRITE = 'Failed "execute_batch": (<grpc._cython.cygrpc.SendMessageOperation object at 0x1>,)'
STATUS = ('Failed "execute_batch": (<grpc._cython.cygrpc.SendInitialMetadataOperation object '
          'at 0x1>, <grpc._cython.cygrpc.SendStatusFromServerOperation object at 0x2>)')


def _record(message: str, exc: BaseException | None) -> logging.LogRecord:
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:  # noqa: BLE001
            exc_info = sys.exc_info()
    return logging.LogRecord(GRPC_SERVER_LOGGER, logging.ERROR, "server.pyx", 1, message,
                             (), exc_info)


@pytest.fixture
def grpc_logger():
    logger = logging.getLogger(GRPC_SERVER_LOGGER)
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_a_failed_response_write_becomes_one_debug_line(grpc_logger) -> None:
    grpc_logger.setLevel(logging.INFO)
    record = _record(f"ExecuteBatchError raised in core by servicer method [{METHOD}]",
                     cygrpc.ExecuteBatchError(WRITE))
    assert ClientGoneFilter().filter(record) is False  # DEBUG is off: dropped
    grpc_logger.setLevel(logging.DEBUG)
    record = _record(f"ExecuteBatchError raised in core by servicer method [{METHOD}]",
                     cygrpc.ExecuteBatchError(WRITE))
    assert ClientGoneFilter().filter(record) is True
    assert record.levelno == logging.DEBUG and record.exc_info is None
    assert record.getMessage() == (f"the client of {METHOD} went away while a response was "
                                   "being sent to it")


@pytest.mark.parametrize("message,exc", [
    (f"ExecuteBatchError raised in core by servicer method [{METHOD}]",
     cygrpc.ExecuteBatchError(STATUS)),  # a status that could not be sent
    (f"Unexpected [ValueError] raised by servicer method [{METHOD}]", ValueError("bug")),
    ("Failed sending error status from server", cygrpc.ExecuteBatchError(WRITE)),
    (f"ExecuteBatchError raised in core by servicer method [{METHOD}]", None),
])
def test_everything_else_keeps_its_level(grpc_logger, message, exc) -> None:
    record = _record(message, exc)
    assert ClientGoneFilter().filter(record) is True
    assert record.levelno == logging.ERROR and record.getMessage() == message
    assert (record.exc_info is None) == (exc is None)


def _json_line(message: str) -> dict:
    record = logging.LogRecord("order_service.servicer", logging.DEBUG, "servicer.py", 1,
                               message, (), None)
    return json.loads(JsonFormatter().format(record))


def test_a_json_line_carries_the_current_spans_ids() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("CreateOrder") as span:
        line = _json_line("refused with INVALID_ARGUMENT PRICE_OFF_TICK")
    ctx = span.get_span_context()
    assert line["trace_id"] == f"{ctx.trace_id:032x}" and len(line["trace_id"]) == 32
    assert line["span_id"] == f"{ctx.span_id:016x}" and len(line["span_id"]) == 16
    assert line["level"] == "DEBUG"
    assert line["msg"] == "refused with INVALID_ARGUMENT PRICE_OFF_TICK"
    # No span current: no ids.
    assert "trace_id" not in _json_line("started") and "span_id" not in _json_line("started")


def test_asyncpg_retrying_its_pool_is_a_debug_line() -> None:
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        exc_info = sys.exc_info()
    logger = logging.getLogger(ASYNCPG_POOL_LOGGER)
    level = logger.level
    try:
        logger.setLevel(logging.INFO)
        record = logging.LogRecord(ASYNCPG_POOL_LOGGER, logging.WARNING, "pool.py", 1,
                                   "Failed to restore the pool connection floor; retrying",
                                   (), exc_info)
        assert PoolRetryFilter().filter(record) is False  # DEBUG is off: dropped
        logger.setLevel(logging.DEBUG)
        record = logging.LogRecord(ASYNCPG_POOL_LOGGER, logging.WARNING, "pool.py", 1,
                                   "Failed to restore the pool connection floor; retrying",
                                   (), exc_info)
        assert PoolRetryFilter().filter(record) is True
        assert record.levelno == logging.DEBUG and record.exc_info is None
        assert "Connect call failed" in record.getMessage()
        other = logging.LogRecord(ASYNCPG_POOL_LOGGER, logging.WARNING, "pool.py", 1,
                                  "Pool.close() is taking over 60 seconds to complete.", (),
                                  None)
        assert PoolRetryFilter().filter(other) is True and other.levelno == logging.WARNING
    finally:
        logger.setLevel(level)
