"""Certificate path validation for S/MIME (RFC 5280 §6, profile of RFC 8550).

A :class:`TrustStore` holds trust anchors, known intermediate CAs and CRLs. ``validate``
builds a path from an end-entity certificate to an anchor (using the intermediates and
the certificates that came with the message), then checks on every certificate: the
issuer's signature (SHA-1 / MD5 refused), validity dates, CA constraints and path length,
key usage and extended key usage of the end entity, unknown critical extensions, and
revocation by CRL. Successful paths are cached until the earliest expiry they depend on.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from mailserver.smime.algorithms import DIGESTS, AlgorithmRefused, check_public_key

Purpose = Literal["smime-sign", "smime-encrypt", "tls-client", "tls-server"]
MAX_PATH = 6  # certificates in a path, anchor included
MAX_CANDIDATES = 64  # certificates considered when building a path (hostile bundles)
# A path whose revocation could not be checked is validated again after this long
# (the distribution point may be back).
UNCHECKED_CACHE = dt.timedelta(minutes=5)

# Fetches the CRLs named by a certificate's distribution points (pki/crl_fetch.py).
CrlSource = Callable[[x509.Certificate], Iterable[x509.CertificateRevocationList]]

_ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")
_EKU_FOR: dict[str, x509.ObjectIdentifier] = {
    "smime-sign": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "smime-encrypt": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "tls-client": ExtendedKeyUsageOID.CLIENT_AUTH,
    "tls-server": ExtendedKeyUsageOID.SERVER_AUTH,
}


class ValidationError(Exception):
    """The certificate is not acceptable; ``policy`` marks refusals by algorithm policy."""

    def __init__(self, reason: str, policy: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.policy = policy


@dataclass(frozen=True)
class ValidatedPath:
    chain: tuple[x509.Certificate, ...]  # end entity first, anchor last
    notes: tuple[str, ...]  # e.g. revocation not checked for lack of a CRL
    valid_from: dt.datetime
    valid_until: dt.datetime


def _name(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _fingerprint(certificate: x509.Certificate) -> bytes:
    return certificate.fingerprint(hashes.SHA256())


def _extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


class TrustStore:
    def __init__(
        self,
        anchors: Iterable[x509.Certificate],
        intermediates: Iterable[x509.Certificate] = (),
        crls: Iterable[x509.CertificateRevocationList] = (),
        *,
        require_crl: bool = False,
        crl_source: CrlSource | None = None,
    ) -> None:
        self.anchors = list(anchors)
        self.crl_source = crl_source
        self.intermediates = list(intermediates)
        self.require_crl = require_crl
        self._anchor_prints = {_fingerprint(c) for c in self.anchors}
        self._crls: dict[bytes, list[x509.CertificateRevocationList]] = {}
        for crl in crls:
            self._crls.setdefault(crl.issuer.public_bytes(), []).append(crl)
        self._cache: dict[tuple[x509.Certificate, str], ValidatedPath] = {}
        # The same cache by object identity first: hashing a certificate hashes its DER,
        # which costs more than the look-up; the entry holds the object (no id reuse).
        self._by_id: dict[tuple[int, str], tuple[x509.Certificate, ValidatedPath]] = {}
        self._lock = threading.Lock()

    # -- path building --------------------------------------------------------------------
    def _issuers(self, certificate: x509.Certificate, pool: Sequence[x509.Certificate],
                 ) -> list[tuple[x509.Certificate, bool]]:
        issuer = certificate.issuer.public_bytes()
        found = [(c, True) for c in self.anchors if c.subject.public_bytes() == issuer]
        found += [(c, False) for c in pool if c.subject.public_bytes() == issuer
                  and _fingerprint(c) not in self._anchor_prints]
        return found

    def _signed_by(self, certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
        algorithm = certificate.signature_hash_algorithm
        if algorithm is None or algorithm.name.replace("-", "") not in DIGESTS:
            name = algorithm.name if algorithm else "unknown"
            raise ValidationError(f"{_name(certificate)} is signed with {name}, which is refused",
                                  policy=True)
        try:
            certificate.verify_directly_issued_by(issuer)
        except Exception:  # InvalidSignature, ValueError, TypeError: not this issuer
            return False
        return True

    def _build(self, chain: list[x509.Certificate], pool: Sequence[x509.Certificate],
               ) -> list[x509.Certificate] | None:
        if len(chain) > MAX_PATH:
            return None
        for issuer, is_anchor in self._issuers(chain[-1], pool):
            if any(_fingerprint(issuer) == _fingerprint(c) for c in chain):
                continue
            if not self._signed_by(chain[-1], issuer):
                continue
            if is_anchor:
                return [*chain, issuer]
            found = self._build([*chain, issuer], pool)
            if found is not None:
                return found
        return None

    # -- checks ---------------------------------------------------------------------------
    @staticmethod
    def _check_dates(certificate: x509.Certificate, at: dt.datetime) -> None:
        if at < certificate.not_valid_before_utc:
            raise ValidationError(f"certificate {_name(certificate)} is not yet valid "
                                  f"(from {certificate.not_valid_before_utc:%Y-%m-%d})")
        if at > certificate.not_valid_after_utc:
            raise ValidationError(f"certificate {_name(certificate)} expired on "
                                  f"{certificate.not_valid_after_utc:%Y-%m-%d}")

    @staticmethod
    def _check_critical(certificate: x509.Certificate) -> None:
        # RFC 5280 §4.2: an unrecognised critical extension makes the certificate unusable.
        for extension in certificate.extensions:
            if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
                raise ValidationError(f"certificate {_name(certificate)} has an unknown critical "
                                      f"extension {extension.oid.dotted_string}")

    @staticmethod
    def _check_ca(certificate: x509.Certificate, below: int) -> None:
        constraints = _extension(certificate, x509.BasicConstraints)
        if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
            raise ValidationError(f"{_name(certificate)} issued a certificate but is not a CA")
        if constraints.path_length is not None and below > constraints.path_length:
            raise ValidationError(f"path length constraint of {_name(certificate)} exceeded")
        usage = _extension(certificate, x509.KeyUsage)
        if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
            raise ValidationError(f"{_name(certificate)} may not sign certificates (key usage)")

    @staticmethod
    def _check_end_entity(certificate: x509.Certificate, purpose: Purpose) -> None:
        try:
            check_public_key(certificate.public_key())
        except AlgorithmRefused as error:
            raise ValidationError(str(error), policy=True) from error
        except Exception as error:  # unsupported / malformed key
            raise ValidationError(f"unusable public key: {error}", policy=True) from error
        usage = _extension(certificate, x509.KeyUsage)
        if isinstance(usage, x509.KeyUsage):
            # RFC 8550 §4.4.2.
            if purpose == "smime-sign" and not (usage.digital_signature
                                                or usage.content_commitment):
                raise ValidationError("the signer's certificate is not for signing (key usage)")
            if purpose == "smime-encrypt":
                key = certificate.public_key()
                if isinstance(key, rsa.RSAPublicKey) and not usage.key_encipherment:
                    raise ValidationError("the certificate is not for encryption (key usage)")
                if isinstance(key, ec.EllipticCurvePublicKey) and not usage.key_agreement:
                    raise ValidationError("the certificate is not for key agreement (key usage)")
            if purpose in ("tls-client", "tls-server") and not usage.digital_signature:
                raise ValidationError("the certificate is not for TLS (key usage)")
        extended = _extension(certificate, x509.ExtendedKeyUsage)
        if isinstance(extended, x509.ExtendedKeyUsage):
            wanted = _EKU_FOR[purpose]
            if wanted not in extended and _ANY_EKU not in extended:
                raise ValidationError(f"the certificate's extended key usage excludes "
                                      f"{wanted._name}")

    def _current_crl(self, crls: Iterable[x509.CertificateRevocationList],
                     issuer: x509.Certificate, at: dt.datetime,
                     ) -> x509.CertificateRevocationList | None:
        """The first of ``crls`` issued and signed by ``issuer`` and not stale."""
        name = issuer.subject.public_bytes()
        for crl in crls:
            if crl.issuer.public_bytes() != name:
                continue
            try:
                if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                    continue
            except Exception:  # noqa: S112 — a CRL we cannot check is no CRL
                continue
            next_update = crl.next_update_utc
            if next_update is not None and next_update < at:
                continue  # stale CRL: RFC 5280 §6.3.3 (a)
            return crl
        return None

    def _check_revocation(self, certificate: x509.Certificate, issuer: x509.Certificate,
                          at: dt.datetime) -> tuple[str | None, dt.datetime | None]:
        """(note, crl next update); raises when revoked. Known CRLs first, then those
        of the certificate's distribution points (RFC 5280 §4.2.1.13)."""
        crl = self._current_crl(self._crls.get(issuer.subject.public_bytes(), []), issuer, at)
        if crl is None and self.crl_source is not None:
            crl = self._current_crl(self.crl_source(certificate), issuer, at)
        if crl is not None:
            revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            if revoked is not None:
                raise ValidationError(f"certificate {certificate.serial_number:X} of "
                                      f"{_name(certificate)} was revoked on "
                                      f"{revoked.revocation_date_utc:%Y-%m-%d}")
            return None, crl.next_update_utc
        note = f"revocation of {_name(certificate)} not checked: no current CRL from its issuer"
        if self.require_crl:
            raise ValidationError(note.replace("not checked", "unknown"))
        return note, None

    def validate(self, certificate: x509.Certificate, extra: Sequence[x509.Certificate] = (),
                 purpose: Purpose = "smime-sign", at: dt.datetime | None = None) -> ValidatedPath:
        """The validated path of ``certificate``, or :class:`ValidationError`."""
        at = at or dt.datetime.now(dt.UTC)
        same = self._by_id.get((id(certificate), purpose))
        if same is not None and same[0] is certificate \
                and same[1].valid_from <= at <= same[1].valid_until:
            return same[1]
        key = (certificate, purpose)  # certificates hash and compare by their DER
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached.valid_from <= at <= cached.valid_until:
            self._remember(certificate, purpose, cached)
            return cached
        pool = [*self.intermediates, *extra[:MAX_CANDIDATES]]
        chain = self._build([certificate], pool)
        if chain is None:
            raise ValidationError(f"no path from {_name(certificate)} (issuer "
                                  f"{certificate.issuer.rfc4514_string()}) to a trust anchor")
        notes: list[str] = []
        expiries = [c.not_valid_after_utc for c in chain]
        for position, member in enumerate(chain):
            self._check_dates(member, at)
            self._check_critical(member)
            if position > 0:
                self._check_ca(member, below=position - 1)
        self._check_end_entity(certificate, purpose)
        for member, issuer in itertools.pairwise(chain):
            note, next_update = self._check_revocation(member, issuer, at)
            if note:
                notes.append(note)
            if next_update is not None:
                expiries.append(next_update)
        if notes:
            expiries.append(at + UNCHECKED_CACHE)
        path = ValidatedPath(tuple(chain), tuple(notes),
                             max(c.not_valid_before_utc for c in chain), min(expiries))
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = path
        self._remember(certificate, purpose, path)
        return path

    def _remember(self, certificate: x509.Certificate, purpose: str,
                  path: ValidatedPath) -> None:
        with self._lock:
            if len(self._by_id) > 4096:
                self._by_id.clear()
            self._by_id[(id(certificate), purpose)] = (certificate, path)
