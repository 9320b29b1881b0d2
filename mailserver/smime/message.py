"""S/MIME on whole messages (RFC 8551 §3): sign, verify, encrypt, decrypt.

Signing and encryption protect the MIME entity (the Content-* fields and body); the
other header fields (From, To, Subject, ...) stay outside. Verification checks, beyond
the CMS signature and the certificate path, that the signer's certificate names the
From address (RFC 8550 §3).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from mailserver.smime import der, enveloped, mime, signed
from mailserver.smime.enveloped import Cipher_, Identity
from mailserver.smime.results import (
    DecryptResult,
    DecryptStatus,
    Status,
    VerifyResult,
)
from mailserver.smime.trust import TrustStore

MAX_MESSAGE = 64 * 1024 * 1024
_ENCRYPTED = ("enveloped_data", "authenticated_enveloped_data")


def sign_entity(entity: bytes, signer: Identity, chain: Sequence[x509.Certificate] = (),
                *, opaque: bool = False) -> bytes:
    """A signed entity: multipart/signed (detached, the default) or pkcs7-mime signed-data."""
    if opaque:
        der = signed.sign(entity, signer.certificate, signer.key, chain, detached=False)
        return mime.pkcs7_mime(der, "signed-data")
    der = signed.sign(entity, signer.certificate, signer.key, chain)
    return mime.multipart_signed(entity, der)


def sign_message(message: bytes, signer: Identity, chain: Sequence[x509.Certificate] = (),
                 *, opaque: bool = False) -> bytes:
    outer, entity = mime.entity_of(mime.canonical(message))
    return mime.join(outer, sign_entity(entity, signer, chain, opaque=opaque))


def encrypt_entity(entity: bytes, recipients: Sequence[x509.Certificate],
                   cipher: Cipher_ = "aes256-gcm") -> bytes:
    der = enveloped.encrypt(entity, recipients, cipher)
    smime_type = "authEnveloped-data" if cipher == "aes256-gcm" else "enveloped-data"
    return mime.pkcs7_mime(der, smime_type)


def encrypt_message(message: bytes, recipients: Sequence[x509.Certificate],
                    cipher: Cipher_ = "aes256-gcm") -> bytes:
    outer, entity = mime.entity_of(mime.canonical(message))
    return mime.join(outer, encrypt_entity(entity, recipients, cipher))


_TYPES = {der.oid("1.2.840.113549.1.7.2"): "signed_data",
          der.oid("1.2.840.113549.1.7.3"): "enveloped_data",
          der.oid("1.2.840.113549.1.9.16.1.23"): "authenticated_enveloped_data"}


def _cms_type(encoded: bytes) -> str:
    """The content type of a ContentInfo, read from its first bytes (DER or BER)."""
    try:
        tag, start, _ = der.read(encoded, 0, len(encoded))
        oid_tag, _, oid_end = der.read(encoded, start, len(encoded))
        if tag == der.SEQUENCE and oid_tag == 0x06:
            return _TYPES.get(encoded[start:oid_end], "other")
    except der.DerError:
        pass  # indefinite length (BER): ask asn1crypto
    return str(cms.ContentInfo.load(encoded)["content_type"].native)


def _pkcs7_der(head: bytes, body: bytes) -> bytes:
    return mime.decode_body(head, body)


def decrypt_entity(entity: bytes, identities: Sequence[Identity]) -> DecryptResult:
    """Decrypt an application/pkcs7-mime entity (any result, never an exception)."""
    if len(entity) > MAX_MESSAGE:
        return DecryptResult(DecryptStatus.MALFORMED, "message too large")
    head, body = mime.split(entity)
    return decrypt_parts(head, body, identities)


def decrypt_parts(head: bytes, body: bytes, identities: Sequence[Identity]) -> DecryptResult:
    """``decrypt_entity`` of the entity ``head`` CRLF ``body``, without joining them."""
    try:
        if len(head) + 2 + len(body) > MAX_MESSAGE:
            return DecryptResult(DecryptStatus.MALFORMED, "message too large")
        kind, _ = mime.content_type(head)
        if kind not in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            return DecryptResult(DecryptStatus.NOT_ENCRYPTED, f"the message is {kind}")
        der = _pkcs7_der(head, body)
        # The common shapes first: a result from them says the CMS type is an encrypted one.
        result = enveloped.decrypt_common(der, identities)
        if result is None:
            if _cms_type(der) not in _ENCRYPTED:
                return DecryptResult(DecryptStatus.NOT_ENCRYPTED, "pkcs7-mime holds no "
                                                                  "encrypted data")
            result = enveloped.decrypt_general(der, identities)
        if result.content is not None:
            content = mime.canonical(result.content)
            if content is not result.content:  # canonical() returns canonical bytes as given
                result = DecryptResult(result.status, result.reason, content, result.algorithm)
        return result
    except Exception as error:  # malformed framing from the network
        return DecryptResult(DecryptStatus.MALFORMED, f"malformed S/MIME entity: "
                                                      f"{type(error).__name__}: {error}")


def decrypt_message(message: bytes, identities: Sequence[Identity]) -> DecryptResult:
    return decrypt_entity(mime.canonical_head(message), identities)


def _with_domains(result: VerifyResult, encoded: bytes) -> VerifyResult:
    """A signer certificate without rfc822Name may be domain-bound (Direct Project
    Applicability Statement §4.1): read its dNSNames from the certificates the
    SignedData carries."""
    signer = result.signer
    if not result.ok or signer is None or signer.addresses:
        return result
    key = (signer.issuer, signer.serial)  # RFC 5280 §4.1.2.2: unique per issuer
    domains = _DOMAINS.get(key)
    if domains is None:
        try:
            certificates = pkcs7.load_der_pkcs7_certificates(encoded)
        except ValueError:
            return result
        for certificate in certificates:
            if certificate.serial_number == signer.serial \
                    and certificate.issuer.rfc4514_string() == signer.issuer:
                try:
                    names = certificate.extensions.get_extension_for_class(
                        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
                except x509.ExtensionNotFound:
                    names = []
                domains = tuple(str(n).lower() for n in names)
                break
        else:
            return result
        if len(_DOMAINS) > 4096:
            _DOMAINS.clear()
        _DOMAINS[key] = domains
    return VerifyResult(result.status, result.reason,
                        dataclasses.replace(signer, domains=domains), result.content)


# dNSNames of domain-bound signer certificates by (issuer, serial): a verified
# signature proved the certificate is the one its issuer signed.
_DOMAINS: dict[tuple[str, int], tuple[str, ...]] = {}


def _signer_matches(result: VerifyResult, from_addresses: Sequence[str]) -> VerifyResult:
    if not result.ok or result.signer is None:
        return result
    if not from_addresses:
        return VerifyResult(Status.POLICY, "the message has no From address to match the "
                                           "signer", result.signer, result.content)
    if not result.signer.speaks_for(from_addresses):
        names = {a.lower() for a in result.signer.addresses} | set(result.signer.domains)
        return VerifyResult(
            Status.POLICY,
            f"signer {', '.join(sorted(names)) or '(no address)'} is not the From address "
            f"{', '.join(from_addresses)}", result.signer, result.content)
    return result


def verify_entity(entity: bytes, trust: TrustStore, from_addresses: Sequence[str], *,
                  at: dt.datetime | None = None) -> VerifyResult:
    """Verify a signed entity (multipart/signed or pkcs7-mime signed-data) whose signer
    must be one of ``from_addresses``. ``content`` of the result is the signed entity."""
    try:
        if len(entity) > MAX_MESSAGE:
            return VerifyResult(Status.PERMERROR, "message too large")
        head, body_start = mime.split_at(entity)
        kind, parameters = mime.content_type(head)
        if kind == "multipart/signed":
            protocol = parameters.get("protocol", "").lower()
            if protocol not in ("application/pkcs7-signature", "application/x-pkcs7-signature"):
                return VerifyResult(Status.NONE, f"multipart/signed with protocol {protocol!r} "
                                                 "is not S/MIME")
            content, signature_head, signature_body = mime.multipart_signed_parts(
                entity, body_start, parameters)
            der = mime.decode_body(signature_head, signature_body)
            result = _with_domains(signed.verify(der, content, trust, at=at), der)
        elif kind in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            der = _pkcs7_der(head, entity[body_start:])
            if _cms_type(der) != "signed_data":
                return VerifyResult(Status.NONE, "pkcs7-mime holds no signed data")
            result = _with_domains(signed.verify(der, None, trust, at=at), der)
            if result.content is not None:
                result = VerifyResult(result.status, result.reason, result.signer,
                                      mime.canonical(result.content))
        else:
            return VerifyResult(Status.NONE, "the message is not signed")
        return _signer_matches(result, from_addresses)
    except Exception as error:  # malformed framing from the network
        return VerifyResult(Status.PERMERROR, f"malformed S/MIME message: "
                                              f"{type(error).__name__}: {str(error)[:120]}")


def verify_message(message: bytes, trust: TrustStore, *,
                   at: dt.datetime | None = None) -> VerifyResult:
    """Verify a signed message; the signer must be its From address."""
    try:
        canonical = mime.canonical(message)
        head, _ = mime.split(canonical)
        from_addresses = mime.addresses(head, "from")
        _, entity = mime.entity_of(canonical)
    except Exception as error:  # malformed framing from the network
        return VerifyResult(Status.PERMERROR, f"malformed message: {type(error).__name__}")
    return verify_entity(entity, trust, from_addresses, at=at)
