"""Certificates for the dev stack and the tests (``Stack(tls=True)``, ``make run TLS=1``).

Made with the ``cryptography`` package (a dev dependency: production pods get
their certificates from a Secret). ``ensure_dev_certs(directory)`` keeps, in one
directory, a CA and the certificates it signed:

- ``ca.crt`` / ``ca.key``: the CA that signed all the others;
- ``server.crt`` / ``.key``: the public ports (order service, market data), for
  localhost, this host's name, 127.0.0.1 and ::1;
- ``matching.crt`` / ``.key``: the matching pods' internal port, for matching,
  localhost, 127.0.0.1 and ::1;
- ``order-service.crt`` / ``.key``: the order service's client certificate to
  matching (common name ``order-service``);
- ``client.crt`` / ``.key``: a client certificate for public mutual TLS and the
  stack's own health checks (``exchange-dev-client``, not an allowed internal client).

Files that are there and still good (signed by the CA, the key fits, the names
cover what is asked, valid for at least another day) are kept; otherwise the
whole set is made anew. Keys are ECDSA P-256, files mode 600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
# Certificates expiring sooner than this are made anew.
MIN_LEFT = dt.timedelta(days=1)

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class DevCerts:
    directory: Path
    ca: Path
    server: Pair
    matching: Pair
    order_service: Pair
    client: Pair


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(common_name: str = "exchange dev CA", days: int = CA_DAYS
            ) -> tuple[x509.Certificate, Key]:
    """A self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca_cert: x509.Certificate, ca_key: Key, common_name: str, *,
          names: Iterable[str] = (), server: bool = False, client: bool = False,
          days: int = LEAF_DAYS) -> tuple[x509.Certificate, Key]:
    """A certificate for ``common_name`` signed by the CA; ``names`` become subject
    alternative names (IP addresses as such, anything else as DNS names)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in dict.fromkeys([common_name, *names]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    now = _now()
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.SubjectAlternativeName(sans), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write(directory: Path, name: str, cert: x509.Certificate, key: Key | None = None) -> Pair:
    """``<name>.crt`` (and ``<name>.key``, mode 600) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        os.chmod(key_path, 0o600)
    return Pair(cert_path, key_path)


def local_names() -> list[str]:
    """The names a server on this machine is reached by."""
    names = ["localhost", "127.0.0.1", "::1"]
    host = socket.gethostname()
    if host and host not in names:
        names.append(host)
    return names


# file stem -> (common name, other names, server, client)
def _plan(server_names: list[str]) -> dict[str, tuple[str, list[str], bool, bool]]:
    return {
        "server": ("localhost", server_names, True, False),
        "matching": ("matching", ["localhost", "127.0.0.1", "::1"], True, False),
        "order-service": ("order-service", [], False, True),
        "client": ("exchange-dev-client", [], False, True),
    }


def _still_good(directory: Path, plan: dict[str, tuple[str, list[str], bool, bool]]) -> bool:
    try:
        ca = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
        serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        deadline = _now() + MIN_LEFT
        if ca.not_valid_after_utc < deadline:
            return False
        for stem, (_, names, _, _) in plan.items():
            cert = x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes())
            key = serialization.load_pem_private_key(
                (directory / f"{stem}.key").read_bytes(), None)
            cert.verify_directly_issued_by(ca)
            if cert.public_key() != key.public_key() or cert.not_valid_after_utc < deadline:
                return False
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = {str(v) for v in sans.get_values_for_type(x509.DNSName)} | {
                str(v) for v in sans.get_values_for_type(x509.IPAddress)}
            if not set(names) <= have:
                return False
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return True


def ensure_dev_certs(directory: Path | str, server_names: Iterable[str] | None = None
                     ) -> DevCerts:
    """The dev certificates in ``directory``, made if missing or no longer good.
    ``server_names``: the public ports' names (default: ``local_names()``)."""
    directory = Path(directory)
    names = list(server_names) if server_names is not None else local_names()
    plan = _plan(names)
    if not _still_good(directory, plan):
        ca_cert, ca_key = make_ca()
        write(directory, "ca", ca_cert, ca_key)
        for stem, (cn, sans, server, client) in plan.items():
            write(directory, stem, *issue(ca_cert, ca_key, cn, names=sans, server=server,
                                          client=client))

    def pair(stem: str) -> Pair:
        return Pair(directory / f"{stem}.crt", directory / f"{stem}.key")

    return DevCerts(directory=directory, ca=directory / "ca.crt", server=pair("server"),
                    matching=pair("matching"), order_service=pair("order-service"),
                    client=pair("client"))


def load_ca(directory: Path | str) -> tuple[x509.Certificate, Key]:
    """The CA of ``directory`` (to sign more certificates in a test)."""
    directory = Path(directory)
    cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key
