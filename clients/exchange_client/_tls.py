"""TLS for the clients: channel credentials from the options, and a hint for a
connection that failed because client and server disagree about TLS."""

from __future__ import annotations

from pathlib import Path

import grpc


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read the {what} {path}: {err.strerror}") from None


def channel_credentials(*, tls: bool = False, ca_file: str | None = None,
                        cert_file: str | None = None, key_file: str | None = None
                        ) -> grpc.ChannelCredentials | None:
    """The credentials of a TLS channel, or None for plaintext.

    TLS is on with ``tls=True`` or any file given. ``ca_file``: the CA (PEM) that
    signed the server's certificate (default: the system's roots). ``cert_file`` and
    ``key_file`` (together): a client certificate, for servers that require one.
    Raises ValueError for an unreadable file or a certificate without its key."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs both cert_file and key_file")
    if not (tls or ca_file or cert_file):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA file") if ca_file else None,
        private_key=_read(key_file, "client key file") if key_file else None,
        certificate_chain=_read(cert_file, "client certificate file") if cert_file else None)


def connection_hint(code: grpc.StatusCode | None, reason: str | None, message: str,
                    tls: bool) -> str:
    """Why a call might have failed to connect, for people: a plaintext client
    against a TLS port (or the other way round) fails fast with UNAVAILABLE and
    no reason. Empty when the failure is something else."""
    if code != grpc.StatusCode.UNAVAILABLE or reason:
        return ""
    text = message.lower()
    if "connection refused" in text or "dns resolution failed" in text:
        return ""
    if not tls:
        return ("is the server using TLS? try --tls (with --ca-file CA.pem for a private CA; "
                "env EXCHANGE_TLS_CA_FILE)")
    if "handshake" in text or "ssl" in text or "certificate" in text:
        return ("TLS handshake failed: is the server using TLS at all (then drop --tls / "
                "--ca-file), and is --ca-file the CA that signed its certificate?")
    if "socket closed" in text:
        return ("the server closed the connection: does it require a client certificate "
                "(--cert-file / --key-file)?")
    return ""
