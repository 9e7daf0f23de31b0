"""Domain errors and their one mapping to gRPC status with rich details.

Servicers raise these; ``grpc_errors`` turns them into a ``google.rpc.Status``
carrying ``ErrorInfo`` (reason, domain, metadata) and, for bad input,
``BadRequest`` field violations (AIP-193). Anything unexpected becomes
INTERNAL with no traceback in the message (the traceback is logged).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import grpc
import redis.exceptions
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from exchange_common import tracing

DOMAIN = "exchange"
log = logging.getLogger(__name__)

# Characters of a request value that an error message or ErrorInfo metadata repeats.
CLIP_CHARS = 40


def clip(value: str, limit: int = CLIP_CHARS) -> str:
    """``value`` as an error may repeat it: its first ``limit`` characters and "..." when
    longer, so a huge field never makes a huge status (nor one over the client's limit)."""
    return value if len(value) <= limit else value[:limit] + "..."


class ExchangeError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.field = field
        self.metadata = metadata or {}
        # Seconds to wait before trying again: a google.rpc.RetryInfo detail.
        self.retry_after = retry_after

    def to_status(self) -> grpc.Status:
        """For ending a call: ``context.abort_with_status(err.to_status())``."""
        return rpc_status.to_status(self.to_status_proto())

    def to_status_proto(self) -> status_pb2.Status:
        """The google.rpc.Status message (for errors inside a stream's messages)."""
        details = []
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN,
                                           metadata=self.metadata)
        details.append(info)
        if self.field is not None:
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=self.field, description=self.message, reason=self.reason
                        )
                    ]
                )
            )
        if self.retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(max(0, int(self.retry_after * 1e9)))
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        packed = []
        for d in details:
            a = any_pb2.Any()
            a.Pack(d)
            packed.append(a)
        return status_pb2.Status(code=getattr(code_pb2, self.code.name), message=self.message,
                                 details=packed)


class InvalidArgument(ExchangeError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class Unauthenticated(ExchangeError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(ExchangeError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class NotFound(ExchangeError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(ExchangeError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(ExchangeError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class ResourceExhausted(ExchangeError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class OutOfRange(ExchangeError):
    code = grpc.StatusCode.OUT_OF_RANGE
    default_reason = "OUT_OF_RANGE"


class Unavailable(ExchangeError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(ExchangeError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


def dependency_down(err: BaseException) -> bool:
    """True for errors that mean PostgreSQL or Redis could not be reached or
    went away mid-call (as opposed to a bug or a bad query)."""
    if isinstance(err, (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
                        asyncpg.InsufficientResourcesError, OSError, ConnectionError,
                        TimeoutError, redis.exceptions.ConnectionError,
                        redis.exceptions.TimeoutError)):
        return True
    return isinstance(err, asyncpg.InterfaceError) and not isinstance(
        err, (asyncpg.exceptions.DataError, asyncpg.exceptions.ClientConfigurationError))


def told(err: BaseException) -> ExchangeError:
    """The error a caller is told for ``err``, with no logging: itself if it is one,
    UNAVAILABLE (DEPENDENCY_UNAVAILABLE) for a database or cache outage, else INTERNAL.
    ``as_exchange_error`` answers with it; the metrics count answers by it."""
    if isinstance(err, ExchangeError):
        return err
    if dependency_down(err):
        return Unavailable("a backing service (database or cache) is unavailable; retry "
                           "shortly", reason="DEPENDENCY_UNAVAILABLE")
    return ExchangeError("internal error", reason="INTERNAL")


def as_exchange_error(err: Exception, where: str) -> ExchangeError:
    """``err`` as the error a caller is told (call it in an except block): itself
    if it is one, UNAVAILABLE for a database or cache outage, else INTERNAL
    (logged with its traceback, which the caller never sees).

    Every refusal a service answers passes here (a call's status, through
    ``grpc_errors``; an error inside a stream's messages, the OrderEntry session's), so
    this is where a refused order is logged: one DEBUG line with the code and reason,
    never more (an outage is logged once, where it begins and ends, by what watches the
    database or Redis, not once per order it refuses). When tracing, the reason goes on
    the current span, the command's."""
    error = told(err)
    cause = err if error is not err and dependency_down(err) else None
    if error is not err and cause is None:
        log.exception("unexpected error in %s", where)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s: refused with %s %s: %s%s", where, error.code.name, error.reason,
                  error.message, f" ({cause!r})" if cause is not None else "")
    if tracing.ENABLED:
        tracing.refused(error.code.name, error.reason, error.message)
    return error


def _status_for(err: Exception, where: str) -> grpc.Status:
    return as_exchange_error(err, where).to_status()


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a servicer method (coroutine or async generator) so that an
    ExchangeError becomes its rich status, a database or cache outage
    UNAVAILABLE, and anything else INTERNAL (logged, no traceback sent)."""

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as err:  # noqa: BLE001
                await context.abort_with_status(_status_for(err, method.__qualname__))

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as err:  # noqa: BLE001
            await context.abort_with_status(_status_for(err, method.__qualname__))

    return unary_wrapper


def error_info(err: grpc.aio.AioRpcError | grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a failed call, if any (for clients and tests)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def field_violations(err: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    out: list[error_details_pb2.BadRequest.FieldViolation] = []
    if status is None:
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out.extend(br.field_violations)
    return out
