"""Logging set-up: JSON lines for machines, plain text for people."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
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
