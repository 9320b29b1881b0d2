"""Per-domain DKIM keys: RSA-2048 (RFC 6376 §3.3.3) or Ed25519 (RFC 8463).

A key lives in KEYS_DIR/DOMAIN.key (0600): PEM for RSA (PKCS#1, as dkimpy reads
it), the base64 32-byte seed for Ed25519 (RFC 8463 §3).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ALGORITHMS = ("rsa", "ed25519")


class DkimKeyError(ValueError):
    pass


def key_path(keys_dir: Path, domain: str) -> Path:
    domain = domain.lower().rstrip(".")
    if not domain or "/" in domain or domain.startswith("."):
        raise DkimKeyError(f"{domain!r} is not a domain")
    return keys_dir / f"{domain}.key"


def generate(keys_dir: Path, domain: str, algorithm: str = "rsa") -> str:
    """Create the key of ``domain``; return the DNS TXT record's value."""
    path = key_path(keys_dir, domain)
    if algorithm == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        data = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif algorithm == "ed25519":
        seed = ed25519.Ed25519PrivateKey.generate()
        data = base64.b64encode(seed.private_bytes_raw()) + b"\n"
        public = seed.public_key().public_bytes_raw()
    else:
        raise DkimKeyError(f"unknown algorithm {algorithm!r} (rsa or ed25519)")
    keys_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return txt_record(algorithm, public)


def txt_record(algorithm: str, public: bytes) -> str:
    return f"v=DKIM1; k={algorithm}; p={base64.b64encode(public).decode()}"


def load(keys_dir: Path, domain: str) -> tuple[str, bytes] | None:
    """(algorithm, key bytes as dkimpy takes them), or None without a key."""
    path = key_path(keys_dir, domain)
    if not path.exists():
        return None
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return "rsa", data
    return "ed25519", data.strip()


def public_record(keys_dir: Path, domain: str) -> str:
    """The TXT record of an existing key."""
    loaded = load(keys_dir, domain)
    if loaded is None:
        raise DkimKeyError(f"no DKIM key for {domain}: run `mss dkim keygen {domain}`")
    algorithm, data = loaded
    if algorithm == "rsa":
        private = serialization.load_pem_private_key(data, None)
        assert isinstance(private, rsa.RSAPrivateKey)
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        seed = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(data))
        public = seed.public_key().public_bytes_raw()
    return txt_record(algorithm, public)
