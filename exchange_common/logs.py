"""Logging set-up: JSON lines for machines, plain text for people.

A JSON line logged while a span is current (``exchange_common.tracing``: the order
command, or the call, it is about) carries the span's ``trace_id`` and ``span_id`` in
hex, as trace back ends show them, so that a line leads to its trace and back.

What the services log: one line per significant event at INFO or WARNING (started,
stopped, ownership gained or lost, a dependency unreachable and back, overload shedding
begun and ended), and nothing per order above DEBUG; an order refused is one DEBUG line
with its reason (``exchange_common.errors.as_exchange_error``).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO", fmt: str = "json", service: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    pool = logging.getLogger(ASYNCPG_POOL_LOGGER)
    if not any(isinstance(f, PoolRetryFilter) for f in pool.filters):
        pool.addFilter(PoolRetryFilter())


ASYNCPG_POOL_LOGGER = "asyncpg.pool"
_POOL_RETRY = "Failed to restore the pool connection floor"


class PoolRetryFilter(logging.Filter):
    """asyncpg logs every failed attempt to reopen a pool's connections, with a traceback,
    at WARNING: one line every few seconds for as long as PostgreSQL is away. The outage
    is logged once when it begins and once when it ends (``exchange_common.changes``), so
    these become DEBUG lines without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(_POOL_RETRY)):
            return True
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.msg} ({record.exc_info[1]!r})"
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.DEBUG
        record.levelname = "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


GRPC_SERVER_LOGGER = "grpc._cython.cygrpc"
_WRITE_FAILED = "ExecuteBatchError raised in core by servicer method "


class ClientGoneFilter(logging.Filter):
    """A client going away in the middle of a stream is normal: at DEBUG, no traceback.

    When a client cancels a server stream (or its connection drops) while a response is
    being written, typically to a subscriber that reads slowly and is behind, gRPC fails
    the pending write, and grpc.aio often sees that failure before the cancellation that
    explains it: it then logs ``ExecuteBatchError raised in core by servicer method [...]``
    at ERROR with a traceback. This filter turns exactly those records (a failed batch of
    response messages only, no status) into one DEBUG line. Everything else keeps its
    level: a failed status, an unexpected exception, and a response over the size limit
    (which ``exchange_common.handlers`` logs itself before gRPC could fail its write)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (type(exc).__name__ == "ExecuteBatchError"
                and isinstance(record.msg, str) and record.msg.startswith(_WRITE_FAILED)):
            return True
        batch = str(exc)
        if "SendMessageOperation" not in batch or "SendStatusFromServerOperation" in batch:
            return True
        method = record.msg.removeprefix(_WRITE_FAILED).strip("[]")
        record.msg = "the client of %s went away while a response was being sent to it"
        record.args = (method,)
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.DEBUG
        record.levelname = "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def filter_grpc_server_logs() -> None:
    """Install ``ClientGoneFilter`` on gRPC's server logger (once; servers call this)."""
    logger = logging.getLogger(GRPC_SERVER_LOGGER)
    if not any(isinstance(f, ClientGoneFilter) for f in logger.filters):
        logger.addFilter(ClientGoneFilter())
