"""Python client for the exchange: async and sync clients, typed errors, a local book.

    from exchange_client import AsyncExchangeClient, ExchangeClient

Calls return the protobuf messages of ``exchange.order.v1`` and
``exchange.marketdata.v1`` (see clients/README.md for which one each call
returns); failures raise :class:`ExchangeError` subclasses.
"""

from exchange_client.aio import (
    DEFAULT_MARKETDATA_ADDR,
    DEFAULT_ORDER_ADDR,
    DEFAULT_TIMEOUT,
    AsyncExchangeClient,
)
from exchange_client.book import ChecksumMismatch, Level, LocalL3Book, LocalOrderBook, SequenceGap
from exchange_client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    ExchangeError,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    exception_class_for_grpc_status,
    from_grpc_error,
)
from exchange_client.sync import ExchangeClient

__all__ = [
    "DEFAULT_MARKETDATA_ADDR",
    "DEFAULT_ORDER_ADDR",
    "DEFAULT_TIMEOUT",
    "Aborted",
    "AlreadyExists",
    "AsyncExchangeClient",
    "Cancelled",
    "ChecksumMismatch",
    "DeadlineExceeded",
    "ExchangeClient",
    "ExchangeError",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "Level",
    "LocalL3Book",
    "LocalOrderBook",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "SequenceGap",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "exception_class_for_grpc_status",
    "from_grpc_error",
]
