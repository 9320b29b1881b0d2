"""TLS client certificates for SASL EXTERNAL (RFC 4422 Appendix A) on SMTP and IMAP.

The TLS layer asks for a certificate (optionally: people still log in with a
password or a token on the same ports) and lets OpenSSL check its chain against
the anchors of ``DATA_DIR/pki/trust`` (the local root and imported chains alike).
Expiry is not checked there (``X509_V_FLAG_NO_CHECK_TIME``) so that an expired
certificate still gets a TLS session, a clear ``535`` / ``NO`` and a log line, and
its software can fall back to its password. Everything is then checked again here
(``TrustStore``, RFC 5280 §6): path to an anchor, validity dates, key usage, the
TLS client extended key usage (required, RFC 5280 §4.2.1.12), revocation by CRL
(local CRLs, else the distribution points'; hard-fail by default), and the
certificate's binding to mailboxes in the directory (usage ``tls-client``).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from directory.certificates import Certificates
from directory.models import CertificateUsage
from mailserver.pki.authority import PkiError
from mailserver.pki.local_pki import LocalPki
from mailserver.smime.trust import ValidationError

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (x509_vfy.h): dates are checked in Python.
X509_V_FLAG_NO_CHECK_TIME = 0x200000


class CertificateRefused(Exception):
    """The client certificate cannot log in; ``reason`` says why (no secret in it)."""

    def __init__(self, reason: str, subject: str = "?") -> None:
        super().__init__(reason)
        self.reason = reason
        self.subject = subject


@dataclass(frozen=True)
class CertificateIdentity:
    subject: str
    serial: str
    sha256: str
    addresses: tuple[str, ...]  # mailboxes the certificate is bound to (tls-client)
    notes: tuple[str, ...]  # e.g. revocation not checked (soft-fail)


def _has_client_auth(certificate: x509.Certificate) -> bool:
    try:
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in extended


class ClientCertificates:
    def __init__(self, pki: LocalPki, certificates: Certificates, *, require_crl: bool) -> None:
        self._pki = pki
        self._certificates = certificates
        self._require_crl = require_crl

    def anchors_pem(self) -> str:
        """The anchors and our sub-CAs, for the TLS layer's chain check ("" if none)."""
        if not self._pki.trust_dir.exists():
            return ""
        pems = [c.public_bytes(Encoding.PEM).decode("ascii")
                for c in [*self._pki.trust_anchors(), *self._safe_intermediates()]]
        return "".join(pems)

    def _safe_intermediates(self) -> list[x509.Certificate]:
        try:
            return self._pki.intermediates()
        except (PkiError, OSError, ValueError):  # no local PKI: imported anchors only
            return []

    def _validate(self, der: bytes) -> tuple[x509.Certificate, tuple[str, ...]]:
        """Blocking (files, CRL downloads): run in a worker thread."""
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError as error:
            raise CertificateRefused(f"unreadable certificate ({error})") from error
        subject = certificate.subject.rfc4514_string()
        if not _has_client_auth(certificate):
            raise CertificateRefused("the certificate is not for TLS client authentication "
                                     "(no extended key usage clientAuth)", subject)
        try:
            path = self._pki.trust_store(require_crl=self._require_crl).validate(
                certificate, purpose="tls-client")
        except ValidationError as error:
            raise CertificateRefused(error.reason, subject) from error
        return certificate, path.notes

    async def identify(self, der: bytes) -> CertificateIdentity:
        """The mailboxes a valid client certificate is bound to, or CertificateRefused."""
        certificate, notes = await asyncio.to_thread(self._validate, der)
        subject = certificate.subject.rfc4514_string()
        sha256 = hashlib.sha256(der).hexdigest()
        addresses = await self._certificates.addresses_bound(sha256, CertificateUsage.TLS_CLIENT)
        if not addresses:
            raise CertificateRefused("the certificate is bound to no mailbox in the directory "
                                     "(usage tls-client)", subject)
        return CertificateIdentity(subject, f"{certificate.serial_number:x}", sha256,
                                   tuple(addresses), notes)


def request_client_certificates(context: ssl.SSLContext, anchors_pem: str) -> None:
    """Ask TLS clients for a certificate (optional), chained to ``anchors_pem``."""
    if not anchors_pem:
        return
    context.load_verify_locations(cadata=anchors_pem)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The DER of the certificate the TLS client presented (already chain-checked)."""
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der or None
