"""Typed exceptions for failed calls, in the style of google-api-core.

Every failed gRPC call surfaces as a subclass of :class:`ExchangeError`
chosen by its status code (``InvalidArgument`` for ``INVALID_ARGUMENT`` and
so on; a code without its own class gives the base class). The rich status
the services send (``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer, see AIP-193) is decoded into:

- ``reason``: the ``ErrorInfo.reason`` ("PRICE_OFF_TICK"), or None;
- ``domain`` and ``metadata``: the rest of the ``ErrorInfo``;
- ``field_violations``: the ``BadRequest`` field violations, if any;
- ``details``: every detail message, unpacked where its type is known.

``str(err)`` is one line: ``INVALID_ARGUMENT (PRICE_OFF_TICK) price: ...``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import grpc
from google.protobuf import message as _message
from google.rpc import error_details_pb2, status_pb2

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

_KNOWN_DETAILS = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request (``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str
    reason: str = ""


_BY_CODE: dict[grpc.StatusCode, type[ExchangeError]] = {}


class ExchangeError(Exception):
    """A call to the exchange failed.

    ``code`` is the ``grpc.StatusCode`` (a class attribute on the subclasses,
    an instance attribute when the base class is raised for a code without
    its own subclass).
    """

    code: ClassVar[grpc.StatusCode | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str | None = None,
        domain: str | None = None,
        metadata: dict[str, str] | None = None,
        field_violations: list[FieldViolation] | tuple[FieldViolation, ...] = (),
        details: list[Any] | tuple[Any, ...] = (),
        rpc_error: grpc.RpcError | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = list(field_violations)
        self.details: list[Any] = list(details)
        #: The original ``grpc.RpcError`` (None for errors raised client-side).
        self.rpc_error = rpc_error

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("code") is not None:
            _BY_CODE.setdefault(cls.code, cls)  # type: ignore[arg-type]

    @property
    def code_name(self) -> str:
        return self.code.name if self.code is not None else "UNKNOWN"

    def __str__(self) -> str:
        head = self.code_name
        if self.reason and self.reason != head:
            head += f" ({self.reason})"
        text = " ".join(self.message.split())  # always one line
        if self.field_violations:
            violations = "; ".join(
                f"{v.field}: {v.description}" if v.field else v.description
                for v in self.field_violations
            )
            descriptions = {v.description for v in self.field_violations}
            text = violations if not text or text in descriptions else f"{text}; {violations}"
        return f"{head} {text}".rstrip()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(message={self.message!r}, reason={self.reason!r}, "
                f"field_violations={self.field_violations!r})")


class Cancelled(ExchangeError):
    code = grpc.StatusCode.CANCELLED


class Unknown(ExchangeError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(ExchangeError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(ExchangeError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(ExchangeError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ExchangeError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ExchangeError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ExchangeError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ExchangeError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ExchangeError):
    code = grpc.StatusCode.ABORTED


class Unimplemented(ExchangeError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ExchangeError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(ExchangeError):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ExchangeError):
    code = grpc.StatusCode.UNAUTHENTICATED


def exception_class_for_grpc_status(code: grpc.StatusCode) -> type[ExchangeError]:
    """The exception class for a status code (``ExchangeError`` if it has none)."""
    return _BY_CODE.get(code, ExchangeError)


def from_grpc_status(
    code: grpc.StatusCode, message: str, **kwargs: Any
) -> ExchangeError:
    """Build the typed exception for ``code``."""
    cls = exception_class_for_grpc_status(code)
    if cls is ExchangeError:
        return ExchangeError(message, code=code, **kwargs)
    return cls(message, **kwargs)


def _rich_status(err: grpc.RpcError) -> status_pb2.Status | None:
    try:
        trailing = err.trailing_metadata()
    except Exception:  # noqa: BLE001 - not a Call: no trailers to read
        return None
    # (key, value) pairs, whether the sync or the asyncio library made them.
    for key, value in cast(Iterable[tuple[str, Any]], trailing or ()):
        if key == _STATUS_DETAILS_KEY:
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except _message.DecodeError:
                return None
            return status
    return None


def from_grpc_error(err: grpc.RpcError) -> ExchangeError:
    """Turn a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)
    into its typed exception, decoding ErrorInfo and BadRequest details."""
    try:
        code = err.code()
        message = err.details() or ""
    except Exception:  # noqa: BLE001
        code, message = grpc.StatusCode.UNKNOWN, str(err)
    status = _rich_status(err)
    if status is not None and not message:
        message = status.message
    return _with_details(code, message, status, rpc_error=err)


def from_status_proto(status: status_pb2.Status) -> ExchangeError:
    """The typed exception of a ``google.rpc.Status`` (an OrderEntry event's error)."""
    try:
        code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    except StopIteration:
        code = grpc.StatusCode.UNKNOWN
    return _with_details(code, status.message, status, rpc_error=None)


def _with_details(code: grpc.StatusCode, message: str, status: status_pb2.Status | None,
                  rpc_error: grpc.RpcError | None) -> ExchangeError:
    reason = domain = None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    details: list[Any] = []
    if status is not None:
        for packed in status.details:
            for cls in _KNOWN_DETAILS:
                if packed.Is(cls.DESCRIPTOR):
                    detail = cls()
                    packed.Unpack(detail)
                    break
            else:
                details.append(packed)
                continue
            details.append(detail)
            if isinstance(detail, error_details_pb2.ErrorInfo) and reason is None:
                reason, domain, metadata = detail.reason, detail.domain, dict(detail.metadata)
            elif isinstance(detail, error_details_pb2.BadRequest):
                violations.extend(
                    FieldViolation(v.field, v.description, v.reason)
                    for v in detail.field_violations
                )
    return from_grpc_status(
        code, message, reason=reason or None, domain=domain or None, metadata=metadata,
        field_violations=violations, details=details, rpc_error=rpc_error,
    )
