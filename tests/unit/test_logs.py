"""logs.ClientGoneFilter: a client going away mid-stream is one DEBUG line; everything
else gRPC logs keeps its level and traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from grpc._cython import cygrpc

from exchange_common.logs import GRPC_SERVER_LOGGER, ClientGoneFilter

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
