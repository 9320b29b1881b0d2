"""CMS SignedData (RFC 5652 §5) with the S/MIME profile (RFC 8551 §2.5).

``sign`` produces a SignedData with SHA-256, signed attributes (contentType, signingTime,
messageDigest, smimeCapabilities), the signer's certificate and its chain; RSA PKCS#1 v1.5
or ECDSA. ``verify`` checks a detached or encapsulated (opaque) SignedData and returns a
:class:`VerifyResult`; it never raises on hostile input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mailserver.smime.algorithms import ECDSA, RSA_PKCS1, AlgorithmRefused, digest_for
from mailserver.smime.results import Signer, Status, VerifyResult
from mailserver.smime.trust import Purpose, TrustStore, ValidationError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
MAX_SIGNERS = 8
MAX_CERTIFICATES = 32


def _asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _der_set(contents: bytes) -> bytes:
    """The signed attributes re-tagged as a SET OF (RFC 5652 §5.4)."""
    length = len(contents)
    if length < 0x80:
        encoded = bytes([length])
    else:
        raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
        encoded = bytes([0x80 | len(raw)]) + raw
    return b"\x31" + encoded + contents


def smime_capabilities() -> cms.SMIMECapabilites:
    """RFC 8551 §2.5.2: what we can decrypt, in order of preference."""
    return cms.SMIMECapabilites([
        {"capability_id": "2.16.840.1.101.3.4.1.46"},  # aes256-GCM
        {"capability_id": "2.16.840.1.101.3.4.1.6"},  # aes128-GCM
        {"capability_id": "2.16.840.1.101.3.4.1.42"},  # aes256-CBC
        {"capability_id": "2.16.840.1.101.3.4.1.2"},  # aes128-CBC
    ])


def sign(
    content: bytes, certificate: x509.Certificate, key: PrivateKey,
    chain: Sequence[x509.Certificate] = (), *, detached: bool = True,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """DER ContentInfo(SignedData) over ``content`` (the canonical MIME entity)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(content)
    message_digest = digest.finalize()
    when = signing_time or dt.datetime.now(dt.UTC).replace(microsecond=0)
    signed_attrs = cms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": when})]},
        {"type": "message_digest", "values": [message_digest]},
        {"type": "smime_capabilities", "values": [smime_capabilities()]},
    ])
    to_sign = signed_attrs.dump()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        signature_algorithm = {"algorithm": "rsassa_pkcs1v15"}
    else:
        signature = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        signature_algorithm = {"algorithm": "sha256_ecdsa"}
    asn1_cert = _asn1_certificate(certificate)
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number,
        })}),
        "digest_algorithm": {"algorithm": "sha256"},
        "signed_attrs": signed_attrs,
        "signature_algorithm": signature_algorithm,
        "signature": signature,
    })
    encap: dict[str, object] = {"content_type": "data"}
    if not detached:
        encap["content"] = content
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": encap,
        "certificates": [asn1_cert, *(_asn1_certificate(c) for c in chain)],
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


# -- verification ----------------------------------------------------------------------------

class _Invalid(Exception):
    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _signer_of(certificate: x509.Certificate) -> Signer:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        addresses = tuple(str(a) for a in names.value.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        addresses = ()
    if not addresses:
        # Older certificates: emailAddress in the subject (RFC 8550 §3 still allows reading it).
        addresses = tuple(str(a.value) for a in certificate.subject.get_attributes_for_oid(
            x509.ObjectIdentifier("1.2.840.113549.1.9.1")))
    return Signer(addresses=addresses, subject=certificate.subject.rfc4514_string(),
                  issuer=certificate.issuer.rfc4514_string(), serial=certificate.serial_number)


def _find_certificate(sid: cms.SignerIdentifier,
                      certificates: list[tuple[asn1_x509.Certificate, x509.Certificate]],
                      ) -> x509.Certificate:
    if sid.name == "issuer_and_serial_number":
        wanted_issuer = sid.chosen["issuer"].dump()
        wanted_serial = sid.chosen["serial_number"].native
        for asn1_cert, certificate in certificates:
            if (asn1_cert.issuer.dump() == wanted_issuer
                    and asn1_cert.serial_number == wanted_serial):
                return certificate
    elif sid.name == "subject_key_identifier":
        wanted = sid.chosen.native
        for _, certificate in certificates:
            try:
                ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == wanted:
                return certificate
    raise _Invalid(Status.FAIL, "the signer's certificate is not in the message")


def _attribute(signed_attrs: cms.CMSAttributes, name: str) -> object:
    values = [a["values"] for a in signed_attrs if a["type"].native == name]
    # RFC 5652 §11.1-11.2: exactly one attribute with exactly one value.
    if len(values) != 1 or len(values[0]) != 1:
        raise _Invalid(Status.PERMERROR, f"signed attribute {name} must occur exactly once")
    return values[0][0]


def _check_signature(public_key: object, signature: bytes, data: bytes,
                     signature_algorithm: algos.SignedDigestAlgorithm,
                     digest_name: str) -> None:
    name = signature_algorithm["algorithm"].native
    try:
        if name in RSA_PKCS1 and isinstance(public_key, rsa.RSAPublicKey):
            implied = RSA_PKCS1[name]
            public_key.verify(signature, data, padding.PKCS1v15(),
                              digest_for(implied or digest_name))
        elif name == "rsassa_pss" and isinstance(public_key, rsa.RSAPublicKey):
            # RFC 4056: RSASSA-PSS in CMS; the parameters name hash, MGF and salt.
            params = signature_algorithm["parameters"]
            hash_name = params["hash_algorithm"]["algorithm"].native
            mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
            if params["mask_gen_algorithm"]["algorithm"].native != "mgf1":
                raise _Invalid(Status.POLICY, "RSA-PSS with a mask generation other than MGF1")
            public_key.verify(signature, data, padding.PSS(
                mgf=padding.MGF1(digest_for(mgf_hash)),
                salt_length=int(params["salt_length"].native),
            ), digest_for(hash_name))
        elif name in ECDSA and isinstance(public_key, ec.EllipticCurvePublicKey):
            implied = ECDSA[name]
            public_key.verify(signature, data, ec.ECDSA(digest_for(implied or digest_name)))
        else:
            raise _Invalid(Status.POLICY, f"signature algorithm {name} is not accepted "
                                          "for this key")
    except InvalidSignature as error:
        raise _Invalid(Status.FAIL, "the signature does not match (content altered or "
                                    "wrong key)") from error
    except AlgorithmRefused as error:
        raise _Invalid(Status.POLICY, str(error)) from error


def _octets(value: core.OctetString | core.ParsableOctetString) -> bytes:
    native = value.native
    if isinstance(native, bytes):
        return native
    return bytes(value.contents or b"")


def _verify_signer(signer_info: cms.SignerInfo, content: bytes, content_type: str,
                   certificates: list[tuple[asn1_x509.Certificate, x509.Certificate]],
                   trust: TrustStore, at: dt.datetime, purpose: Purpose) -> VerifyResult:
    certificate = _find_certificate(signer_info["sid"], certificates)
    signer = _signer_of(certificate)
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    try:
        digest_algorithm = digest_for(str(digest_name))
    except AlgorithmRefused as error:
        raise _Invalid(Status.POLICY, str(error)) from error
    hasher = hashes.Hash(digest_algorithm)
    hasher.update(content)
    content_digest = hasher.finalize()
    signed_attrs = signer_info["signed_attrs"]
    if signed_attrs.native is not None and len(signed_attrs) > 0:
        # RFC 5652 §5.3: contentType and messageDigest are then required.
        declared_type = _attribute(signed_attrs, "content_type")
        if getattr(declared_type, "native", None) != content_type:
            raise _Invalid(Status.FAIL, "the signed content-type attribute does not match")
        message_digest = _attribute(signed_attrs, "message_digest")
        if getattr(message_digest, "native", None) != content_digest:
            raise _Invalid(Status.FAIL, "the message digest does not match: the content was "
                                        "altered after signing")
        signed_bytes = _der_set(signed_attrs.contents)
    else:
        signed_bytes = content
    _check_signature(certificate.public_key(), signer_info["signature"].native, signed_bytes,
                     signer_info["signature_algorithm"], str(digest_name))
    try:
        path = trust.validate(certificate, [c for _, c in certificates], purpose, at)
    except ValidationError as error:
        raise _Invalid(Status.POLICY if error.policy else Status.FAIL, error.reason) from error
    reason = "signature valid"
    if path.notes:
        reason += "; " + "; ".join(path.notes)
    return VerifyResult(Status.PASS, reason, signer, content)


def verify(der: bytes, detached_content: bytes | None, trust: TrustStore, *,
           at: dt.datetime | None = None, purpose: Purpose = "smime-sign") -> VerifyResult:
    """Verify a ContentInfo(SignedData): detached when ``detached_content`` is given,
    else encapsulated (opaque). Returns a result whatever the input."""
    at = at or dt.datetime.now(dt.UTC)
    try:
        return _verify(der, detached_content, trust, at, purpose)
    except _Invalid as invalid:
        return VerifyResult(invalid.status, invalid.reason, None, detached_content)
    except Exception as error:  # hostile or malformed DER, whatever asn1crypto raises
        return VerifyResult(Status.PERMERROR, f"malformed CMS signature: "
                                              f"{type(error).__name__}: {str(error)[:120]}")


def _verify(der: bytes, detached_content: bytes | None, trust: TrustStore, at: dt.datetime,
            purpose: Purpose) -> VerifyResult:
    info = cms.ContentInfo.load(der, strict=True)
    if info["content_type"].native != "signed_data":
        raise _Invalid(Status.PERMERROR, f"not a signed-data CMS object "
                                         f"({info['content_type'].native})")
    signed_data = info["content"]
    encap = signed_data["encap_content_info"]
    content_type = encap["content_type"].native
    if detached_content is not None:
        if encap["content"].native is not None:
            raise _Invalid(Status.PERMERROR, "detached signature carries content too")
        content = detached_content
    else:
        if encap["content"].native is None:
            raise _Invalid(Status.PERMERROR, "signed-data without content and no detached part")
        content = _octets(encap["content"])
    raw_certificates = signed_data["certificates"]
    certificates: list[tuple[asn1_x509.Certificate, x509.Certificate]] = []
    for choice in list(raw_certificates or [])[:MAX_CERTIFICATES]:
        if choice.name != "certificate":
            continue
        asn1_cert = choice.chosen
        try:
            certificates.append((asn1_cert, x509.load_der_x509_certificate(asn1_cert.dump())))
        except ValueError:
            continue
    signer_infos = list(signed_data["signer_infos"])
    if not signer_infos:
        raise _Invalid(Status.PERMERROR, "signed-data without any signer")
    first: _Invalid | None = None
    # RFC 8551 §2.5 / RFC 5652 §5.6: one valid signature by a trusted signer suffices.
    for signer_info in signer_infos[:MAX_SIGNERS]:
        try:
            return _verify_signer(signer_info, content, str(content_type), certificates,
                                  trust, at, purpose)
        except _Invalid as invalid:
            first = first or invalid
    assert first is not None
    signer = None
    try:
        signer = _signer_of(_find_certificate(signer_infos[0]["sid"], certificates))
    except _Invalid:
        pass
    return VerifyResult(first.status, first.reason, signer, content)
