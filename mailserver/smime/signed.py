"""CMS SignedData (RFC 5652 §5) with the S/MIME profile (RFC 8551 §2.5).

``sign`` produces a SignedData with SHA-256, signed attributes (contentType, signingTime,
messageDigest, smimeCapabilities), the signer's certificate and its chain; RSA PKCS#1 v1.5
or ECDSA. ``verify`` checks a detached or encapsulated (opaque) SignedData and returns a
:class:`VerifyResult`; it never raises on hostile input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import time
import warnings
from collections.abc import Sequence

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mailserver.memo import short_values
from mailserver.smime import der
from mailserver.smime.algorithms import ECDSA, RSA_PKCS1, AlgorithmRefused, digest_for
from mailserver.smime.results import Signer, Status, VerifyResult
from mailserver.smime.trust import Purpose, TrustStore, ValidationError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
MAX_SIGNERS = 8
MAX_CERTIFICATES = 32


_OID_DATA = "1.2.840.113549.1.7.1"
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_SHA256 = der.algorithm("2.16.840.1.101.3.4.2.1")  # RFC 5754 §2: parameters absent
_RSA_PKCS1 = der.algorithm("1.2.840.113549.1.1.1", der.NULL)  # rsaEncryption, RFC 3370 §3.2
_ECDSA_SHA256 = der.algorithm("1.2.840.10045.4.3.2")  # RFC 5758 §3.2
_CONTENT_TYPE_DATA = der.sequence(der.oid("1.2.840.113549.1.9.3"),
                                  der.set_of(der.oid(_OID_DATA)))
_SIGNING_TIME = der.oid("1.2.840.113549.1.9.5")
_PKCS1 = padding.PKCS1v15()
_SHA256_HASH = hashes.SHA256()
_MESSAGE_DIGEST = der.oid("1.2.840.113549.1.9.4")


def _smime_capabilities() -> bytes:
    """RFC 8551 §2.5.2: what we can decrypt, in order of preference."""
    capabilities = der.sequence(*(der.sequence(der.oid(dotted)) for dotted in (
        "2.16.840.1.101.3.4.1.46",  # aes256-GCM
        "2.16.840.1.101.3.4.1.6",  # aes128-GCM
        "2.16.840.1.101.3.4.1.42",  # aes256-CBC
        "2.16.840.1.101.3.4.1.2",  # aes128-CBC
    )))
    return der.sequence(der.oid("1.2.840.113549.1.9.15"), der.set_of(capabilities))


_SMIME_CAPABILITIES = _smime_capabilities()


# Keyed by the object's identity: hashing a certificate (its whole DER) costs more than
# the rest of building a signature. The entry holds the certificate, so its id cannot be
# reused by another object while the entry lives.
_PARTS: dict[int, tuple[x509.Certificate, bytes, bytes]] = {}
_PARTS_MAX = 1024


def certificate_parts(certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """(DER of the certificate, DER IssuerAndSerialNumber) — RFC 5652 §10.2.4."""
    entry = _PARTS.get(id(certificate))
    if entry is None or entry[0] is not certificate:
        if len(_PARTS) >= _PARTS_MAX:
            _PARTS.clear()
        entry = (certificate, certificate.public_bytes(serialization.Encoding.DER),
                 der.sequence(certificate.issuer.public_bytes(),
                              der.integer(certificate.serial_number)))
        _PARTS[id(certificate)] = entry
    return entry[1], entry[2]


def _signing_time(when: dt.datetime) -> bytes:
    # RFC 5652 §11.3: UTCTime for 1950-2049, GeneralizedTime otherwise.
    utc = when.astimezone(dt.UTC)
    if 1950 <= utc.year < 2050:
        value = der.tlv(0x17, utc.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    else:
        value = der.tlv(0x18, utc.strftime("%Y%m%d%H%M%SZ").encode("ascii"))
    return der.sequence(_SIGNING_TIME, der.set_of(value))


_now_attribute: tuple[int, bytes] = (-1, b"")


def _signing_time_now() -> bytes:
    """The signingTime attribute for now, made once per second (it has one-second
    resolution)."""
    global _now_attribute
    now = time.time()
    second = int(now)
    if _now_attribute[0] != second:
        _now_attribute = (second, _signing_time(dt.datetime.fromtimestamp(second, dt.UTC)))
    return _now_attribute[1]


# The parts of a SignedData that depend only on the signer and chain, built once:
# (signer certificate, chain, SignerInfo prefix, [0] CertificateSet). Keyed by the
# objects' identities (their hash costs a DER hash); the entry holds them, so an id
# cannot be reused while it lives.
_TEMPLATES: dict[tuple[int, ...], tuple[x509.Certificate, tuple[x509.Certificate, ...],
                                         bytes, bytes]] = {}
_VERSION_AND_DIGESTS = der.integer(1) + der.set_of(_SHA256)
_DETACHED = der.sequence(der.oid(_OID_DATA))


def _template(certificate: x509.Certificate,
              chain: Sequence[x509.Certificate]) -> tuple[bytes, bytes]:
    key = (id(certificate), *map(id, chain))
    entry = _TEMPLATES.get(key)
    if entry is None or entry[0] is not certificate or any(
            a is not b for a, b in zip(entry[1], chain, strict=True)):
        if len(_TEMPLATES) >= _PARTS_MAX:
            _TEMPLATES.clear()
        certificate_der, issuer_and_serial = certificate_parts(certificate)
        certificates = sorted([certificate_der, *(certificate_parts(c)[0] for c in chain)])
        entry = (certificate, tuple(chain),
                 der.integer(1) + issuer_and_serial + _SHA256,
                 der.context(0, b"".join(certificates)))  # [0] IMPLICIT CertificateSet
        _TEMPLATES[key] = entry
    return entry[2], entry[3]


def sign(
    content: bytes, certificate: x509.Certificate, key: PrivateKey,
    chain: Sequence[x509.Certificate] = (), *, detached: bool = True,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """DER ContentInfo(SignedData) over ``content`` (the canonical MIME entity), with
    signed attributes contentType, signingTime, messageDigest, smimeCapabilities."""
    attributes = (
        _CONTENT_TYPE_DATA,
        _signing_time(signing_time) if signing_time is not None else _signing_time_now(),
        der.sequence(_MESSAGE_DIGEST, der.set_of(der.octet_string(
            hashlib.sha256(content).digest()))),
        _SMIME_CAPABILITIES,
    )
    signed_attributes = der.set_of(*attributes)  # RFC 5652 §5.4: signed as a SET OF
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signed_attributes, _PKCS1, _SHA256_HASH)
        signature_algorithm = _RSA_PKCS1
    else:
        signature = key.sign(signed_attributes, ec.ECDSA(hashes.SHA256()))
        signature_algorithm = _ECDSA_SHA256
    signer_prefix, certificate_set = _template(certificate, chain)
    signer_info = der.sequence(
        signer_prefix,  # version 1, IssuerAndSerialNumber, SHA-256
        b"\xa0" + signed_attributes[1:],  # [0] IMPLICIT SET OF Attribute
        signature_algorithm,
        der.octet_string(signature),
    )
    encapsulated = _DETACHED if detached else der.sequence(
        der.oid(_OID_DATA), der.context(0, der.octet_string(content)))
    signed_data = der.sequence(
        _VERSION_AND_DIGESTS,
        encapsulated,
        certificate_set,
        der.set_of(signer_info),
    )
    return der.sequence(der.oid(_OID_SIGNED_DATA), der.context(0, signed_data))


# -- verification ----------------------------------------------------------------------------

class _Invalid(Exception):
    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        # Set when the signer's certificate was found: the result names it, with the
        # content, as the general path's result does.
        self.found: tuple[Signer, bytes] | None = None


_SIGNERS: dict[int, tuple[x509.Certificate, Signer]] = {}


def _signer_of(certificate: x509.Certificate) -> Signer:
    """The signer's names, kept per certificate object (as ``certificate_parts``)."""
    entry = _SIGNERS.get(id(certificate))
    if entry is None or entry[0] is not certificate:
        if len(_SIGNERS) >= _PARTS_MAX:
            _SIGNERS.clear()
        entry = (certificate, _read_signer(certificate))
        _SIGNERS[id(certificate)] = entry
    return entry[1]


def _read_signer(certificate: x509.Certificate) -> Signer:
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
        signed_bytes = der.tlv(der.SET, signed_attrs.contents)  # RFC 5652 §5.4
    else:
        signed_bytes = content
    _check_signature(certificate.public_key(), signer_info["signature"].native, signed_bytes,
                     signer_info["signature_algorithm"], str(digest_name))
    return _trusted(certificate, [c for _, c in certificates], trust, at, purpose, signer,
                    content)


def _trusted(certificate: x509.Certificate, certificates: Sequence[x509.Certificate],
             trust: TrustStore, at: dt.datetime, purpose: Purpose, signer: Signer,
             content: bytes) -> VerifyResult:
    try:
        path = trust.validate(certificate, certificates, purpose, at)
    except ValidationError as error:
        raise _Invalid(Status.POLICY if error.policy else Status.FAIL, error.reason) from error
    reason = "signature valid"
    if path.notes:
        reason += "; " + "; ".join(path.notes)
    return VerifyResult(Status.PASS, reason, signer, content)


_FAST_SIGNED_DATA = der.oid(_OID_SIGNED_DATA)
_FAST_DATA = der.oid(_OID_DATA)
_FAST_SHA256 = (_SHA256, der.algorithm("2.16.840.1.101.3.4.2.1", der.NULL))
_FAST_RSA = (_RSA_PKCS1, der.algorithm("1.2.840.113549.1.1.1"),
             der.algorithm("1.2.840.113549.1.1.11", der.NULL),
             der.algorithm("1.2.840.113549.1.1.11"))
_FAST_CONTENT_TYPE = der.oid("1.2.840.113549.1.9.3")
_FAST_SIGNATURES = frozenset((*_FAST_RSA, _ECDSA_SHA256))
_ECDSA_WITH_SHA256 = ec.ECDSA(hashes.SHA256())


# Memos of a sender's recurring DER, for encodings of a plausible size only: a hostile
# sender's large ones are read each time, never kept (mailserver/memo.py).
@short_values(max_len=16 * 1024, maxsize=1024)
def _load_certificate(encoded: bytes) -> x509.Certificate:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hostile certificates may be non-conforming
        return x509.load_der_x509_certificate(encoded)


@short_values(max_len=64 * 1024, maxsize=256)
def _certificate_set(encoded: bytes) -> tuple[tuple[x509.Certificate, bytes], ...] | None:
    """The certificates of a CertificateSet's contents with their IssuerAndSerialNumber;
    a sender sends the same set with every message, so it is read once."""
    found = []
    for tag, _, end, start in der.children(encoded, 0, len(encoded), MAX_CERTIFICATES):
        if tag != der.SEQUENCE:
            return None
        try:  # cryptography reads some fields lazily: certificate_parts may fail too
            certificate = _load_certificate(encoded[start:end])
            found.append((certificate, certificate_parts(certificate)[1]))
        except ValueError:
            return None  # the general path skips it (and may find the signer elsewhere)
    return tuple(found)


_UTC_TIME_ATTRIBUTE = der.sequence(_SIGNING_TIME, der.set_of(der.tlv(0x17, bytes(13))))[:-13]
_GENERALIZED_TIME_ATTRIBUTE = der.sequence(_SIGNING_TIME,
                                           der.set_of(der.tlv(0x18, bytes(15))))[:-15]


# MMDDHHMMSSZ after the year, each field in its range (RFC 5280 §4.1.2.5.1-2: seconds
# present, "Z"); whether the day exists in its month is left to the caller.
_TIME_IN_RANGE = re.compile(rb"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])(?:[01][0-9]|2[0-3])"
                            rb"[0-5][0-9][0-5][0-9]Z")


def _signing_time_parses(attribute: bytes) -> bool:
    """A signingTime attribute (RFC 5652 §11.3) in the form we and most senders write,
    YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ, naming a real time (what asn1crypto checks on the
    general path); any other form is for the general path."""
    if attribute.startswith(_UTC_TIME_ATTRIBUTE) and len(attribute) == len(
            _UTC_TIME_ATTRIBUTE) + 13:
        text = attribute[-13:]
        year_digits = 2
    elif attribute.startswith(_GENERALIZED_TIME_ATTRIBUTE) and len(attribute) == len(
            _GENERALIZED_TIME_ATTRIBUTE) + 15:
        text = attribute[-15:]
        year_digits = 4
    else:
        return False
    if _TIME_IN_RANGE.fullmatch(text, year_digits) is None or not text[:year_digits].isdigit():
        return False
    if text[year_digits + 2:year_digits + 4] <= b"28" and text[:year_digits] != b"0000":
        return True  # a real time: every month has 28 days, every year but 0 is one
    # Days 29 to 31, or the year 0: asked of datetime. The digits read as one number,
    # then cut two by two from the right (one int() call instead of one per field).
    rest, second = divmod(int(text[:-1]), 100)
    rest, minute = divmod(rest, 100)
    rest, hour = divmod(rest, 100)
    rest, day = divmod(rest, 100)
    year, month = divmod(rest, 100)
    if year_digits == 2:
        year += 1900 if year >= 50 else 2000  # RFC 5280 §4.1.2.5.1
    try:
        dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


@short_values(max_len=4 * 1024, maxsize=256)
def _attribute_parses(attribute: bytes) -> bool:
    """Does asn1crypto read this signed attribute (the general path reads them all)?
    Read once per distinct encoding: a sender repeats its smimeCapabilities."""
    try:
        native = cms.CMSAttribute.load(attribute, strict=True).native
    except Exception:  # whatever asn1crypto raises on hostile DER
        return False
    return native is not None


_SHA256_DIGEST_ATTRIBUTE = der.sequence(_MESSAGE_DIGEST, der.set_of(der.octet_string(
    bytes(32))))[:-32]  # SEQ { messageDigest, SET { OCTET STRING (32) } } before the digest


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """Where the parts of a SignedData of the common shape are (offsets into its DER),
    and the signer's certificate found in it."""

    certificate: x509.Certificate
    certificates: list[x509.Certificate]
    # The signer's key, by kind (known when the layout is read: no type test per message)
    rsa_key: rsa.RSAPublicKey | None  # for RSA PKCS#1 v1.5 signatures
    ec_key: ec.EllipticCurvePublicKey | None  # for ECDSA signatures
    attributes: tuple[int, int]  # the [0] signedAttrs TLV
    signing_time: tuple[int, int] | None  # the signingTime attribute TLV
    digest: int  # the 32 bytes of the messageDigest value
    signature: tuple[int, int]  # the signature value
    content: tuple[int, int] | None  # encapsulated content, None when detached


def _read_layout(encoded: bytes, detached: bool) -> _Layout | None:
    """The common DER shape (one signer, SHA-256, RSA PKCS#1 v1.5 or ECDSA, signed
    attributes) read without asn1crypto objects; ``None`` sends anything else to the
    general path. Each TLV is read once, bounded by its parent (``der.read``); a shape
    that is not exactly the expected one (trailing bytes included) goes to the general
    path, which gives the exact fault."""
    read = der.read
    size = len(encoded)
    # RFC 5652 §3: ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
    tag, start, end = read(encoded, 0, size)
    if tag != der.SEQUENCE or end != size or not encoded.startswith(_FAST_SIGNED_DATA, start):
        return None
    tag, start, inner_end = read(encoded, start + len(_FAST_SIGNED_DATA), end)
    if tag != 0xA0 or inner_end != end:
        return None
    tag, start, inner_end = read(encoded, start, end)
    if tag != der.SEQUENCE or inner_end != end:
        return None
    # RFC 5652 §5.1: SignedData ::= SEQUENCE { version, digestAlgorithms,
    #   encapContentInfo, [0] certificates, signerInfos } (no [1] crls here)
    fields = der.children(encoded, start, end, 5)
    if len(fields) != 5 or fields[0][0] != der.INTEGER or fields[1][0] != der.SET \
            or fields[2][0] != der.SEQUENCE or fields[3][0] != 0xA0 \
            or fields[4][0] != der.SET:
        return None
    _, start, end, _ = fields[2]  # EncapsulatedContentInfo (§5.2)
    if not encoded.startswith(_FAST_DATA, start):
        return None
    start += len(_FAST_DATA)
    content: tuple[int, int] | None = None
    if detached:
        if start != end:
            return None
    else:
        tag, start, inner_end = read(encoded, start, end)  # [0] EXPLICIT OCTET STRING
        if tag != 0xA0 or inner_end != end:
            return None
        tag, start, inner_end = read(encoded, start, end)
        if tag != der.OCTET_STRING or inner_end != end:
            return None
        content = start, end
    certificate_set = _certificate_set(encoded[fields[3][1]:fields[3][2]])
    if certificate_set is None:
        return None
    tag, start, end = read(encoded, fields[4][1], fields[4][2])
    if tag != der.SEQUENCE or end != fields[4][2]:
        return None  # not exactly one SignerInfo
    # RFC 5652 §5.3: SignerInfo ::= SEQUENCE { version, sid, digestAlgorithm,
    #   [0] signedAttrs, signatureAlgorithm, signature } (no [1] unsignedAttrs here)
    info = der.children(encoded, start, end, 6)
    if len(info) != 6 or info[0][0] != der.INTEGER or info[1][0] != der.SEQUENCE \
            or info[2][0] != der.SEQUENCE or info[3][0] != 0xA0 \
            or info[4][0] != der.SEQUENCE or info[5][0] != der.OCTET_STRING:
        return None
    sid = encoded[info[1][3]:info[1][2]]
    signature_algorithm = encoded[info[4][3]:info[4][2]]
    if encoded[info[2][3]:info[2][2]] not in _FAST_SHA256 \
            or signature_algorithm not in _FAST_SIGNATURES:
        return None
    found = [c for c, issuer_and_serial in certificate_set if issuer_and_serial == sid]
    if len(found) != 1:
        return None
    certificate = found[0]
    public_key = certificate.public_key()
    rsa_key = ec_key = None
    if signature_algorithm in _FAST_RSA:
        if not isinstance(public_key, rsa.RSAPublicKey):
            return None
        rsa_key = public_key
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        ec_key = public_key
    else:
        return None
    content_type = False
    digest = signing_time = None
    for attr_tag, attr_start, attr_end, attr_at in der.children(encoded, info[3][1],
                                                               info[3][2]):
        # Attribute ::= SEQUENCE { attrType OID, attrValues SET OF } (§5.3): each branch
        # checks the whole attribute (known encodings, or asn1crypto's reading).
        if attr_tag != der.SEQUENCE:
            return None
        if encoded.startswith(_FAST_CONTENT_TYPE, attr_start):
            # RFC 5652 §11.1: exactly one, with one value; anything but id-data (or a
            # second one) is for the general path to name.
            if content_type or encoded[attr_at:attr_end] != _CONTENT_TYPE_DATA:
                return None
            content_type = True
        elif encoded.startswith(_MESSAGE_DIGEST, attr_start):
            # RFC 5652 §11.2: exactly one, one OCTET STRING value (32 bytes for SHA-256)
            if digest is not None or attr_end - attr_at != len(_SHA256_DIGEST_ATTRIBUTE) + 32 \
                    or not encoded.startswith(_SHA256_DIGEST_ATTRIBUTE, attr_at):
                return None
            digest = attr_end - 32
        elif encoded.startswith(_SIGNING_TIME, attr_start):
            if signing_time is not None or not _signing_time_parses(encoded[attr_at:attr_end]):
                return None
            signing_time = attr_at, attr_end
        elif not _attribute_parses(encoded[attr_at:attr_end]):
            return None  # the general path reads every attribute (asn1crypto's .native)
    if not content_type or digest is None:
        return None  # RFC 5652 §5.3: both required; the general path reports the fault
    return _Layout(certificate, [c for c, _ in certificate_set], rsa_key, ec_key,
                   (info[3][3], info[3][2]),
                   signing_time, digest, (info[5][1], info[5][2]), content)


# Layouts of the detached SignedData of recent signers, by length: a signer's SignedData
# differs from one message to the next only in the signing time, the digest and the
# signature (same certificates, names, algorithms and lengths). A layout is used for a new
# message only when every other byte is the same as in the message it was read from, so
# reading the new one would give the same layout; the varying parts are checked anew.
_LAYOUTS: dict[int, list[tuple[tuple[tuple[int, bytes], ...], _Layout]]] = {}
_LAYOUTS_MAX = 256
_LAYOUTS_PER_SIZE = 4


def _remember_layout(encoded: bytes, layout: _Layout) -> None:
    holes = sorted([(layout.digest, layout.digest + 32), layout.signature,
                    *([layout.signing_time] if layout.signing_time else [])])
    fixed: list[tuple[int, bytes]] = []
    position = 0
    for hole_start, hole_end in holes:
        fixed.append((position, encoded[position:hole_start]))
        position = hole_end
    fixed.append((position, encoded[position:]))
    if len(_LAYOUTS) >= _LAYOUTS_MAX:
        _LAYOUTS.clear()
    same_size = _LAYOUTS.setdefault(len(encoded), [])
    if len(same_size) >= _LAYOUTS_PER_SIZE:
        del same_size[0]
    same_size.append((tuple(fixed), layout))


def _known_layout(encoded: bytes) -> _Layout | None:
    for fixed, layout in _LAYOUTS.get(len(encoded), ()):
        for position, part in fixed:
            if not encoded.startswith(part, position):
                break
        else:
            if layout.signing_time is None \
                    or _signing_time_parses(encoded[layout.signing_time[0]:
                                                    layout.signing_time[1]]):
                return layout
            return None  # read it again: the general path names the fault
    return None


def _fast_verify(encoded: bytes, detached_content: bytes | None, trust: TrustStore,
                 at: dt.datetime, purpose: Purpose) -> VerifyResult | None:
    """Verify a SignedData of the common shape (``_read_layout``), or ``None`` for the
    general path."""
    layout = _known_layout(encoded) if detached_content is not None else None
    if layout is None:
        layout = _read_layout(encoded, detached_content is not None)
        if layout is None:
            return None
        if detached_content is not None:
            _remember_layout(encoded, layout)
    if detached_content is not None:
        content = detached_content
    else:
        assert layout.content is not None
        content = encoded[layout.content[0]:layout.content[1]]
    certificate = layout.certificate
    signer = _signer_of(certificate)
    try:
        return _check_layout(encoded, layout, content, trust, at, purpose, signer)
    except _Invalid as invalid:
        invalid.found = signer, content
        raise


def _check_layout(encoded: bytes, layout: _Layout, content: bytes, trust: TrustStore,
                  at: dt.datetime, purpose: Purpose, signer: Signer) -> VerifyResult:
    """What varies from one message to the next: digest, signature, path at ``at``."""
    certificate = layout.certificate
    if encoded[layout.digest:layout.digest + 32] != hashlib.sha256(content).digest():
        raise _Invalid(Status.FAIL, "the message digest does not match: the content was "
                                    "altered after signing")
    # RFC 5652 §5.4: the signature covers the DER of the attributes with a SET OF tag.
    signed_bytes = b"\x31" + encoded[layout.attributes[0] + 1:layout.attributes[1]]
    signature = encoded[layout.signature[0]:layout.signature[1]]
    try:
        if layout.rsa_key is not None:
            layout.rsa_key.verify(signature, signed_bytes, _PKCS1, _SHA256_HASH)
        else:
            assert layout.ec_key is not None  # one of the two, by _read_layout
            layout.ec_key.verify(signature, signed_bytes, _ECDSA_WITH_SHA256)
    except InvalidSignature as error:
        raise _Invalid(Status.FAIL, "the signature does not match (content altered or "
                                    "wrong key)") from error
    return _trusted(certificate, layout.certificates, trust, at, purpose, signer, content)


def verify(encoded: bytes, detached_content: bytes | None, trust: TrustStore, *,
           at: dt.datetime | None = None, purpose: Purpose = "smime-sign") -> VerifyResult:
    """Verify a ContentInfo(SignedData): detached when ``detached_content`` is given,
    else encapsulated (opaque). Returns a result whatever the input."""
    at = at or dt.datetime.now(dt.UTC)
    try:
        try:
            fast = _fast_verify(encoded, detached_content, trust, at, purpose)
        except der.DerError:
            fast = None  # BER, or malformed: the general path decides
        if fast is not None:
            return fast
        return _verify(encoded, detached_content, trust, at, purpose)
    except _Invalid as invalid:
        if invalid.found is not None:
            return VerifyResult(invalid.status, invalid.reason, *invalid.found)
        return VerifyResult(invalid.status, invalid.reason, None, detached_content)
    except Exception as error:  # hostile or malformed DER, whatever asn1crypto raises
        return VerifyResult(Status.PERMERROR, f"malformed CMS signature: "
                                              f"{type(error).__name__}: {str(error)[:120]}")


def _verify(encoded: bytes, detached_content: bytes | None, trust: TrustStore, at: dt.datetime,
            purpose: Purpose) -> VerifyResult:
    info = cms.ContentInfo.load(encoded, strict=True)
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
            certificates.append((asn1_cert, _load_certificate(asn1_cert.dump())))
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
