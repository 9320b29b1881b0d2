"""Certificates of the directory, bound to one mailbox address or to a whole domain.

Discovery follows the Direct Project (Applicability Statement for Secure Health
Transport 1.2, §4.1 and §5): a certificate bound to the full address wins; only when
the address has none does a domain-bound certificate apply. An address-bound
certificate carries the address in its subjectAltName rfc822Name (RFC 8550 §3),
a domain-bound one the domain as a dNSName.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from directory.models import Certificate, CertificateUsage
from directory.service import DirectoryError, normalize_address
from mailserver.store.database import writer

MAX_CERTIFICATE_FILE = 1024 * 1024


@dataclass(frozen=True)
class CertificateRecord:
    id: int
    bound_to: str
    usage: CertificateUsage
    sha256: str
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes

    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    def valid_at(self, when: dt.datetime) -> bool:
        return self.not_before <= when < self.not_after


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file (one or several) or one DER certificate."""
    if len(data) > MAX_CERTIFICATE_FILE:
        raise DirectoryError("certificate file larger than 1 MiB")
    try:
        if b"-----BEGIN" in data:
            certificates = x509.load_pem_x509_certificates(data)
        else:
            certificates = [x509.load_der_x509_certificate(data)]
    except ValueError as error:
        raise DirectoryError(f"not a PEM or DER X.509 certificate ({error})") from error
    if not certificates:
        raise DirectoryError("no certificate in the file")
    return certificates


def normalize_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if not domain or "@" in domain or " " in domain:
        raise DirectoryError(f"{domain!r} is not a domain name")
    try:
        return domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError as error:
        raise DirectoryError(f"{domain!r}: invalid domain name ({error})") from error


def _names(certificate: x509.Certificate) -> tuple[set[str], set[str]]:
    """(rfc822 addresses, DNS names) the certificate is issued for."""
    emails: set[str] = set()
    dns: set[str] = set()
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = {e.lower() for e in san.get_values_for_type(x509.RFC822Name)}
        dns = {d.lower() for d in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        pass
    # Older certificates put the address in the subject's emailAddress (RFC 8550 §3).
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        emails.add(str(attribute.value).lower())
    return emails, dns


def check_usage(certificate: x509.Certificate, usage: CertificateUsage) -> None:
    """Refuse a certificate whose key usages forbid ``usage`` (RFC 5280 §4.2.1.3, .12)."""
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if key_usage is not None:
        if usage is CertificateUsage.ENCRYPT and not (
            key_usage.key_encipherment or key_usage.key_agreement
        ):
            raise DirectoryError("this certificate's key usage allows no encryption "
                                 "(keyEncipherment or keyAgreement)")
        if usage in (CertificateUsage.SIGN, CertificateUsage.TLS_CLIENT) and not (
            key_usage.digital_signature or key_usage.content_commitment
        ):
            raise DirectoryError("this certificate's key usage allows no signature "
                                 "(digitalSignature or nonRepudiation)")
    try:
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    wanted = (ExtendedKeyUsageOID.CLIENT_AUTH if usage is CertificateUsage.TLS_CLIENT
              else ExtendedKeyUsageOID.EMAIL_PROTECTION)
    if wanted not in extended and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in extended:
        purpose = "TLS client" if usage is CertificateUsage.TLS_CLIENT else "e-mail"
        raise DirectoryError(f"this certificate's extended key usage excludes {purpose} use")


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _record(row: Certificate) -> CertificateRecord:
    return CertificateRecord(
        id=row.id, bound_to=row.bound_to, usage=CertificateUsage(row.usage), sha256=row.sha256,
        subject=row.subject, issuer=row.issuer, serial=row.serial,
        not_before=_utc(row.not_before), not_after=_utc(row.not_after), der=row.der,
    )


class Certificates:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(writer(engine), expire_on_commit=False)
        self._readers = async_sessionmaker(engine, expire_on_commit=False)

    async def add(
        self,
        certificate: x509.Certificate,
        usage: CertificateUsage,
        *,
        address: str | None = None,
        domain: str | None = None,
    ) -> CertificateRecord:
        """Bind ``certificate`` to ``address`` or to ``domain`` for ``usage``."""
        if (address is None) == (domain is None):
            raise DirectoryError("bind a certificate to an address or to a domain (one of them)")
        emails, dns = _names(certificate)
        if address is not None:
            bound_to = normalize_address(address)
            if bound_to not in emails:
                raise DirectoryError(
                    f"the certificate is not issued for {bound_to} (its addresses: "
                    f"{', '.join(sorted(emails)) or 'none'})")
        else:
            bound_to = normalize_domain(domain or "")
            if bound_to not in dns and not any(e.endswith("@" + bound_to) for e in emails):
                raise DirectoryError(
                    f"the certificate is not issued for the domain {bound_to} (its names: "
                    f"{', '.join(sorted(dns | emails)) or 'none'})")
        check_usage(certificate, usage)
        der = certificate.public_bytes(Encoding.DER)
        row = Certificate(
            bound_to=bound_to, usage=usage.value, sha256=hashlib.sha256(der).hexdigest(),
            subject=certificate.subject.rfc4514_string()[:1000],
            issuer=certificate.issuer.rfc4514_string()[:1000],
            serial=format(certificate.serial_number, "x")[:64],
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            der=der,
        )
        async with self._sessions.begin() as session:
            session.add(row)
            try:
                await session.flush()
            except IntegrityError as error:
                raise DirectoryError(
                    f"this certificate is already bound to {bound_to} for {usage.value}"
                ) from error
            return _record(row)

    async def bound_to(self, name: str) -> list[CertificateRecord]:
        """Every certificate bound to an address or a domain, valid or not."""
        name = normalize_address(name) if "@" in name else normalize_domain(name)
        async with self._readers() as session:
            rows = (await session.execute(
                select(Certificate).where(Certificate.bound_to == name)
                .order_by(Certificate.usage, Certificate.not_before.desc())
            )).scalars().all()
        return [_record(row) for row in rows]

    async def remove(self, sha256: str, name: str) -> int:
        name = normalize_address(name) if "@" in name else normalize_domain(name)
        async with self._sessions.begin() as session:
            result = await session.execute(delete(Certificate).where(
                Certificate.sha256 == sha256.lower(), Certificate.bound_to == name))
            return int(result.rowcount)  # type: ignore[attr-defined]

    async def addresses_bound(self, sha256: str, usage: CertificateUsage) -> list[str]:
        """The mailbox addresses (not domains) this very certificate is bound to for
        ``usage`` (SASL EXTERNAL: the certificate a client presented)."""
        async with self._readers() as session:
            names = (await session.execute(
                select(Certificate.bound_to)
                .where(Certificate.sha256 == sha256.lower(), Certificate.usage == usage.value)
                .order_by(Certificate.bound_to)
            )).scalars().all()
        return [name for name in names if "@" in name]

    async def lookup_certificates(
        self,
        address: str,
        usage: CertificateUsage = CertificateUsage.ENCRYPT,
        *,
        at: dt.datetime | None = None,
    ) -> list[CertificateRecord]:
        """The valid certificates bound to ``address``, else to its domain (Direct
        Project order); newest first. Empty when there is none."""
        try:
            address = normalize_address(address)
        except DirectoryError:
            return []
        domain = address.rpartition("@")[2]
        when = at or dt.datetime.now(dt.UTC)
        async with self._readers() as session:
            rows = (await session.execute(
                select(Certificate)
                .where(Certificate.bound_to.in_([address, domain]),
                       Certificate.usage == usage.value)
                .order_by(Certificate.not_before.desc(), Certificate.id.desc())
            )).scalars().all()
        valid = [record for record in map(_record, rows) if record.valid_at(when)]
        for name in (address, domain):
            found = [record for record in valid if record.bound_to == name]
            if found:
                return found
        return []
