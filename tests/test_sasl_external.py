"""Login by TLS client certificate: SASL EXTERNAL (RFC 4422 Appendix A) on SMTP
submission (587 after STARTTLS, 465) and IMAP (143 after STARTTLS, 993), with real
certificates from the local PKI over real TLS, through smtplib and imaplib."""

from __future__ import annotations

import dataclasses
import datetime as dt
import imaplib
import logging
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from directory.certificates import Certificates
from directory.models import CertificateUsage, MailboxType
from mailserver.pki.authority import Subject as PkiSubject
from mailserver.pki.authority import create_root, create_sub_ca, issue_certificate
from mailserver.pki.local_pki import LocalPki, cert_pem, deployment_pki, key_pem
from tests.conftest import DOMAIN, ServerThread, make_deployment, start_server

APP = f"lgc.cabinet@{DOMAIN}"
APP2 = f"lgc.labo@{DOMAIN}"
PER = f"jean.dupont@{DOMAIN}"
UNBOUND = f"lgc.sans-lien@{DOMAIN}"
PASSWORD = "app-password-1"


@dataclasses.dataclass
class Pki:
    server: ServerThread
    local: LocalPki
    folder: Path

    def client_files(self, name: str, certificate: x509.Certificate, key: object,
                     chain: list[x509.Certificate]) -> tuple[Path, Path]:
        cert_path = self.folder / f"{name}.pem"
        key_path = self.folder / f"{name}.key"
        cert_path.write_bytes(cert_pem(certificate) + b"".join(cert_pem(c) for c in chain))
        key_path.write_bytes(key_pem(key))  # type: ignore[arg-type]
        return cert_path, key_path

    def issue(self, address: str, *, bind: bool = True) -> tuple[Path, Path, x509.Certificate]:
        issued = self.local.issue(address, "tls-client", organisation=DOMAIN, key_type="ec256")
        if bind:
            self.bind(issued.certificate, address)
        chain = [self.local.authority("organisations").certificate]
        cert_path, key_path = self.client_files(address.split("@")[0], issued.certificate,
                                                issued.key, chain)
        return cert_path, key_path, issued.certificate

    def bind(self, certificate: x509.Certificate, address: str) -> None:
        self.server.call(Certificates(self.server.app.engine).add(
            certificate, CertificateUsage.TLS_CLIENT, address=address))

    def context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        settings = self.server.settings
        context = ssl.create_default_context(cafile=settings.path(settings.tls.ca))
        if cert is not None:
            context.load_cert_chain(*cert)
        return context


@pytest.fixture
def pki(tmp_path: Path, database_url: str) -> Iterator[Pki]:
    settings = make_deployment(tmp_path, database_url)
    local = deployment_pki(settings)
    local.init(DOMAIN, key_type="ec256")
    server = start_server(settings)
    for address, kind in ((APP, MailboxType.APP), (APP2, MailboxType.ORG),
                          (PER, MailboxType.PER), (UNBOUND, MailboxType.APP)):
        server.add_mailbox(address, PASSWORD, kind)
    folder = tmp_path / "client"
    folder.mkdir()
    try:
        yield Pki(server, local, folder)
    finally:
        server.stop()


def smtp(pki: Pki, cert: tuple[Path, Path] | None, *, implicit: bool = False) -> smtplib.SMTP:
    context = pki.context(cert)
    if implicit:
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            "127.0.0.1", pki.server.port("submissions"), timeout=10, context=context)
    else:
        client = smtplib.SMTP("127.0.0.1", pki.server.port("submission"), timeout=10)
        client.starttls(context=context)
    client.ehlo("lgc.example")
    return client


def external(authzid: str = "") -> object:
    return lambda challenge=None: authzid


def imap(pki: Pki, cert: tuple[Path, Path] | None, *, implicit: bool = True) -> imaplib.IMAP4:
    context = pki.context(cert)
    if implicit:
        return imaplib.IMAP4_SSL("127.0.0.1", pki.server.port("imaps"), ssl_context=context,
                                 timeout=10)
    client = imaplib.IMAP4("127.0.0.1", pki.server.port("imap"), timeout=10)
    client.starttls(ssl_context=context)
    return client


def imap_refuses(pki: Pki, files: tuple[Path, Path]) -> None:
    """IMAP AUTHENTICATE EXTERNAL with this certificate: NO [AUTHENTICATIONFAILED]."""
    client = imap(pki, files)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.authenticate("EXTERNAL", lambda _: b"")
    finally:
        client.logout()


def refused_reason(caplog: pytest.LogCaptureFixture, text: str) -> None:
    lines = [r.getMessage() for r in caplog.records if "certificate login refused" in
             r.getMessage()]
    assert any(text in line for line in lines), lines


def message(sender: str) -> bytes:
    return (f"From: {sender}\r\nTo: {PER}\r\nSubject: resultats\r\n\r\nbonjour\r\n").encode()


# -- the good certificate ---------------------------------------------------------------

@pytest.mark.parametrize("implicit", [False, True], ids=["587-starttls", "465"])
def test_good_certificate_logs_in_on_smtp_and_sends(pki: Pki, implicit: bool) -> None:
    cert, key, _ = pki.issue(APP)
    with smtp(pki, (cert, key), implicit=implicit) as client:
        assert "EXTERNAL" in client.esmtp_features["auth"].split()
        code, _ = client.auth("EXTERNAL", external())  # type: ignore[arg-type]
        assert code == 235
        assert client.sendmail(APP, [PER], message(APP)) == {}
    assert b"bonjour" in pki.server.inbox(PER)[-1]


@pytest.mark.parametrize("implicit", [False, True], ids=["143-starttls", "993"])
def test_good_certificate_logs_in_on_imap(pki: Pki, implicit: bool) -> None:
    cert, key, _ = pki.issue(APP)
    client = imap(pki, (cert, key), implicit=implicit)
    try:
        assert "AUTH=EXTERNAL" in client.capabilities
        typ, _ = client.authenticate("EXTERNAL", lambda _: APP.encode())
        assert typ == "OK"
        typ, _data = client.select("INBOX")
        assert typ == "OK"
    finally:
        client.logout()


def test_authzid_must_be_a_bound_mailbox(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """The certificate of one mailbox, with another mailbox as authorization identity."""
    cert, key, _ = pki.issue(APP2)
    pki.issue(APP)
    caplog.set_level(logging.INFO)
    with smtp(pki, (cert, key)) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.auth("EXTERNAL", external(APP))  # type: ignore[arg-type]
        assert error.value.smtp_code == 535
        assert b"5.7.8" in error.value.smtp_error
        # The right identity (or none: one binding) then works on the same session.
        code, _ = client.auth("EXTERNAL", external(APP2))  # type: ignore[arg-type]
        assert code == 235
    refused_reason(caplog, f"not bound to {APP}")
    client2 = imap(pki, (cert, key))
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client2.authenticate("EXTERNAL", lambda _: APP.encode())
    finally:
        client2.logout()


# -- refusals ------------------------------------------------------------------------------

def test_revoked_certificate_is_refused(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    cert, key, certificate = pki.issue(APP)
    with smtp(pki, (cert, key)) as client:
        assert client.auth("EXTERNAL", external())[0] == 235  # type: ignore[arg-type]
    pki.local.revoke(certificate.serial_number)  # publishes the organisations CRL
    caplog.set_level(logging.INFO)
    with smtp(pki, (cert, key)) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.auth("EXTERNAL", external())  # type: ignore[arg-type]
        assert error.value.smtp_code == 535 and b"5.7.8" in error.value.smtp_error
    refused_reason(caplog, "was revoked")
    client2 = imap(pki, (cert, key), implicit=False)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client2.authenticate("EXTERNAL", lambda _: b"")
    finally:
        client2.logout()


def _custom(pki: Pki, name: str, addresses: list[str], not_before: dt.datetime,
            not_after: dt.datetime) -> tuple[Path, Path]:
    """A tls-client certificate from the organisations CA, bound to ``addresses``."""
    authority = pki.local.authority("organisations")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                     False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(a) for a in addresses]),
                       critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    for address in addresses:
        pki.bind(certificate, address)
    return pki.client_files(name, certificate, key, [authority.certificate])


def _expired(pki: Pki, address: str) -> tuple[Path, Path]:
    now = dt.datetime.now(dt.UTC)
    return _custom(pki, "expired", [address], now - dt.timedelta(days=400),
                   now - dt.timedelta(days=35))


def test_expired_certificate_is_refused_and_password_still_works(
    pki: Pki, caplog: pytest.LogCaptureFixture,
) -> None:
    cert, key = _expired(pki, APP)
    caplog.set_level(logging.INFO)
    with smtp(pki, (cert, key)) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.auth("EXTERNAL", external())  # type: ignore[arg-type]
        assert error.value.smtp_code == 535
        assert client.login(APP, PASSWORD)[0] == 235  # the same TLS session
    refused_reason(caplog, "expired on")
    imap_refuses(pki, (cert, key))


def test_certificate_from_an_untrusted_ca_never_logs_in(
    pki: Pki, caplog: pytest.LogCaptureFixture,
) -> None:
    """The TLS layer checks the chain: an unknown CA ends the handshake (alert
    unknown_ca); no session, no login; after STARTTLS the reason is logged."""
    caplog.set_level(logging.INFO)
    root = create_root("pirate.example", "ec256")
    sub = create_sub_ca(root, "organisations", "ec256")
    key, certificate = issue_certificate(
        sub, PkiSubject(address=APP, organisation="pirate.example"), "tls-client", "ec256")
    pki.bind(certificate, APP)  # even bound in the directory
    files = pki.client_files("pirate", certificate, key, [sub.certificate])
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        with smtp(pki, files) as client:
            client.auth("EXTERNAL", external())  # type: ignore[arg-type]
    with pytest.raises((ssl.SSLError, imaplib.IMAP4.abort, ConnectionError)):
        client2 = imap(pki, files, implicit=False)
        client2.authenticate("EXTERNAL", lambda _: b"")
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        with smtp(pki, files, implicit=True) as client:
            client.auth("EXTERNAL", external())  # type: ignore[arg-type]
    with pytest.raises((ssl.SSLError, imaplib.IMAP4.abort, ConnectionError)):
        client2 = imap(pki, files, implicit=True)
        client2.authenticate("EXTERNAL", lambda _: b"")
    for door in ("smtp", "imap"):
        assert any(f"{door} 127.0.0.1 STARTTLS handshake failed" in r.getMessage()
                   and "certificate verify failed" in r.getMessage()
                   for r in caplog.records), door


def test_certificate_without_binding_is_refused(
    pki: Pki, caplog: pytest.LogCaptureFixture,
) -> None:
    cert, key, _ = pki.issue(UNBOUND, bind=False)
    caplog.set_level(logging.INFO)
    with smtp(pki, (cert, key)) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.auth("EXTERNAL", external(UNBOUND))  # type: ignore[arg-type]
        assert error.value.smtp_code == 535
    refused_reason(caplog, "bound to no mailbox")
    imap_refuses(pki, (cert, key))


def test_without_a_certificate_external_is_not_offered(
    pki: Pki, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with smtp(pki, None) as client:
        mechanisms = client.esmtp_features["auth"].split()
        assert "PLAIN" in mechanisms and "EXTERNAL" not in mechanisms
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.auth("EXTERNAL", external(APP))  # type: ignore[arg-type]
        assert error.value.smtp_code == 535
        assert client.login(APP, PASSWORD)[0] == 235
    refused_reason(caplog, "no client certificate")
    client2 = imap(pki, None)
    try:
        assert "AUTH=EXTERNAL" not in client2.capabilities
        assert "AUTH=PLAIN" in client2.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client2.authenticate("EXTERNAL", lambda _: b"")
    finally:
        client2.logout()


def test_person_mailbox_cannot_log_in_by_certificate(
    pki: Pki, caplog: pytest.LogCaptureFixture,
) -> None:
    cert, key, _ = pki.issue(PER)
    caplog.set_level(logging.INFO)
    with smtp(pki, (cert, key)) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.auth("EXTERNAL", external())  # type: ignore[arg-type]
        assert error.value.smtp_code == 535
        assert b"application and organisation" in error.value.smtp_error
    refused_reason(caplog, "is a PER mailbox")
    imap_refuses(pki, (cert, key))



def test_certificate_of_two_mailboxes_needs_an_authzid(
    pki: Pki, caplog: pytest.LogCaptureFixture,
) -> None:
    now = dt.datetime.now(dt.UTC)
    files = _custom(pki, "shared", [APP, APP2], now - dt.timedelta(hours=1),
                    now + dt.timedelta(days=30))
    caplog.set_level(logging.INFO)
    with smtp(pki, files) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.auth("EXTERNAL", external())  # type: ignore[arg-type]
        assert client.auth("EXTERNAL", external(APP2.upper()))[0] == 235  # type: ignore[arg-type]
        assert client.sendmail(APP2, [PER], message(APP2)) == {}
        # The authorization identity is the login: another address is not its own.
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail(APP, [PER], message(APP))
    refused_reason(caplog, "bound to 2 mailboxes")


def test_malformed_external_exchanges(pki: Pki) -> None:
    cert, key, _ = pki.issue(APP)
    with smtp(pki, (cert, key)) as client:
        code, reply = client.docmd("AUTH", "EXTERNAL !!!notbase64")
        assert code == 501 and reply.startswith(b"5.5.2")
        code, _ = client.docmd("AUTH", "EXTERNAL")
        assert code == 334
        code, _ = client.docmd("*")  # cancelled (RFC 4954 §4)
        assert code == 501
        code, _ = client.docmd("AUTH", "EXTERNAL " + "QUFB" * 100)  # "AAA..." not an address
        assert code == 535
        assert client.docmd("AUTH", "EXTERNAL =")[0] == 235
    client2 = imap(pki, (cert, key))
    try:
        tag = client2._new_tag().decode()  # type: ignore[attr-defined]
        client2.send(f"{tag} AUTHENTICATE EXTERNAL %%%\r\n".encode())
        reply = client2.readline()
        assert reply.startswith(f"{tag} BAD".encode()), reply
        typ, _ = client2.authenticate("EXTERNAL", lambda _: b"")
        assert typ == "OK"
    finally:
        client2.logout()
