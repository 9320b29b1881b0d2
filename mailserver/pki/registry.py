"""Where issued certificates are registered, and found again by address.

The directory will own a certificate table (mailbox ↔ certificate binding, used by SASL
EXTERNAL and by S/MIME to find recipients' certificates). Until it lands, every issued
certificate goes through :func:`register_certificate`, which keeps an index file
``index.json`` in the PKI folder; swapping it for the directory call changes this module
only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

INDEX_FILE = "index.json"


@dataclass(frozen=True)
class Registration:
    address: str
    usage: str
    serial: int
    issuer: str  # name of the issuing sub-CA
    fingerprint: str  # SHA-256, hex
    not_after: str  # ISO 8601
    certificate: str  # path, relative to the PKI folder
    key: str  # path, relative to the PKI folder


def _read(pki_dir: Path) -> list[Registration]:
    path = pki_dir / INDEX_FILE
    if not path.exists():
        return []
    return [Registration(**row) for row in json.loads(path.read_text(encoding="utf-8"))]


def _write(pki_dir: Path, rows: list[Registration]) -> None:
    path = pki_dir / INDEX_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps([asdict(r) for r in rows], indent=1), encoding="utf-8")
    os.replace(temporary, path)


def register_certificate(
    pki_dir: Path, *, address: str, usage: str, issuer: str, certificate: x509.Certificate,
    certificate_path: Path, key_path: Path,
) -> Registration:
    """Bind ``certificate`` to mailbox ``address`` for ``usage``."""
    row = Registration(
        address=address.lower(),
        usage=usage,
        serial=certificate.serial_number,
        issuer=issuer,
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        not_after=certificate.not_valid_after_utc.isoformat(),
        certificate=str(certificate_path.relative_to(pki_dir)),
        key=str(key_path.relative_to(pki_dir)),
    )
    rows = [r for r in _read(pki_dir) if r.serial != row.serial]
    rows.append(row)
    _write(pki_dir, rows)
    return row


def registrations(pki_dir: Path, address: str | None = None,
                  usage: str | None = None) -> list[Registration]:
    """Registrations, newest last, optionally for one address and usage."""
    return [
        r for r in _read(pki_dir)
        if (address is None or r.address == address.lower()) and (usage is None or r.usage == usage)
    ]


def find_serial(pki_dir: Path, serial: int) -> Registration | None:
    for row in _read(pki_dir):
        if row.serial == serial:
            return row
    return None
