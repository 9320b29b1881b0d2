"""The deployment's PKI folder, ``DATA_DIR/pki``::

    ca/<name>/ca.pem, ca.key, revoked.json   root and sub-CAs (keys 0600)
    issued/<serial>.pem, <serial>.key         end-entity certificates and their keys (0600)
    crl/<name>.crl                            published CRLs (DER, RFC 5280 §5)
    trust/<sha256>.pem                        trust anchors: the local root and imported CAs
    index.json                                registrations (see registry.py)

A real deployment imports the health PKI's CA chain with ``trust add`` instead of (or
besides) running its own root: verification reads ``trust/`` either way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from mailserver.pki.authority import (
    ISSUER_OF_USAGE,
    ROOT,
    SUB_CAS,
    USAGES,
    Authority,
    PkiError,
    PrivateKey,
    Subject,
    build_crl,
    create_root,
    create_sub_ca,
    issue_certificate,
)
from mailserver.pki.crl_fetch import CrlFetcher
from mailserver.pki.registry import (
    Registration,
    find_serial,
    register_certificate,
    registrations,
)
from mailserver.settings import Settings
from mailserver.smime.enveloped import Identity
from mailserver.smime.trust import TrustStore

_ADDRESS = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only (0600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def load_bundle(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or more), PKCS#7 (``.p7b``, PEM or DER) or one DER."""
    try:
        if b"-----BEGIN PKCS7-----" in data:
            return list(pkcs7.load_pem_pkcs7_certificates(data))
        if b"-----BEGIN CERTIFICATE-----" in data:
            return list(x509.load_pem_x509_certificates(data))
        try:
            with warnings.catch_warnings():
                # Bundles made by openssl often order their SET as BER does; that is fine.
                warnings.simplefilter("ignore", UserWarning)
                return list(pkcs7.load_der_pkcs7_certificates(data))
        except ValueError:
            return [x509.load_der_x509_certificate(data)]
    except ValueError as error:
        raise PkiError(f"not a PEM or PKCS#7 certificate bundle: {error}") from error


def parse_serial(text: str) -> int:
    """A serial as decimal, ``0x``-hex, or colon-separated hex (as openssl prints it)."""
    cleaned = text.strip().lower()
    try:
        if cleaned.startswith("0x"):
            return int(cleaned[2:], 16)
        if ":" in cleaned or re.search("[a-f]", cleaned):
            return int(cleaned.replace(":", ""), 16)
        return int(cleaned)
    except ValueError as error:
        raise PkiError(f"{text!r} is not a certificate serial number") from error


_TRUST_CACHE: dict[tuple[Path, bool, int], tuple[tuple[tuple[str, int, int], ...], TrustStore]] = {}
_TRUST_LOCK = threading.Lock()


@dataclass(frozen=True)
class Issued:
    registration: Registration
    certificate: x509.Certificate
    key: PrivateKey
    certificate_path: Path
    key_path: Path


class LocalPki:
    def __init__(self, pki_dir: Path, crl_base_url: str = "",
                 fetcher: CrlFetcher | None = None) -> None:
        self.dir = pki_dir
        self.crl_base_url = crl_base_url.rstrip("/")
        self.fetcher = fetcher  # CRLs of distribution points, for certificates not ours

    def crl_url(self, authority_name: str) -> str | None:
        """Where the CRL of ``authority_name`` is published (RFC 5280 §4.2.1.13)."""
        return f"{self.crl_base_url}/{authority_name}.crl" if self.crl_base_url else None

    # -- layout ---------------------------------------------------------------------------
    def ca_dir(self, name: str) -> Path:
        return self.dir / "ca" / name

    @property
    def trust_dir(self) -> Path:
        return self.dir / "trust"

    @property
    def crl_dir(self) -> Path:
        return self.dir / "crl"

    @property
    def issued_dir(self) -> Path:
        return self.dir / "issued"

    def is_initialised(self) -> bool:
        return (self.ca_dir(ROOT) / "ca.pem").exists()

    # -- authorities ----------------------------------------------------------------------
    def init(self, organisation: str, key_type: str = "rsa3072") -> list[Authority]:
        if self.is_initialised():
            raise PkiError(f"{self.dir} already holds a PKI (ca/root/ca.pem exists)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        root = create_root(organisation, key_type)
        authorities = [root] + [create_sub_ca(root, name, key_type, crl_url=self.crl_url(ROOT))
                                for name in SUB_CAS]
        for authority in authorities:
            self._save_authority(authority)
        self.add_trust_anchors([root.certificate])
        self.publish_crls()
        return authorities

    def _save_authority(self, authority: Authority) -> None:
        folder = self.ca_dir(authority.name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ca.pem").write_bytes(cert_pem(authority.certificate))
        write_private(folder / "ca.key", key_pem(authority.key))

    def authority(self, name: str) -> Authority:
        folder = self.ca_dir(name)
        if not (folder / "ca.pem").exists():
            raise PkiError(f"no CA {name!r} in {self.dir}: run `mss pki init` first")
        certificate = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
        if not isinstance(key, PrivateKey):
            raise PkiError(f"{folder / 'ca.key'} is not an RSA or EC key")
        return Authority(name, certificate, key)

    def intermediates(self) -> list[x509.Certificate]:
        return [self.authority(name).certificate for name in SUB_CAS
                if (self.ca_dir(name) / "ca.pem").exists()]

    # -- issuing --------------------------------------------------------------------------
    def issue(self, address: str, usage: str, *, organisation: str, key_type: str = "rsa2048",
              display_name: str = "", identifier: str = "", days: int = 1095) -> Issued:
        if usage not in USAGES:
            raise PkiError(f"unknown usage {usage!r} (choose one of {', '.join(USAGES)})")
        domain_bound = usage in ("sign", "encrypt") and "@" not in address
        pattern = _HOST if usage == "tls-server" or domain_bound else _ADDRESS
        if not pattern.match(address):
            kind = "a host name" if usage == "tls-server" else "a mail address or a domain"
            raise PkiError(f"{address!r} is not {kind}")
        authority = self.authority(ISSUER_OF_USAGE[usage])
        crl_url = self.crl_url(authority.name)
        subject = Subject(address=address, organisation=organisation,
                          display_name=display_name, identifier=identifier)
        key, certificate = issue_certificate(authority, subject, usage, key_type, days, crl_url)
        stem = f"{certificate.serial_number:x}"
        certificate_path = self.issued_dir / f"{stem}.pem"
        key_path = self.issued_dir / f"{stem}.key"
        self.issued_dir.mkdir(parents=True, exist_ok=True)
        certificate_path.write_bytes(cert_pem(certificate))
        write_private(key_path, key_pem(key))
        registration = register_certificate(
            self.dir, address=address, usage=usage, issuer=authority.name,
            certificate=certificate, certificate_path=certificate_path, key_path=key_path,
        )
        return Issued(registration, certificate, key, certificate_path, key_path)

    def load_issued(self, registration: Registration) -> tuple[x509.Certificate, PrivateKey]:
        certificate = x509.load_pem_x509_certificate(
            (self.dir / registration.certificate).read_bytes())
        key = serialization.load_pem_private_key((self.dir / registration.key).read_bytes(), None)
        if not isinstance(key, PrivateKey):
            raise PkiError(f"{registration.key} is not an RSA or EC key")
        return certificate, key

    def export_pkcs12(self, issued: Issued, path: Path, password: bytes) -> None:
        """PKCS#12 with key, certificate and chain, AES-256 / SHA-256 protected."""
        chain = [self.authority(issued.registration.issuer).certificate,
                 self.authority(ROOT).certificate]
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(100_000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
        data = pkcs12.serialize_key_and_certificates(
            issued.registration.address.encode(), issued.key, issued.certificate, chain, encryption,
        )
        write_private(path, data)

    # -- revocation -----------------------------------------------------------------------
    def _revoked(self, name: str) -> list[dict[str, str | int]]:
        path = self.ca_dir(name) / "revoked.json"
        if not path.exists():
            return []
        rows: list[dict[str, str | int]] = json.loads(path.read_text(encoding="utf-8"))
        return rows

    def revoke(self, serial: int) -> Registration:
        registration = find_serial(self.dir, serial)
        if registration is None:
            raise PkiError(f"no certificate with serial {serial:x} was issued here "
                           f"(see {self.dir / 'index.json'})")
        rows = self._revoked(registration.issuer)
        if any(row["serial"] == serial for row in rows):
            raise PkiError(f"certificate {serial:x} is already revoked")
        rows.append({"serial": serial, "date": dt.datetime.now(dt.UTC).isoformat()})
        path = self.ca_dir(registration.issuer) / "revoked.json"
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        self.publish_crl(registration.issuer)
        return registration

    def publish_crl(self, name: str) -> Path:
        revoked = [(int(row["serial"]), dt.datetime.fromisoformat(str(row["date"])))
                   for row in self._revoked(name)]
        crl = build_crl(self.authority(name), revoked)
        self.crl_dir.mkdir(parents=True, exist_ok=True)
        path = self.crl_dir / f"{name}.crl"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(crl.public_bytes(serialization.Encoding.DER))
        os.replace(temporary, path)
        return path

    def refresh_crls(self, margin: dt.timedelta = dt.timedelta(days=3)) -> list[Path]:
        """Publish again the CRLs of our CAs whose nextUpdate is within ``margin`` (or
        missing), so that a deployment nobody runs `mss pki crl` on never serves a stale
        CRL (RFC 5280 §5.1.2.5), which would fail every certificate login."""
        if not self.is_initialised():
            return []
        limit = dt.datetime.now(dt.UTC) + margin
        published = []
        for name in (ROOT, *SUB_CAS):
            if not (self.ca_dir(name) / "ca.pem").exists():
                continue
            path = self.crl_dir / f"{name}.crl"
            try:
                next_update = x509.load_der_x509_crl(path.read_bytes()).next_update_utc
            except (OSError, ValueError):
                next_update = None
            if next_update is None or next_update < limit:
                published.append(self.publish_crl(name))
        return published

    def publish_crls(self) -> list[Path]:
        return [self.publish_crl(name) for name in (ROOT, *SUB_CAS)]

    def crls(self) -> list[x509.CertificateRevocationList]:
        if not self.crl_dir.exists():
            return []
        return [x509.load_der_x509_crl(path.read_bytes())
                for path in sorted(self.crl_dir.glob("*.crl"))]

    # -- trust anchors --------------------------------------------------------------------
    def add_trust_anchors(self, certificates: list[x509.Certificate]) -> list[x509.Certificate]:
        """Store CA certificates as trust anchors; refuse end-entity certificates."""
        if not certificates:
            raise PkiError("the bundle holds no certificate")
        for certificate in certificates:
            try:
                constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
                is_ca = constraints.value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                raise PkiError(f"{certificate.subject.rfc4514_string()} is not a CA certificate "
                               "(no basicConstraints cA=TRUE); only CAs can be trust anchors")
        self.trust_dir.mkdir(parents=True, exist_ok=True)
        for certificate in certificates:
            name = certificate.fingerprint(hashes.SHA256()).hex()
            (self.trust_dir / f"{name}.pem").write_bytes(cert_pem(certificate))
        return certificates

    def trust_anchors(self) -> list[x509.Certificate]:
        if not self.trust_dir.exists():
            return []
        return [x509.load_pem_x509_certificate(path.read_bytes())
                for path in sorted(self.trust_dir.glob("*.pem"))]

    # -- for S/MIME -----------------------------------------------------------------------
    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        paths = [*self.trust_dir.glob("*.pem"), *self.crl_dir.glob("*.crl"),
                 *(self.dir / "ca").glob("*/ca.pem")]
        stamp = []
        for path in sorted(paths):
            status = path.stat()
            stamp.append((str(path), status.st_mtime_ns, status.st_size))
        return tuple(stamp)

    def trust_store(self, require_crl: bool = False) -> TrustStore:
        """Anchors from ``trust/``, our sub-CAs as intermediates, our published CRLs.

        Parsed once and kept (with its cache of validated paths) until a file changes:
        publishing a CRL or adding an anchor takes effect on the next call."""
        stamp = self._stamp()
        key = (self.dir.resolve(), require_crl, id(self.fetcher))
        with _TRUST_LOCK:
            cached = _TRUST_CACHE.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        store = TrustStore(self.trust_anchors(), self.intermediates(), self.crls(),
                           require_crl=require_crl,
                           crl_source=self.fetcher.crls_for if self.fetcher else None)
        with _TRUST_LOCK:
            _TRUST_CACHE[key] = (stamp, store)
        return store

    def identities(self, address: str, usage: str) -> list[Identity]:
        """Our certificates with keys for ``address`` and ``usage``, newest first."""
        found = []
        for registration in reversed(registrations(self.dir, address, usage)):
            certificate, key = self.load_issued(registration)
            found.append(Identity(certificate, key))
        return found

    def certificates(self, address: str, usage: str) -> list[x509.Certificate]:
        """Currently valid registered certificates for ``address`` and ``usage``, newest
        first (what a sender encrypts to)."""
        now = dt.datetime.now(dt.UTC)
        found = []
        for registration in reversed(registrations(self.dir, address, usage)):
            certificate = x509.load_pem_x509_certificate(
                (self.dir / registration.certificate).read_bytes())
            if certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
                found.append(certificate)
        return found

    def chain_of(self, registration_issuer: str) -> list[x509.Certificate]:
        """The certificates to send with a signature: the issuing sub-CA."""
        return [self.authority(registration_issuer).certificate]


def deployment_pki(settings: Settings) -> LocalPki:
    """The deployment's PKI folder and CRL fetching, as ``[pki]`` of mss.toml says."""
    pki_dir = settings.path(settings.pki.dir)
    fetcher = CrlFetcher(
        pki_dir / "crl-cache", timeout=settings.pki.crl_timeout,
        max_size=settings.pki.crl_max_size, retry_seconds=settings.pki.crl_retry_seconds,
    ) if settings.pki.crl_fetch else None
    return LocalPki(pki_dir, crl_base_url=settings.pki.crl_base_url, fetcher=fetcher)
