"""Which algorithms we accept (RFC 8551 §2.1-2.7), and their cryptography objects."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

MIN_RSA_BITS = 2048  # RFC 8551 §4.5: keys under 2048 bits are not to be trusted.

# RFC 8551 §2.1: SHA-256 MUST, SHA-512 SHOULD; MD5 and SHA-1 are refused.
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
WEAK_DIGESTS = frozenset({"md2", "md5", "sha1", "sha224"})

# RFC 5754 §3.2/§3.3 signature algorithm OIDs (asn1crypto names) and the digest they imply.
RSA_PKCS1 = {"rsassa_pkcs1v15": None, "sha256_rsa": "sha256", "sha384_rsa": "sha384",
             "sha512_rsa": "sha512"}
ECDSA = {"ecdsa": None, "sha256_ecdsa": "sha256", "sha384_ecdsa": "sha384",
         "sha512_ecdsa": "sha512"}

# Only P-256/384/521 (RFC 5480 §2.1.1.1 named curves) are accepted for ECDSA / ECDH.
CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


class AlgorithmRefused(Exception):
    """A cryptographic algorithm or key that our policy refuses (the message says which)."""


def digest_for(name: str) -> hashes.HashAlgorithm:
    if name in WEAK_DIGESTS:
        raise AlgorithmRefused(f"digest algorithm {name} is refused (RFC 8551 §2.1)")
    algorithm = DIGESTS.get(name)
    if algorithm is None:
        raise AlgorithmRefused(f"unsupported digest algorithm {name}")
    return algorithm()


def check_public_key(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise AlgorithmRefused(f"RSA key of {key.key_size} bits is refused "
                                   f"(at least {MIN_RSA_BITS}, RFC 8551 §4.5)")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, CURVES):
            raise AlgorithmRefused(f"elliptic curve {key.curve.name} is refused")
        return
    raise AlgorithmRefused(f"public key type {type(key).__name__} is not supported")
