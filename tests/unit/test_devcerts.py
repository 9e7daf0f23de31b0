"""The dev certificates (exchange_dev.certs): made once, kept while good, made
anew when not; the dev stack's TLS switch; and the client library's TLS options."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from exchange_client._tls import channel_credentials, connection_hint
from exchange_dev import certs as devcerts
from exchange_dev.cli import build_stack
from exchange_dev.settings import DevSettings

FILES = ("ca", "server", "matching", "order-service", "client")


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def names(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in sans.get_values_for_type(x509.DNSName)} | {
        str(v) for v in sans.get_values_for_type(x509.IPAddress)}


def test_made_once_and_kept(tmp_path: Path) -> None:
    certs = devcerts.ensure_dev_certs(tmp_path, ["localhost", "127.0.0.1"])
    assert {p.name for p in tmp_path.iterdir()} == {
        f"{stem}.{ext}" for stem in FILES for ext in ("crt", "key")}
    for stem in FILES:
        assert stat.S_IMODE((tmp_path / f"{stem}.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    for pair in (certs.server, certs.matching, certs.order_service, certs.client):
        x509.load_pem_x509_certificate(pair.cert.read_bytes()).verify_directly_issued_by(ca)
    assert {"localhost", "127.0.0.1"} <= names(certs.server.cert)
    assert {"matching", "127.0.0.1"} <= names(certs.matching.cert)
    assert names(certs.order_service.cert) == {"order-service"}
    before = contents(tmp_path)
    devcerts.ensure_dev_certs(tmp_path, ["localhost", "127.0.0.1"])
    assert contents(tmp_path) == before


def test_made_anew_when_no_longer_good(tmp_path: Path) -> None:
    devcerts.ensure_dev_certs(tmp_path, ["localhost"])
    first = contents(tmp_path)
    # Another name asked for: the server certificate does not cover it.
    devcerts.ensure_dev_certs(tmp_path, ["localhost", "exchange.test"])
    second = contents(tmp_path)
    assert second["ca.crt"] != first["ca.crt"]
    assert "exchange.test" in names(tmp_path / "server.crt")

    # Expiring: a certificate valid for less than a day more.
    ca, key = devcerts.load_ca(tmp_path)
    devcerts.write(tmp_path, "client", *devcerts.issue(ca, key, "exchange-dev-client",
                                                      client=True, days=0))
    devcerts.ensure_dev_certs(tmp_path, ["localhost", "exchange.test"])
    assert contents(tmp_path)["ca.crt"] != second["ca.crt"]

    # Signed by another CA, or a key that does not fit, or a file gone.
    third = contents(tmp_path)
    rogue, rogue_key = devcerts.make_ca("rogue")
    devcerts.write(tmp_path, "matching", *devcerts.issue(rogue, rogue_key, "matching",
                                                        server=True))
    devcerts.ensure_dev_certs(tmp_path, ["localhost", "exchange.test"])
    fourth = contents(tmp_path)
    assert fourth["ca.crt"] != third["ca.crt"]
    (tmp_path / "order-service.key").write_bytes((tmp_path / "client.key").read_bytes())
    devcerts.ensure_dev_certs(tmp_path, ["localhost", "exchange.test"])
    assert contents(tmp_path)["ca.crt"] != fourth["ca.crt"]
    fifth = contents(tmp_path)
    (tmp_path / "ca.key").unlink()
    devcerts.ensure_dev_certs(tmp_path, ["localhost", "exchange.test"])
    assert contents(tmp_path)["ca.crt"] != fifth["ca.crt"]


def test_client_tls_options(tmp_path: Path) -> None:
    assert channel_credentials() is None
    assert channel_credentials(tls=True) is not None
    certs = devcerts.ensure_dev_certs(tmp_path / "tls", ["localhost"])
    assert channel_credentials(ca_file=str(certs.ca)) is not None  # implies TLS
    assert channel_credentials(cert_file=str(certs.client.cert),
                               key_file=str(certs.client.key)) is not None
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        channel_credentials(cert_file=str(certs.client.cert))
    with pytest.raises(ValueError, match="cannot read the CA file .*nope.pem"):
        channel_credentials(ca_file=str(tmp_path / "nope.pem"))


@pytest.mark.parametrize(("reason", "message", "tls", "hint"), [
    (None, "failed to connect to all addresses; last error: UNAVAILABLE: "
           "ipv4:127.0.0.1:50051: Socket closed", False, "is the server using TLS?"),
    (None, "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:50051: "
           "Tls handshake failed (TSI_PROTOCOL_FAILURE)", True, "TLS handshake failed"),
    (None, "failed to connect to all addresses; last error: UNAVAILABLE: "
           "ipv4:127.0.0.1:50051: Socket closed", True, "client certificate"),
    (None, "failed to connect to all addresses; last error: UNAVAILABLE: "
           "ipv4:127.0.0.1:1: Connection refused", False, ""),
    ("MATCHING_UNAVAILABLE", "no matching engine owns this instrument", False, ""),
])
def test_connection_hint(reason: str | None, message: str, tls: bool, hint: str) -> None:
    got = connection_hint(grpc.StatusCode.UNAVAILABLE, reason, message, tls)
    assert (hint in got) if hint else got == ""
    assert connection_hint(grpc.StatusCode.INTERNAL, None, message, tls) == ""


@pytest.mark.parametrize(("flag", "env", "tls"), [
    (False, None, False), (True, None, True), (False, "1", True), (False, "0", False)])
def test_exchange_dev_tls_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 flag: bool, env: str | None, tls: bool) -> None:
    """``exchange-dev --tls`` or EXCHANGE_DEV_TLS=1: the stack uses <data dir>/tls."""
    monkeypatch.setenv("EXCHANGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EXCHANGE_DEV_API_KEYS", "alice=K1,bob=K2")
    if env is None:
        monkeypatch.delenv("EXCHANGE_DEV_TLS", raising=False)
    else:
        monkeypatch.setenv("EXCHANGE_DEV_TLS", env)
    stack, _ = build_stack(DevSettings(), tls=flag)
    assert stack.tls is tls
    if tls:
        assert stack.tls_dir == tmp_path / "tls"
        assert stack.internal_caller().tls and not stack.internal_caller().metadata
        assert stack.ca_file == str(tmp_path / "tls" / "ca.crt")
    else:
        assert stack.certs is None and stack.channel_credentials() is None
        assert stack.internal_caller().metadata == (
            ("x-internal-token", stack.internal_token),)


def test_make_run_tls_passes_the_flag() -> None:
    root = Path(__file__).resolve().parents[2]

    def command(*args: str) -> str:
        out = subprocess.run(["make", "-n", "--no-print-directory", "run", *args],
                             cwd=root, capture_output=True, text=True, check=True).stdout
        return out.strip().splitlines()[-1].split()[-1]

    assert command("TLS=1") == "--tls"
    assert command() == ".venv/bin/exchange-dev"
    assert command("TLS=0") == ".venv/bin/exchange-dev"
