"""CRLs fetched from certificates' distribution points (RFC 5280 §4.2.1.13), served by
a local HTTP server from what `mss pki revoke` / `mss pki crl` publish: for S/MIME
verification (`mss smime verify` at another deployment) and for TLS client logins."""

from __future__ import annotations

import datetime as dt
import http.server
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cli.main import main
from directory.certificates import Certificates
from directory.models import CertificateUsage, MailboxType
from mailserver.pki.authority import build_crl
from mailserver.pki.crl_fetch import CrlFetcher, distribution_points
from mailserver.pki.local_pki import LocalPki, cert_pem, deployment_pki, key_pem
from mailserver.settings import Settings, load_settings
from mailserver.smime.trust import TrustStore, ValidationError
from tests.conftest import DOMAIN, make_deployment, start_server

GOOD = f"lgc.bon@{DOMAIN}"
BAD = f"lgc.vole@{DOMAIN}"
SIGNER = f"dr.signe@{DOMAIN}"
REVOKED_SIGNER = f"dr.revoque@{DOMAIN}"


@dataclass
class CrlServer:
    """http://127.0.0.1:PORT/crl/<ca>.crl from a PKI's crl/ folder, plus /huge and /slow."""

    folder: Path
    port: int = 0
    paths: list[str] = field(default_factory=list)
    huge: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/crl"


@pytest.fixture
def crl_server(tmp_path: Path) -> Iterator[CrlServer]:
    state = CrlServer(tmp_path / "a" / "deployment" / "pki" / "crl")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.paths.append(self.path)
            if self.path == "/slow":
                time.sleep(3)
            if self.path == "/huge":
                body = b"0" * state.huge
            else:
                target = state.folder / self.path.removeprefix("/crl/")
                if not self.path.startswith("/crl/") or not target.is_file():
                    self.send_error(404)
                    return
                body = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-crl")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def mss(settings: Settings, *args: str) -> Result:
    result = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args])
    assert result.exit_code == 0, result.output
    return result


def with_crl_url(settings: Settings, base: str) -> Settings:
    config = settings.data_dir / "mss.toml"
    text = config.read_text()
    assert 'crl_base_url = ""' in text  # `mss init` wrote the commented defaults
    config.write_text(text.replace('crl_base_url = ""', f'crl_base_url = "{base}"'))
    return load_settings(settings.data_dir)


@dataclass
class Operator:
    """Deployment A: its PKI publishes CRLs at the HTTP server's /crl/."""

    settings: Settings
    pki: LocalPki
    good: x509.Certificate
    bad: x509.Certificate


@pytest.fixture
def operator_a(tmp_path: Path, crl_server: CrlServer) -> Operator:
    settings = with_crl_url(make_deployment(tmp_path / "a"), crl_server.base)
    mss(settings, "pki", "init", "--key-type", "ec256")
    pki = deployment_pki(settings)
    good = pki.issue(GOOD, "tls-client", organisation=DOMAIN, key_type="ec256").certificate
    bad = pki.issue(BAD, "tls-client", organisation=DOMAIN, key_type="ec256").certificate
    mss(settings, "pki", "revoke", f"{bad.serial_number:x}")
    mss(settings, "pki", "crl")
    return Operator(settings, pki, good, bad)


def foreign_store(a: Operator, fetcher: CrlFetcher | None, *, require_crl: bool = False,
                  ) -> TrustStore:
    """What another deployment knows of A: its chain as anchors, no CRL on disk."""
    return TrustStore([a.pki.authority("root").certificate],
                      [a.pki.authority("organisations").certificate],
                      require_crl=require_crl,
                      crl_source=fetcher.crls_for if fetcher else None)


def test_issued_certificates_name_their_distribution_point(
    operator_a: Operator, crl_server: CrlServer,
) -> None:
    assert distribution_points(operator_a.good) == [f"{crl_server.base}/organisations.crl"]
    sub_ca = operator_a.pki.authority("organisations").certificate
    assert distribution_points(sub_ca) == [f"{crl_server.base}/root.crl"]
    assert distribution_points(operator_a.pki.authority("root").certificate) == []


def test_fetched_crls_revoke_and_are_cached(operator_a: Operator, crl_server: CrlServer,
                                            tmp_path: Path) -> None:
    fetcher = CrlFetcher(tmp_path / "cache", timeout=5)
    store = foreign_store(operator_a, fetcher)
    path = store.validate(operator_a.good, purpose="tls-client")
    assert path.notes == ()  # revocation checked for the leaf and the sub-CA
    with pytest.raises(ValidationError, match="was revoked"):
        store.validate(operator_a.bad, purpose="tls-client")
    assert sorted(crl_server.paths) == ["/crl/organisations.crl", "/crl/root.crl"]
    # Another process (a new fetcher on the same cache folder) asks no one.
    again = foreign_store(operator_a, CrlFetcher(tmp_path / "cache", timeout=5))
    with pytest.raises(ValidationError, match="was revoked"):
        again.validate(operator_a.bad, purpose="tls-client")
    assert len(crl_server.paths) == 2
    # Without fetching, revocation cannot be known.
    assert foreign_store(operator_a, None).validate(operator_a.bad, purpose="tls-client").notes


def test_failures_are_bounded_logged_and_retried_later(
    operator_a: Operator, crl_server: CrlServer, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    fetcher = CrlFetcher(None, timeout=1, max_size=4096, retry_seconds=300)
    crl_server.huge = 5000
    huge = f"http://127.0.0.1:{crl_server.port}/huge"
    assert fetcher.get(huge) is None
    assert any("larger than 4096 bytes" in r.getMessage() for r in caplog.records)
    started = time.monotonic()
    assert fetcher.get(f"http://127.0.0.1:{crl_server.port}/slow") is None
    assert time.monotonic() - started < 2.5  # the timeout, not the server's 3 s
    assert fetcher.get(f"{crl_server.base}/missing.crl") is None  # 404
    asked = len(crl_server.paths)
    assert fetcher.get(huge) is None and len(crl_server.paths) == asked  # retried later only
    # file:// for local use.
    local = (crl_server.folder / "organisations.crl").as_uri()
    crl = fetcher.get(local)
    assert crl is not None and crl.get_revoked_certificate_by_serial_number(
        operator_a.bad.serial_number) is not None


def test_unreachable_distribution_point_hard_and_soft(operator_a: Operator,
                                                       crl_server: CrlServer) -> None:
    crl_server.folder = crl_server.folder / "gone"  # every CRL URL now answers 404
    fetcher = CrlFetcher(None, timeout=2)
    soft = foreign_store(operator_a, fetcher).validate(operator_a.good, purpose="tls-client")
    assert any("not checked" in note for note in soft.notes)
    with pytest.raises(ValidationError, match=r"revocation of .* unknown"):
        foreign_store(operator_a, fetcher, require_crl=True).validate(
            operator_a.good, purpose="tls-client")


def test_smime_verify_at_another_deployment_fetches_the_crl(
    operator_a: Operator, crl_server: CrlServer, tmp_path: Path,
) -> None:
    a = operator_a.settings
    for address in (SIGNER, REVOKED_SIGNER):
        mss(a, "pki", "issue", address, "--usage", "sign", "--key-type", "ec256")
    revoked = operator_a.pki.certificates(REVOKED_SIGNER, "sign")[0]
    mss(a, "pki", "revoke", f"{revoked.serial_number:x}")
    b = make_deployment(tmp_path / "b")
    chain = tmp_path / "a-chain.pem"
    chain.write_bytes(b"".join(
        operator_a.pki.authority(name).certificate.public_bytes(
            Encoding.PEM) for name in ("root", "people")))
    mss(b, "pki", "trust", "add", str(chain))
    for address, passes in ((SIGNER, True), (REVOKED_SIGNER, False)):
        message = tmp_path / f"{address}.eml"
        message.write_bytes(f"From: {address}\r\nTo: x@{DOMAIN}\r\nSubject: cr\r\n\r\n"
                            "resultat\r\n".encode())
        signed = mss(a, "smime", "sign", "--in", str(message)).stdout_bytes
        (tmp_path / "signed.eml").write_bytes(signed)
        result = CliRunner().invoke(main, ["--data-dir", str(b.data_dir), "smime", "verify",
                                           "--in", str(tmp_path / "signed.eml")])
        assert (result.exit_code == 0) is passes, result.output
        if not passes:
            assert "revoked" in result.output
    assert "/crl/people.crl" in crl_server.paths


def test_tls_client_login_checks_the_fetched_crl(
    operator_a: Operator, crl_server: CrlServer, tmp_path: Path, database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deployment B trusts A's chain; A's application certificates log in at B, and the
    revoked one is refused through the CRL B fetched from A's distribution point."""
    b = make_deployment(tmp_path / "b", database_url)
    chain = tmp_path / "a-chain.pem"
    chain.write_bytes(b"".join(
        operator_a.pki.authority(name).certificate.public_bytes(
            Encoding.PEM) for name in ("root", "organisations")))
    mss(b, "pki", "trust", "add", str(chain))
    server = start_server(b)
    caplog.set_level(logging.INFO)
    try:
        for address in (GOOD, BAD):
            server.add_mailbox(address, "app-password-1", MailboxType.APP)
        for certificate, address in ((operator_a.good, GOOD), (operator_a.bad, BAD)):
            server.call(Certificates(server.app.engine).add(
                certificate, CertificateUsage.TLS_CLIENT, address=address))
        for address, expected in ((GOOD, 235), (BAD, 535)):
            registration = next(r for r in operator_a.pki.identities(address, "tls-client"))
            key_file = tmp_path / "client.key"
            cert_file = tmp_path / "client.pem"
            key_file.write_bytes(key_pem(registration.key))
            cert_file.write_bytes(cert_pem(registration.certificate) + cert_pem(
                operator_a.pki.authority("organisations").certificate))
            context = ssl.create_default_context(cafile=b.path(b.tls.ca))
            context.load_cert_chain(cert_file, key_file)
            with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as client:
                client.starttls(context=context)
                client.ehlo("lgc.example")
                code, _ = client.docmd("AUTH", "EXTERNAL =")
                assert code == expected, address
    finally:
        server.stop()
    assert "/crl/organisations.crl" in crl_server.paths
    assert any("was revoked" in r.getMessage() for r in caplog.records)


def test_local_crls_are_republished_before_they_go_stale(operator_a: Operator) -> None:
    """The server's periodic task: a CRL within 3 days of its nextUpdate is published
    again (revocations kept); fresh ones are left alone."""
    pki = operator_a.pki
    assert pki.refresh_crls() == []
    soon = build_crl(pki.authority("organisations"),
                     [(operator_a.bad.serial_number, dt.datetime.now(dt.UTC))], days=1)
    (pki.crl_dir / "organisations.crl").write_bytes(soon.public_bytes(Encoding.DER))
    assert pki.refresh_crls() == [pki.crl_dir / "organisations.crl"]
    fresh = x509.load_der_x509_crl((pki.crl_dir / "organisations.crl").read_bytes())
    assert fresh.next_update_utc is not None
    assert fresh.next_update_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    assert fresh.get_revoked_certificate_by_serial_number(operator_a.bad.serial_number)
