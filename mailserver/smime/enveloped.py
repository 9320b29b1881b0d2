"""CMS encryption: AuthEnvelopedData (RFC 5083, AES-GCM per RFC 5084) and EnvelopedData
(RFC 5652 §6, AES-CBC per RFC 3565).

Key management (RFC 8551 §2.3): RSA recipients get key transport with RSAES-OAEP SHA-256
(RFC 8017, parameters per RFC 4055); EC P-256 recipients get ephemeral-static ECDH with
the X9.63 SHA-256 KDF and AES key wrap (RFC 5753 §3.1, dhSinglePass-stdDH-sha256kdf).
Decryption also accepts RSAES-PKCS1-v1_5 key transport from older senders, with the
RFC 3218 §2.3.2 countermeasure (a random key on padding failure, so the error is the same
as for a wrong content key).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from asn1crypto import algos, cms, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from mailserver.smime import der
from mailserver.smime.results import DecryptResult, DecryptStatus
from mailserver.smime.signed import certificate_parts

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
Cipher_ = Literal["aes256-gcm", "aes256-cbc"]
MAX_RECIPIENTS = 256

ECDH_SHA256_KDF = "1.3.132.1.11.1"  # dhSinglePass-stdDH-sha256kdf-scheme (RFC 5753 §7.1.4)
# RFC 5753 §7.1.4 schemes we decrypt: standard and cofactor ECDH (the same for prime-order
# curves such as P-256) with the X9.63 KDF; openssl's default is the SHA-1 KDF, which is
# a key derivation, not a signature, and stays acceptable.
_ECDH_KDF_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.133.16.840.63.0.2": hashes.SHA1,  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.133.16.840.63.0.3": hashes.SHA1,  # dhSinglePass-cofactorDH-sha1kdf-scheme
    "1.3.132.1.11.0": hashes.SHA224, "1.3.132.1.14.0": hashes.SHA224,
    "1.3.132.1.11.1": hashes.SHA256, "1.3.132.1.14.1": hashes.SHA256,
    "1.3.132.1.11.2": hashes.SHA384, "1.3.132.1.14.2": hashes.SHA384,
    "1.3.132.1.11.3": hashes.SHA512, "1.3.132.1.14.3": hashes.SHA512,
}
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
_OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
_OID_AES256_GCM = "2.16.840.1.101.3.4.1.46"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
_WRAP_KEY_SIZES = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}
_CBC_KEY_SIZES = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32}
_GCM_KEY_SIZES = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}


class GcmParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 §3.2: GCMParameters."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class EccCmsSharedInfo(core.Sequence):  # type: ignore[misc]
    """RFC 5753 §7.2: ECC-CMS-SharedInfo, input to the KDF."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("key_info", algos.EncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


_OAEP_SHA256_PADDING = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                    algorithm=hashes.SHA256(), label=None)


def _oaep_sha256() -> padding.OAEP:
    return _OAEP_SHA256_PADDING  # immutable: one object serves every call


def _issuer_and_serial(certificate: x509.Certificate) -> cms.IssuerAndSerialNumber:
    asn1_cert = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    return cms.IssuerAndSerialNumber({"issuer": asn1_cert.issuer,
                                      "serial_number": asn1_cert.serial_number})


_OAEP_SHA256 = der.algorithm("1.2.840.113549.1.1.7", algos.RSAESOAEPParams({
    "hash_algorithm": {"algorithm": "sha256"},
    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
}).dump())  # RFC 4055 §4.1 / RFC 8017 A.2.1


def _ktri(certificate: x509.Certificate, public_key: rsa.RSAPublicKey,
          content_key: bytes) -> bytes:
    """KeyTransRecipientInfo v0, RSAES-OAEP SHA-256 (RFC 5652 §6.2.1, RFC 8551 §2.3)."""
    return der.sequence(
        der.integer(0),
        certificate_parts(certificate)[1],
        _OAEP_SHA256,
        der.octet_string(public_key.encrypt(content_key, _oaep_sha256())),
    )


def _x963_kek(shared_secret: bytes, wrap_algorithm: bytes, ukm: bytes | None,
              hash_type: type[hashes.HashAlgorithm], size: int) -> bytes:
    shared_info: dict[str, object] = {
        "key_info": algos.EncryptionAlgorithm.load(wrap_algorithm),
        "supp_pub_info": (size * 8).to_bytes(4, "big"),
    }
    if ukm is not None:
        shared_info["entity_u_info"] = ukm
    info = EccCmsSharedInfo(shared_info).dump()
    return X963KDF(algorithm=hash_type(), length=size, sharedinfo=info).derive(shared_secret)


def _kari(certificate: x509.Certificate, public_key: ec.EllipticCurvePublicKey,
          content_key: bytes) -> bytes:
    ephemeral = ec.generate_private_key(public_key.curve)
    shared = ephemeral.exchange(ec.ECDH(), public_key)
    wrap = algos.EncryptionAlgorithm({"algorithm": "aes256_wrap"}).dump()
    kek = _x963_kek(shared, wrap, None, hashes.SHA256, 32)
    originator = keys.PublicKeyInfo.load(ephemeral.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    info = cms.RecipientInfo({"kari": cms.KeyAgreeRecipientInfo({
        "version": "v3",
        "originator": cms.OriginatorIdentifierOrKey({"originator_key": originator}),
        "key_encryption_algorithm": cms.KeyEncryptionAlgorithm({
            "algorithm": ECDH_SHA256_KDF,
            "parameters": core.Any.load(wrap),
        }),
        "recipient_encrypted_keys": [{
            "rid": cms.KeyAgreementRecipientIdentifier({
                "issuer_and_serial_number": _issuer_and_serial(certificate)}),
            "encrypted_key": aes_key_wrap(kek, content_key),
        }],
    })})
    return bytes(info.dump())


def encrypt(content: bytes, recipients: Sequence[x509.Certificate],
            cipher: Cipher_ = "aes256-gcm") -> bytes:
    """DER ContentInfo: AuthEnvelopedData (AES-256-GCM, the default, RFC 8551 §2.7) or
    EnvelopedData (AES-256-CBC) for ``recipients``."""
    if not recipients:
        raise ValueError("no recipient certificate to encrypt to")
    content_key = os.urandom(32)
    infos: list[bytes] = []
    has_kari = False
    for certificate in recipients:
        public_key = certificate.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            infos.append(_ktri(certificate, public_key, content_key))
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            infos.append(_kari(certificate, public_key, content_key))
            has_kari = True
        else:
            raise ValueError(f"cannot encrypt to a {type(public_key).__name__} key")
    if cipher == "aes256-gcm":
        nonce = os.urandom(12)
        return _auth_enveloped(infos, nonce, AESGCM(content_key).encrypt(nonce, content, None))
    if cipher == "aes256-cbc":
        iv = os.urandom(16)
        padder = symmetric_padding.PKCS7(128).padder()
        padded = padder.update(content) + padder.finalize()
        encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        body = der.sequence(
            der.integer(2 if has_kari else 0),  # RFC 5652 §6.1
            der.set_of(*infos),
            der.sequence(der.oid(_OID_DATA),
                         der.algorithm(_OID_AES256_CBC, der.octet_string(iv)),  # RFC 3565
                         der.context(0, ciphertext, constructed=False)),
        )
        return der.sequence(der.oid(_OID_ENVELOPED_DATA), der.context(0, body))
    raise ValueError(f"unknown content encryption {cipher!r}")


_AES256_GCM_HEAD = der.oid(_OID_DATA) + der.sequence(der.oid(_OID_AES256_GCM), der.sequence(
    der.octet_string(bytes(12)), der.integer(16)))[:-len(der.integer(16)) - 12]
_VERSION_0 = der.integer(0)  # RFC 5083 §2.1: always 0
_TOP_AUTH_ENVELOPED = der.oid("1.2.840.113549.1.9.16.1.23")


def _auth_enveloped(infos: Sequence[bytes], nonce: bytes, sealed: bytes) -> bytes:
    """ContentInfo(AuthEnvelopedData) (RFC 5083 §2.1) around AES-GCM output (ciphertext
    then 16-byte tag), aes256-GCM parameters nonce and ICV 16 (RFC 5084 §3.2): the
    headers computed from the sizes, so the ciphertext is copied once."""
    size = len(sealed) - 16
    recipients = der.set_of(*infos)
    content_info = b"".join((_AES256_GCM_HEAD, nonce, _ICV_16, der.header(0x80, size)))
    content_info = der.header(der.SEQUENCE, len(content_info) + size) + content_info
    mac = der.octet_string(sealed[size:])
    body_size = len(_VERSION_0) + len(recipients) + len(content_info) + size + len(mac)
    body_head = der.header(der.SEQUENCE, body_size)
    inner_size = len(body_head) + body_size
    inner_head = der.header(0xA0, inner_size)
    top_size = len(_TOP_AUTH_ENVELOPED) + len(inner_head) + inner_size
    return b"".join((der.header(der.SEQUENCE, top_size), _TOP_AUTH_ENVELOPED, inner_head,
                     body_head, _VERSION_0, recipients, content_info,
                     memoryview(sealed)[:size], mac))


# -- decryption ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    """One of our certificates with its private key."""

    certificate: x509.Certificate
    key: PrivateKey


class _Failed(Exception):
    def __init__(self, status: DecryptStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _matches(rid: cms.RecipientIdentifier | cms.KeyAgreementRecipientIdentifier,
             certificate: x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        return bool(rid.chosen.dump() == certificate_parts(certificate)[1])
    if rid.name in ("subject_key_identifier", "r_key_id"):
        wanted = rid.chosen.native if rid.name == "subject_key_identifier" \
            else rid.chosen["subject_key_identifier"].native
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return False
        return bool(ski.value.digest == wanted)
    return False


def _unwrap_ktri(info: cms.KeyTransRecipientInfo, key: rsa.RSAPrivateKey,
                 key_size: int) -> bytes:
    algorithm = info["key_encryption_algorithm"]
    name = algorithm["algorithm"].native
    encrypted_key = info["encrypted_key"].native
    if name == "rsaes_oaep":
        params = algorithm["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        hash_types: dict[str, type[hashes.HashAlgorithm]] = {
            "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
            "sha512": hashes.SHA512,
        }
        if hash_name not in hash_types or mgf_hash not in hash_types:
            raise _Failed(DecryptStatus.FAILED, f"unsupported RSA-OAEP hash {hash_name}")
        try:
            return key.decrypt(encrypted_key, padding.OAEP(
                mgf=padding.MGF1(hash_types[mgf_hash]()), algorithm=hash_types[hash_name](),
                label=None))
        except ValueError as error:
            raise _Failed(DecryptStatus.FAILED, "the content key cannot be decrypted with "
                                                "our key") from error
    if name == "rsaes_pkcs1v15":
        # RFC 3218 §2.3.2: never reveal a padding failure; continue with a random key.
        try:
            content_key = key.decrypt(encrypted_key, padding.PKCS1v15())
        except ValueError:
            content_key = b""
        if len(content_key) != key_size:
            content_key = os.urandom(key_size)
        return content_key
    raise _Failed(DecryptStatus.FAILED, f"unsupported key transport {name}")


def _unwrap_kari(info: cms.KeyAgreeRecipientInfo, encrypted_key: bytes,
                 key: ec.EllipticCurvePrivateKey) -> bytes:
    algorithm = info["key_encryption_algorithm"]
    kdf = algorithm["algorithm"].dotted
    if kdf not in _ECDH_KDF_HASH:
        raise _Failed(DecryptStatus.FAILED, f"unsupported key agreement {kdf}")
    wrap_der = algorithm["parameters"].dump()
    wrap_name = algos.EncryptionAlgorithm.load(wrap_der)["algorithm"].native
    if wrap_name not in _WRAP_KEY_SIZES:
        raise _Failed(DecryptStatus.FAILED, f"unsupported key wrap {wrap_name}")
    originator = info["originator"]
    if originator.name != "originator_key":
        raise _Failed(DecryptStatus.FAILED, "key agreement without an ephemeral originator key")
    point = originator.chosen["public_key"].native
    ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
    shared = key.exchange(ec.ECDH(), ephemeral)
    ukm = info["ukm"].native if info["ukm"].native is not None else None
    kek = _x963_kek(shared, wrap_der, ukm, _ECDH_KDF_HASH[kdf], _WRAP_KEY_SIZES[wrap_name])
    try:
        return aes_key_unwrap(kek, encrypted_key)
    except InvalidUnwrap as error:
        raise _Failed(DecryptStatus.FAILED, "the content key cannot be unwrapped with our "
                                            "key") from error


def _content_key(recipient_infos: cms.RecipientInfos, identities: Sequence[Identity],
                 key_size: int) -> tuple[bytes, Identity]:
    infos = list(recipient_infos)
    if len(infos) > MAX_RECIPIENTS:
        raise _Failed(DecryptStatus.MALFORMED, "too many recipients")
    for info in infos:
        for identity in identities:
            if info.name == "ktri" and isinstance(identity.key, rsa.RSAPrivateKey):
                if _matches(info.chosen["rid"], identity.certificate):
                    return _unwrap_ktri(info.chosen, identity.key, key_size), identity
            elif info.name == "kari" and isinstance(identity.key, ec.EllipticCurvePrivateKey):
                for recipient in info.chosen["recipient_encrypted_keys"]:
                    if _matches(recipient["rid"], identity.certificate):
                        return (_unwrap_kari(info.chosen, recipient["encrypted_key"].native,
                                             identity.key), identity)
    raise _Failed(DecryptStatus.NOT_FOR_US, "the message is not encrypted to any of our "
                                            "certificates")


def _ciphertext(encrypted_content_info: cms.EncryptedContentInfo) -> bytes:
    value = encrypted_content_info["encrypted_content"]
    native = value.native
    if not isinstance(native, bytes):
        raise _Failed(DecryptStatus.MALFORMED, "no encrypted content")
    return native


def _decrypt_auth_enveloped(data: cms.AuthEnvelopedData,
                            identities: Sequence[Identity]) -> tuple[bytes, str]:
    info = data["auth_encrypted_content_info"]
    algorithm = info["content_encryption_algorithm"]
    name = algorithm["algorithm"].native
    if name not in _GCM_KEY_SIZES:
        raise _Failed(DecryptStatus.FAILED, f"unsupported authenticated cipher {name}")
    params = GcmParameters.load(algorithm["parameters"].dump())
    nonce = params["aes_nonce"].native
    tag = data["mac"].native
    if not 12 <= len(nonce) <= 16 or len(tag) != params["aes_icvlen"].native \
            or not 12 <= len(tag) <= 16:
        raise _Failed(DecryptStatus.MALFORMED, "bad AES-GCM nonce or tag length")
    content_key, _ = _content_key(data["recipient_infos"], identities, _GCM_KEY_SIZES[name])
    # RFC 5083 §2.2: authenticated attributes, when present, are the additional data.
    auth_attrs = data["auth_attrs"]
    aad = b"\x31" + auth_attrs.dump()[1:] if auth_attrs.native is not None else None
    decryptor = Cipher(algorithms.AES(content_key), modes.GCM(nonce, tag,
                                                              min_tag_length=len(tag))).decryptor()
    if aad:
        decryptor.authenticate_additional_data(aad)
    try:
        plain = decryptor.update(_ciphertext(info)) + decryptor.finalize()
    except (InvalidTag, ValueError) as error:
        raise _Failed(DecryptStatus.FAILED, "authentication tag mismatch: the encrypted "
                      "part was altered, swapped or is not for this key") from error
    return plain, f"AuthEnvelopedData {name}"


def _decrypt_enveloped(data: cms.EnvelopedData,
                       identities: Sequence[Identity]) -> tuple[bytes, str]:
    info = data["encrypted_content_info"]
    algorithm = info["content_encryption_algorithm"]
    name = algorithm["algorithm"].native
    if name not in _CBC_KEY_SIZES:
        raise _Failed(DecryptStatus.FAILED, f"unsupported cipher {name} (AES-CBC only)")
    iv = algorithm["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != 16:
        raise _Failed(DecryptStatus.MALFORMED, "bad AES-CBC IV")
    content_key, _ = _content_key(data["recipient_infos"], identities, _CBC_KEY_SIZES[name])
    ciphertext = _ciphertext(info)
    if not ciphertext or len(ciphertext) % 16:
        raise _Failed(DecryptStatus.MALFORMED, "AES-CBC ciphertext is not whole blocks")
    return _aes_cbc_decrypt(content_key, iv, ciphertext), f"EnvelopedData {name}"


def _aes_cbc_decrypt(content_key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """AES-CBC then PKCS#7 unpadding (RFC 5652 §6.3); whole blocks checked by callers."""
    decryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = symmetric_padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as error:
        raise _Failed(DecryptStatus.FAILED, "decryption failed (wrong key or altered "
                                            "content)") from error


_FAST_GCM = {der.oid("2.16.840.1.101.3.4.1.46"): "aes256_gcm",
             der.oid("2.16.840.1.101.3.4.1.6"): "aes128_gcm"}
_FAST_CBC = {der.oid("2.16.840.1.101.3.4.1.42"): "aes256_cbc",
             der.oid("2.16.840.1.101.3.4.1.2"): "aes128_cbc"}
_KEY_SIZES = {**_GCM_KEY_SIZES, **_CBC_KEY_SIZES}
_ICV_16 = der.integer(16)
_KTRI_V0 = der.integer(0)
_GCM256_ALGORITHM_HEAD = _AES256_GCM_HEAD[len(der.oid(_OID_DATA)):]  # up to the nonce
_GCM_PARAMETERS_HEAD = der.sequence(der.octet_string(bytes(12)), _ICV_16)[:-12 - len(_ICV_16)]
_FAST_DATA = der.oid(_OID_DATA)
_AUTH_ENVELOPED_OID = der.oid(_OID_AUTH_ENVELOPED_DATA)
_ENVELOPED_OID = der.oid(_OID_ENVELOPED_DATA)
_RSA_PKCS1_ALGORITHMS = (der.algorithm("1.2.840.113549.1.1.1", der.NULL),
                         der.algorithm("1.2.840.113549.1.1.1"))


# Each RSA identity's KeyTransRecipientInfo start (version 0, then its
# IssuerAndSerialNumber: RFC 5652 §6.2.1) with its key, kept per identity object as
# ``certificate_parts`` keeps its parts; None for an EC identity.
_KTRI_PREFIXES: dict[int, tuple[Identity, tuple[bytes, rsa.RSAPrivateKey] | None]] = {}
_KTRI_PREFIXES_MAX = 1024


def _ktri_prefix(identity: Identity) -> tuple[bytes, rsa.RSAPrivateKey] | None:
    entry = _KTRI_PREFIXES.get(id(identity))
    if entry is None or entry[0] is not identity:
        if len(_KTRI_PREFIXES) >= _KTRI_PREFIXES_MAX:
            _KTRI_PREFIXES.clear()
        key = identity.key
        entry = (identity, (_KTRI_V0 + certificate_parts(identity.certificate)[1], key)
                 if isinstance(key, rsa.RSAPrivateKey) else None)
        _KTRI_PREFIXES[id(identity)] = entry
    return entry[1]


def _fast_decrypt(encoded: bytes, identities: Sequence[Identity]) -> tuple[bytes, str] | None:
    """The common DER shapes (RSA key transport, AES-GCM / AES-CBC) read without building
    asn1crypto objects; ``None`` sends anything else to the general path."""
    read = der.read
    size = len(encoded)
    # RFC 5652 §3: ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
    tag, start, end = read(encoded, 0, size)
    if tag != der.SEQUENCE or end != size:
        return None
    if encoded.startswith(_AUTH_ENVELOPED_OID, start):
        kind, start = "auth", start + len(_AUTH_ENVELOPED_OID)
    elif encoded.startswith(_ENVELOPED_OID, start):
        kind, start = "env", start + len(_ENVELOPED_OID)
    else:
        return None
    tag, start, inner_end = read(encoded, start, end)
    if tag != 0xA0 or inner_end != end:
        return None
    tag, start, inner_end = read(encoded, start, end)
    if tag != der.SEQUENCE or inner_end != end:
        return None
    # RFC 5083 §2.1 AuthEnvelopedData { version, recipientInfos, authEncryptedContentInfo,
    # mac }; RFC 5652 §6.1 EnvelopedData { version, recipientInfos, encryptedContentInfo }
    # (no originatorInfo, no attributes: those go to the general path).
    fields = der.children(encoded, start, end, 4)
    if kind == "auth":
        if len(fields) != 4 or fields[3][0] != der.OCTET_STRING:
            return None
    elif len(fields) != 3:
        return None
    if fields[0][0] != der.INTEGER or fields[1][0] != der.SET or fields[2][0] != der.SEQUENCE:
        return None
    # EncryptedContentInfo { contentType, contentEncryptionAlgorithm, [0] IMPLICIT content }
    _, start, end, _ = fields[2]
    if not encoded.startswith(_FAST_DATA, start):
        return None
    start += len(_FAST_DATA)
    nonce_at = start + len(_GCM256_ALGORITHM_HEAD)
    if kind == "auth" and encoded.startswith(_GCM256_ALGORITHM_HEAD, start) \
            and encoded.startswith(_ICV_16, nonce_at + 12):
        # aes256-GCM with a 12-byte nonce and ICV 16 (RFC 5084 §3.2) as we write it: what
        # the reading below finds in these bytes, without reading them one by one.
        name = "aes256_gcm"
        algorithm_end = nonce_at + 12 + len(_ICV_16)
        parameters = encoded[nonce_at - len(_GCM_PARAMETERS_HEAD):algorithm_end]
        tag, content_start, content_end = der.read(encoded, algorithm_end, end)
        if tag != 0x80 or content_end != end:
            return None
        ciphertext_at = content_start, content_end
    else:
        content_info = der.children(encoded, start, end, 2)
        if len(content_info) != 2 or content_info[0][0] != der.SEQUENCE \
                or content_info[1][0] != 0x80:
            return None
        algorithm = der.children(encoded, content_info[0][1], content_info[0][2], 2)
        if len(algorithm) != 2:
            return None
        algorithm_oid = encoded[algorithm[0][3]:algorithm[0][2]]
        found = (_FAST_GCM if kind == "auth" else _FAST_CBC).get(algorithm_oid)
        if found is None:
            return None
        name = found
        parameters = encoded[algorithm[1][3]:algorithm[1][2]]
        ciphertext_at = content_info[1][1], content_info[1][2]
    # The content's parameters are read before any private-key operation: a shape
    # left to the general path then costs one RSA decryption there, not two.
    if kind == "auth":
        # RFC 5084 §3.2 GCMParameters: SEQUENCE { nonce OCTET STRING, ICVlen INTEGER },
        # here a 12-byte nonce and a 16-byte tag (RFC 5084 §3.1 and §3.2 defaults).
        mac = encoded[fields[3][1]:fields[3][2]]
        if len(parameters) != len(_GCM_PARAMETERS_HEAD) + 12 + len(_ICV_16) \
                or not parameters.startswith(_GCM_PARAMETERS_HEAD) \
                or not parameters.endswith(_ICV_16) or len(mac) != 16:
            return None
        iv = parameters[len(_GCM_PARAMETERS_HEAD):-len(_ICV_16)]  # the nonce
    else:  # RFC 3565 §4.1: AES-CBC parameters are the 16-byte IV
        tag, iv_start, iv_end = der.read(parameters, 0, len(parameters))
        size = ciphertext_at[1] - ciphertext_at[0]
        if tag != der.OCTET_STRING or iv_end - iv_start != 16 or not size or size % 16:
            return None
        iv = parameters[iv_start:iv_end]
    # Recipients: only v0 KeyTransRecipientInfo by issuer and serial number here.
    content_key = None
    infos = der.children(encoded, fields[1][1], fields[1][2], MAX_RECIPIENTS)
    for info in infos:
        if info[0] != der.SEQUENCE:
            return None  # another RecipientInfo choice (RFC 5652 §6.2), anywhere in the set
    ours = [prefix_and_key for identity in identities
            if (prefix_and_key := _ktri_prefix(identity)) is not None]
    for _, info_start, info_end, _ in infos:
        # KeyTransRecipientInfo { version 0, rid IssuerAndSerialNumber, keyEncryptionAlgorithm,
        # encryptedKey } (RFC 5652 §6.2.1): ours when it starts with our version and rid.
        for candidate in ours:
            if encoded.startswith(candidate[0], info_start):
                break
        else:
            ktri = der.children(encoded, info_start, info_end)
            if [f[0] for f in ktri] != [der.INTEGER, der.SEQUENCE, der.SEQUENCE,
                                        der.OCTET_STRING]:
                return None
            continue  # another recipient's
        prefix, key = candidate
        tag, start, end = der.read(encoded, info_start + len(prefix), info_end)
        if tag != der.SEQUENCE:
            return None
        key_algorithm = encoded[info_start + len(prefix):end]
        tag, start, end = der.read(encoded, end, info_end)
        if tag != der.OCTET_STRING or end != info_end:
            return None
        encrypted_key = encoded[start:end]
        if key_algorithm == _OAEP_SHA256:
            try:
                content_key = key.decrypt(encrypted_key, _oaep_sha256())
            except ValueError as error:
                raise _Failed(DecryptStatus.FAILED, "the content key cannot be decrypted "
                                                    "with our key") from error
        elif key_algorithm in _RSA_PKCS1_ALGORITHMS:
            # RFC 3218 §2.3.2: no padding oracle; a random key fails like a wrong one.
            try:
                content_key = key.decrypt(encrypted_key, padding.PKCS1v15())
            except ValueError:
                content_key = b""
            if len(content_key) != _KEY_SIZES[name]:
                content_key = os.urandom(_KEY_SIZES[name])
        else:
            return None
        break
    if content_key is None:
        return None  # the general path says "not for us" (or finds a key agreement)
    if len(content_key) != _KEY_SIZES[name]:
        raise _Failed(DecryptStatus.FAILED, "the content key has the wrong size")
    if kind == "auth":
        try:
            # One copy: ciphertext and tag are apart in the DER, AES-GCM wants them joined.
            sealed = b"".join((memoryview(encoded)[ciphertext_at[0]:ciphertext_at[1]], mac))
            plain = AESGCM(content_key).decrypt(iv, sealed, None)
        except InvalidTag as error:
            raise _Failed(DecryptStatus.FAILED, "authentication tag mismatch: the encrypted "
                          "part was altered, swapped or is not for this key") from error
        return plain, f"AuthEnvelopedData {name}"
    plain = _aes_cbc_decrypt(content_key, iv, encoded[ciphertext_at[0]:ciphertext_at[1]])
    return plain, f"EnvelopedData {name}"


def decrypt_common(encoded: bytes, identities: Sequence[Identity]) -> DecryptResult | None:
    """``decrypt`` of the common DER shapes (``_fast_decrypt``), or ``None`` for anything
    else. A result, failures included, says that ``encoded`` is a ContentInfo of
    AuthEnvelopedData or EnvelopedData (its first TLVs were read as such)."""
    try:
        fast = _fast_decrypt(encoded, identities)
    except der.DerError:
        return None  # BER, or malformed: the general path decides
    except _Failed as failed:
        return DecryptResult(failed.status, failed.reason)
    except Exception as error:  # hostile DER that passed the shape checks
        return _malformed(error)
    if fast is None:
        return None
    return DecryptResult(DecryptStatus.OK, "decrypted", fast[0], fast[1])


def _malformed(error: Exception) -> DecryptResult:
    return DecryptResult(DecryptStatus.MALFORMED, f"malformed CMS: {type(error).__name__}: "
                                                  f"{str(error)[:120]}")


def decrypt(encoded: bytes, identities: Sequence[Identity]) -> DecryptResult:
    """Decrypt AuthEnvelopedData or EnvelopedData with whichever identity it is for."""
    common = decrypt_common(encoded, identities)
    return common if common is not None else decrypt_general(encoded, identities)


def decrypt_general(encoded: bytes, identities: Sequence[Identity]) -> DecryptResult:
    """``decrypt`` read by asn1crypto, whatever the shape (BER included)."""
    try:
        info = cms.ContentInfo.load(encoded, strict=True)
        content_type = info["content_type"].native
        if content_type == "authenticated_enveloped_data":
            plain, algorithm = _decrypt_auth_enveloped(info["content"], identities)
        elif content_type == "enveloped_data":
            plain, algorithm = _decrypt_enveloped(info["content"], identities)
        else:
            return DecryptResult(DecryptStatus.NOT_ENCRYPTED,
                                 f"CMS content type {content_type} is not encrypted")
        return DecryptResult(DecryptStatus.OK, "decrypted", plain, algorithm)
    except _Failed as failed:
        return DecryptResult(failed.status, failed.reason)
    except Exception as error:  # hostile or malformed DER
        return _malformed(error)
