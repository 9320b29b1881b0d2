"""Certificate authorities of the local PKI, modelled on the French health PKI (IGC-Santé).

One root CA, then one sub-CA per population:

- ``servers``: TLS server + client certificates of operators (the trust space),
- ``people``: professionals' S/MIME certificates, a *signing* certificate and a separate
  *encryption* certificate (IGC-Santé issues them as a pair), the professional's national
  identifier (RPPS/ADELI) in the subject's ``serialNumber`` attribute,
- ``organisations``: TLS client certificates of organisations and applications (APP
  mailboxes, practice software), exported as PKCS#12.

Profiles follow RFC 5280 and RFC 8550 (S/MIME certificate handling): the mailbox address
is in the subjectAltName as an rfc822Name (RFC 8550 §3), and S/MIME certificates carry
the emailProtection extended key usage.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyType = Literal["rsa2048", "rsa3072", "ec256"]
Usage = Literal["sign", "encrypt", "tls-client", "tls-server"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)
USAGES: tuple[str, ...] = get_args(Usage)

ROOT = "root"
SUB_CAS: dict[str, str] = {
    "servers": "Serveurs applicatifs",
    "people": "Personnes",
    "organisations": "Organisations et applications",
}
# Which sub-CA issues which usage.
ISSUER_OF_USAGE: dict[str, str] = {
    "sign": "people",
    "encrypt": "people",
    "tls-client": "organisations",
    "tls-server": "servers",
}


class PkiError(Exception):
    """A PKI operation cannot be done (the message says why and what to do)."""


def generate_key(key_type: str) -> PrivateKey:
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    raise PkiError(f"unknown key type {key_type!r} (choose one of {', '.join(KEY_TYPES)})")


@dataclass(frozen=True)
class Authority:
    name: str
    certificate: x509.Certificate
    key: PrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: flags.get(name, False) for name in names})


def _crl_distribution_point(url: str) -> x509.CRLDistributionPoints:
    # RFC 5280 §4.2.1.13: one point, full name = the URL of the issuer's CRL.
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None, reasons=None, crl_issuer=None,
    )])


def _ca_certificate(
    subject: x509.Name, key: PrivateKey, issuer: Authority | None, path_length: int, days: int,
    crl_url: str | None = None,
) -> x509.Certificate:
    now = _now()
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True, digital_signature=True),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    )
    if crl_url and issuer is not None:
        builder = builder.add_extension(_crl_distribution_point(crl_url), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def create_root(organisation: str, key_type: str = "rsa3072", days: int = 7300) -> Authority:
    key = generate_key(key_type)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC locale"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"AC racine {organisation}"),
    ])
    return Authority(ROOT, _ca_certificate(subject, key, None, 1, days), key)


def create_sub_ca(root: Authority, name: str, key_type: str = "rsa3072",
                  days: int = 3650, crl_url: str | None = None) -> Authority:
    if name not in SUB_CAS:
        raise PkiError(f"unknown sub-CA {name!r}")
    key = generate_key(key_type)
    organisation = root.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(organisation[0].value)),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC locale"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"AC {SUB_CAS[name]}"),
    ])
    return Authority(name, _ca_certificate(subject, key, root, 0, days, crl_url), key)


@dataclass(frozen=True)
class Subject:
    """Who a certificate is for: a mailbox address (or a host name for tls-server)."""

    address: str
    organisation: str
    display_name: str = ""
    identifier: str = ""  # national professional identifier (RPPS / ADELI), people only


def _subject_name(subject: Subject, usage: str) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.organisation),
    ]
    if usage in ("sign", "encrypt"):
        label = "Signature" if usage == "sign" else "Chiffrement"
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, label))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME,
                                         subject.display_name or subject.address))
    if subject.identifier:
        # IGC-Santé puts the professional's national identifier in the subject.
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, subject.identifier))
    return x509.Name(attributes)


def _alt_names(subject: Subject, usage: str) -> list[x509.GeneralName]:
    if usage != "tls-server":
        if "@" not in subject.address:
            # Direct Project Applicability Statement §4.1: a domain-bound certificate
            # (an operator's) names the domain as a dNSName.
            return [x509.DNSName(subject.address)]
        return [x509.RFC822Name(subject.address)]
    try:
        return [x509.IPAddress(ipaddress.ip_address(subject.address))]
    except ValueError:
        return [x509.DNSName(subject.address)]


def _usage_extensions(
    usage: str, key: PrivateKey,
) -> tuple[x509.KeyUsage, list[x509.ObjectIdentifier]]:
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    if usage == "sign":
        # RFC 8550 §4.4.2: digitalSignature (and nonRepudiation) for signing.
        return (_key_usage(digital_signature=True, content_commitment=True),
                [ExtendedKeyUsageOID.EMAIL_PROTECTION])
    if usage == "encrypt":
        # RFC 8550 §4.4.2: keyEncipherment for RSA, keyAgreement for ECDH.
        ku = _key_usage(key_encipherment=True) if is_rsa else _key_usage(key_agreement=True)
        return ku, [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    if usage == "tls-client":
        return (_key_usage(digital_signature=True, key_encipherment=is_rsa),
                [ExtendedKeyUsageOID.CLIENT_AUTH])
    if usage == "tls-server":
        return (_key_usage(digital_signature=True, key_encipherment=is_rsa),
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    raise PkiError(f"unknown usage {usage!r} (choose one of {', '.join(USAGES)})")


def issue_certificate(
    authority: Authority, subject: Subject, usage: str, key_type: str = "rsa2048",
    days: int = 1095, crl_url: str | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    key = generate_key(key_type)
    key_usage, extended = _usage_extensions(usage, key)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject_name(subject, usage))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(extended), critical=False)
        .add_extension(x509.SubjectAlternativeName(_alt_names(subject, usage)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
    )
    if crl_url:
        builder = builder.add_extension(_crl_distribution_point(crl_url), critical=False)
    return key, builder.sign(authority.key, hashes.SHA256())


def build_crl(authority: Authority, revoked: list[tuple[int, dt.datetime]],
              days: int = 7) -> x509.CertificateRevocationList:
    """RFC 5280 §5: a CRL signed by the issuing CA, valid ``days`` days."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(authority.key, hashes.SHA256())
