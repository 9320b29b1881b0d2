"""The operator's own S/MIME identity: a domain-bound signing certificate that signs
what leaves for other operators, and a domain-bound encryption certificate that peers
encrypt to (Direct Project Applicability Statement §4.1: domain-bound certificates name
the domain as a dNSName). Paths come from ``[smime]`` of mss.toml; keys are 0600.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailserver.pki.authority import PkiError, PrivateKey
from mailserver.pki.local_pki import LocalPki, write_private
from mailserver.settings import Settings
from mailserver.smime.enveloped import Identity


@dataclass(frozen=True)
class OperatorKeys:
    signer: Identity
    chain: tuple[x509.Certificate, ...]  # sent with each signature (the issuing CA)
    decryptor: Identity

    @property
    def encryption_certificate(self) -> x509.Certificate:
        return self.decryptor.certificate


def _certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, PrivateKey):
        raise PkiError(f"{path} is not an RSA or EC private key")
    return key


def operator_paths(settings: Settings) -> tuple[Path, Path, Path, Path]:
    smime = settings.smime
    return (settings.path(smime.sign_certificate), settings.path(smime.sign_key),
            settings.path(smime.encrypt_certificate), settings.path(smime.encrypt_key))


def load_operator(settings: Settings) -> OperatorKeys | None:
    """The operator's keys, or None when they were never issued (no S/MIME)."""
    sign_cert, sign_key, encrypt_cert, encrypt_key = operator_paths(settings)
    if not all(p.exists() for p in (sign_cert, sign_key, encrypt_cert, encrypt_key)):
        return None
    try:
        signer, *chain = _certificates(sign_cert)
        decryptor = _certificates(encrypt_cert)[0]
        return OperatorKeys(Identity(signer, _key(sign_key)), tuple(chain),
                            Identity(decryptor, _key(encrypt_key)))
    except (ValueError, OSError) as error:
        raise PkiError(f"cannot read the operator's S/MIME keys: {error}") from error


def issue_operator(settings: Settings, pki: LocalPki, organisation: str,
                   key_type: str = "rsa2048") -> tuple[Path, Path]:
    """Issue the operator's signing and encryption certificates for our first domain
    from the local PKI, and install them where mss.toml says. Returns the paths of the
    signing and encryption certificates (the latter is what peers import)."""
    if not settings.server.domains:
        raise PkiError("no domain in server.domains")
    domain = settings.server.domains[0]
    sign_cert, sign_key, encrypt_cert, encrypt_key = operator_paths(settings)
    for usage, cert_path, key_path in (("sign", sign_cert, sign_key),
                                       ("encrypt", encrypt_cert, encrypt_key)):
        issued = pki.issue(domain, usage, organisation=organisation, key_type=key_type,
                           display_name=f"{domain} ({usage})")
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        # The signing file carries the chain sent with each signature; the encryption
        # file is the certificate alone, as peers import it.
        chain = [issued.certificate]
        if usage == "sign":
            chain += pki.chain_of(issued.registration.issuer)
        cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                       for c in chain))
        write_private(key_path, issued.key_path.read_bytes())
    return sign_cert, encrypt_cert
