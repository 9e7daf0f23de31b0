"""TLS credentials from the settings' PEM files, and who is calling.

Public ports (order service, market data): ``server_credentials`` serves TLS
when ``EXCHANGE_TLS_CERT_FILE`` / ``EXCHANGE_TLS_KEY_FILE`` are set and, with
``EXCHANGE_TLS_CLIENT_CA_FILE``, requires a client certificate signed by that CA.

Between services: a matching pod accepts commands only from an order service.
With ``EXCHANGE_INTERNAL_TLS_*`` set, that is mutual TLS: the pod serves with
its certificate (``internal_server_credentials``), the handshake requires a
client certificate signed by the internal CA, and ``InternalAuth`` accepts only
a certificate whose common name or a DNS name is one of
``EXCHANGE_INTERNAL_ALLOWED_CLIENTS``. Without internal TLS, every call carries
the shared secret ``EXCHANGE_INTERNAL_TOKEN`` as metadata ``x-internal-token``
(compared in constant time). Anything else is refused with UNAUTHENTICATED
(reason ``INTERNAL_CALLER_UNKNOWN``) before the handler reads a request. Health
checking and reflection stay open.

``InternalCaller`` is the other side: how an order service (or a tool or test
that calls a matching pod directly) connects and authenticates.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from exchange_common.config import CommonSettings
from exchange_common.errors import Unauthenticated

INTERNAL_TOKEN_HEADER = "x-internal-token"
# Services every caller may use on an internal port.
OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection")


class TLSConfigError(ValueError):
    """A certificate, key or CA file named by a setting cannot be used."""


def read_pem(path: str, variable: str) -> bytes:
    """The PEM file ``path`` that setting ``variable`` names; TLSConfigError naming
    both when it is missing, unreadable or not PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TLSConfigError(f"{variable}={path}: cannot read it ({err.strerror})") from None
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"{variable}={path}: not a PEM file")
    return data


def server_credentials(settings: CommonSettings) -> grpc.ServerCredentials | None:
    """The public port's TLS credentials; None for plaintext."""
    if not settings.tls_cert_file:
        return None
    cert = read_pem(settings.tls_cert_file, "EXCHANGE_TLS_CERT_FILE")
    key = read_pem(settings.tls_key_file, "EXCHANGE_TLS_KEY_FILE")
    client_ca = (read_pem(settings.tls_client_ca_file, "EXCHANGE_TLS_CLIENT_CA_FILE")
                 if settings.tls_client_ca_file else None)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def internal_server_credentials(settings: CommonSettings) -> grpc.ServerCredentials | None:
    """An internal port's mutual-TLS credentials (client certificates signed by the
    internal CA required); None when internal TLS is off (the token is checked then)."""
    if not settings.internal_tls:
        return None
    cert = read_pem(settings.internal_tls_cert_file, "EXCHANGE_INTERNAL_TLS_CERT_FILE")
    key = read_pem(settings.internal_tls_key_file, "EXCHANGE_INTERNAL_TLS_KEY_FILE")
    ca = read_pem(settings.internal_tls_ca_file, "EXCHANGE_INTERNAL_TLS_CA_FILE")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=True)


def peer_names(context: grpc.aio.ServicerContext) -> set[str]:
    """The names in the caller's verified client certificate: its common name and
    subject alternative names (empty without mutual TLS)."""
    auth = context.auth_context() or {}
    names = [*auth.get("x509_common_name", ()), *auth.get("x509_subject_alternative_name", ())]
    return {n.decode(errors="replace") if isinstance(n, bytes) else n for n in names}


def allowed_clients(settings: CommonSettings) -> frozenset[str]:
    return frozenset(n.strip() for n in settings.internal_allowed_clients.split(",")
                     if n.strip())


class InternalAuth(grpc.aio.ServerInterceptor):
    """Guards every service of an internal port except health and reflection:
    a call from anyone but an authenticated order service ends UNAUTHENTICATED
    before its handler runs (so before a request is read)."""

    def __init__(self, settings: CommonSettings) -> None:
        self.tls = settings.internal_tls
        self.allowed = allowed_clients(settings)
        self._token = settings.internal_token.encode()
        if not self.tls and not self._token:
            settings.require_internal_auth()  # raises: nothing to check against

    def check(self, context: grpc.aio.ServicerContext) -> None:
        """Raise Unauthenticated unless the caller is an allowed internal client."""
        if self.tls:
            names = peer_names(context)
            if names & self.allowed:
                return
            raise Unauthenticated(
                f"the client certificate names {', '.join(sorted(names)) or 'nothing'}; "
                f"only {', '.join(sorted(self.allowed))} may call this service",
                reason="INTERNAL_CALLER_UNKNOWN")
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == INTERNAL_TOKEN_HEADER:
                token = value if isinstance(value, str) else ""
                break
        if token and hmac.compare_digest(token.encode(), self._token):
            return
        raise Unauthenticated(
            f"{'wrong' if token else 'missing'} {INTERNAL_TOKEN_HEADER}: only order services "
            "may call this service", reason="INTERNAL_CALLER_UNKNOWN")

    async def _refuse_unknown(self, context: grpc.aio.ServicerContext) -> None:
        try:
            self.check(context)
        except Unauthenticated as err:
            await context.abort_with_status(err.to_status())

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails],
                               Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").partition("/")[0]
        if handler is None or service in OPEN_SERVICES:
            return handler
        return _guarded(handler, self._refuse_unknown)


def _guarded(handler: grpc.RpcMethodHandler[Any, Any],
             refuse: Callable[[grpc.aio.ServicerContext], Awaitable[None]]
             ) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with ``refuse(context)`` awaited before its behaviour runs.
    Streaming responses must come from async generators (as STYLE.md asks). The handlers
    here are grpc.aio's (coroutines), which the published stubs do not describe: Any."""
    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        inner: Any = (handler.stream_stream if handler.request_streaming
                      else handler.unary_stream)

        async def streaming(request: Any, context: grpc.aio.ServicerContext
                            ) -> AsyncIterator[Any]:
            await refuse(context)
            async for response in inner(request, context):
                yield response

        make = (grpc.stream_stream_rpc_method_handler if handler.request_streaming
                else grpc.unary_stream_rpc_method_handler)
        return make(streaming, **codec)
    inner_unary: Any = (handler.stream_unary if handler.request_streaming
                        else handler.unary_unary)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await refuse(context)
        return await inner_unary(request, context)

    make = (grpc.stream_unary_rpc_method_handler if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler)
    return make(unary, **codec)


# ---------------------------------------------------------------------------
# The calling side
# ---------------------------------------------------------------------------


class _AddToken:
    """Adds the internal token to every call of a channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    async def _call(self, continuation, details, request):  # noqa: ANN001
        metadata = (*(details.metadata or ()), *self._metadata)
        details = grpc.aio.ClientCallDetails(details.method, details.timeout, metadata,
                                             details.credentials, details.wait_for_ready)
        return await continuation(details, request)


# One class per kind of call: a channel files each interceptor under the first kind it
# is an instance of, so one class of all four would only ever see unary calls.
class _UnaryUnaryToken(_AddToken, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _AddToken._call


class _UnaryStreamToken(_AddToken, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _AddToken._call


class _StreamUnaryToken(_AddToken, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _AddToken._call


class _StreamStreamToken(_AddToken, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _AddToken._call


def _token_interceptors(metadata: tuple[tuple[str, str], ...]) -> list[grpc.aio.ClientInterceptor]:
    return [kind(metadata) for kind in (_UnaryUnaryToken, _UnaryStreamToken,
                                        _StreamUnaryToken, _StreamStreamToken)]


@dataclass(frozen=True)
class InternalCaller:
    """How a caller proves to a matching pod that it is an order service: a client
    certificate (mutual TLS) or the shared token.

    ``from_settings`` reads it from the ``EXCHANGE_INTERNAL_*`` settings (the order
    service); the dev stack builds one for its tests and tools (``Stack.internal_caller``).
    """

    token: str = field(default="", repr=False)
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    # The name expected in the pod's certificate; empty: the host of the address.
    server_name: str = ""

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> InternalCaller:
        if settings.internal_tls:
            return cls(cert_file=settings.internal_tls_cert_file,
                       key_file=settings.internal_tls_key_file,
                       ca_file=settings.internal_tls_ca_file,
                       server_name=settings.internal_tls_server_name)
        return cls(token=settings.internal_token)

    @property
    def tls(self) -> bool:
        return bool(self.cert_file)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What each call must carry: the token, or nothing with mutual TLS."""
        if self.tls or not self.token:
            return ()
        return ((INTERNAL_TOKEN_HEADER, self.token),)

    def check(self) -> None:
        """Stop the process (SystemExit naming the setting) when a file is unusable:
        at start-up, rather than at the first call."""
        if self.tls:
            try:
                self.credentials()
            except TLSConfigError as err:
                raise SystemExit(str(err)) from None

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS channel credentials presenting the client certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=read_pem(self.ca_file, "EXCHANGE_INTERNAL_TLS_CA_FILE"),
            private_key=read_pem(self.key_file, "EXCHANGE_INTERNAL_TLS_KEY_FILE"),
            certificate_chain=read_pem(self.cert_file, "EXCHANGE_INTERNAL_TLS_CERT_FILE"))

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = (), *,
                token_on_every_call: bool = True) -> grpc.aio.Channel:
        """A channel to a matching pod at ``address``.

        Mutual TLS: a secure channel presenting the client certificate. Token: a
        plaintext channel; with ``token_on_every_call`` a client interceptor adds the
        token to every call (for tools and tests), without it the caller passes
        ``metadata`` itself (the order service's long-lived stream, where an
        interceptor would cost a task per message)."""
        options = list(options)
        if self.tls:
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            return grpc.aio.secure_channel(address, self.credentials(), options=options)
        interceptors = _token_interceptors(self.metadata) if token_on_every_call else None
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
