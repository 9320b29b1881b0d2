"""Trust anchors: the CA certificates peer operators' certificates must chain to.

Imported from PEM bundles or PKCS#7 (``.p7b``, PEM or DER) bundles and kept one
PEM file per certificate (named by its SHA-256 fingerprint) under the data dir.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7


class AnchorError(ValueError):
    pass


def looks_like_bundle(data: bytes) -> bool:
    head = data.lstrip()[:40]
    return head.startswith(b"-----BEGIN") or head[:1] == b"\x30"  # PEM, or DER SEQUENCE


def parse_bundle(data: bytes) -> list[x509.Certificate]:
    """Certificates of a PEM bundle or a PKCS#7 bundle (PEM or DER)."""
    stripped = data.lstrip()
    try:
        if stripped.startswith(b"-----BEGIN PKCS7"):
            certificates = pkcs7.load_pem_pkcs7_certificates(stripped)
        elif stripped.startswith(b"-----BEGIN"):
            certificates = x509.load_pem_x509_certificates(stripped)
        else:
            certificates = pkcs7.load_der_pkcs7_certificates(stripped)
    except ValueError as error:
        raise AnchorError(f"not a PEM or PKCS#7 certificate bundle: {error}") from error
    if not certificates:
        raise AnchorError("the bundle holds no certificate")
    return certificates


def add_anchors(directory: Path, certificates: list[x509.Certificate]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for certificate in certificates:
        name = certificate.fingerprint(hashes.SHA256()).hex() + ".pem"
        path = directory / name
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        written.append(path)
    return written


def anchors_pem(directory: Path) -> str:
    """Every anchor as one PEM text (for ``SSLContext.load_verify_locations``)."""
    if not directory.is_dir():
        return ""
    return "".join(p.read_text("ascii") for p in sorted(directory.glob("*.pem")))


def list_anchors(directory: Path) -> list[x509.Certificate]:
    if not directory.is_dir():
        return []
    return [x509.load_pem_x509_certificate(p.read_bytes()) for p in sorted(directory.glob("*.pem"))]
