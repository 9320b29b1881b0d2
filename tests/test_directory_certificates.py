"""Certificate discovery: valid encryption certificates bound to the address, else
to its domain (Direct Project order); `mss directory cert`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from directory.certificates import Certificates
from directory.models import CertificateUsage
from directory.service import DirectoryError
from tests.test_directory_import import with_db
from tests.test_directory_search import data_dir, mss  # noqa: F401  (fixture)

NOW = dt.datetime.now(dt.UTC)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test health CA")])


def issue(
    *,
    email: str | None = None,
    dns: str | None = None,
    encrypt: bool = True,
    sign: bool = True,
    days: tuple[int, int] = (-1, 365),
    eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    if email:
        names.append(x509.RFC822Name(email))
    if dns:
        names.append(x509.DNSName(dns))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email or dns or "x")]))
        .issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=encrypt, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    )
    return builder.sign(CA_KEY, hashes.SHA256())


ADDRESS = "jean.dupont@chu-nantes.mssante.example"
DOMAIN = "chu-nantes.mssante.example"


def test_address_first_then_domain_and_only_valid_encryption_certificates(
    database_url: str,
) -> None:
    own = issue(email=ADDRESS)
    older = issue(email=ADDRESS, days=(-30, 300))
    expired = issue(email="old@chu-nantes.mssante.example", days=(-400, -1))
    future = issue(email="soon@chu-nantes.mssante.example", days=(10, 400))
    sign_only = issue(email="signer@chu-nantes.mssante.example", encrypt=False)
    domain = issue(dns=DOMAIN)

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        store = Certificates(engine)
        for certificate, address in ((own, ADDRESS), (older, ADDRESS),
                                     (expired, "old@chu-nantes.mssante.example"),
                                     (future, "soon@chu-nantes.mssante.example")):
            await store.add(certificate, CertificateUsage.ENCRYPT, address=address)
        await store.add(sign_only, CertificateUsage.SIGN,
                        address="signer@chu-nantes.mssante.example")
        await store.add(domain, CertificateUsage.ENCRYPT, domain=DOMAIN.upper())
        lookup = store.lookup_certificates
        return {
            "own": await lookup(ADDRESS.upper()),
            "colleague": await lookup("someone@chu-nantes.mssante.example"),
            "expired": await lookup("old@chu-nantes.mssante.example"),
            "future": await lookup("soon@chu-nantes.mssante.example"),
            "signer": await lookup("signer@chu-nantes.mssante.example"),
            "signer-sign": await lookup("signer@chu-nantes.mssante.example",
                                        CertificateUsage.SIGN),
            "elsewhere": await lookup("x@elsewhere.example"),
            "garbage": await lookup("not an address"),
            "via-directory": await directory.lookup_certificates(ADDRESS),
        }

    found = with_db(database_url, body)
    der = {name: cert.public_bytes(Encoding.DER) for name, cert in
           (("own", own), ("older", older), ("domain", domain), ("sign", sign_only))}
    assert [r.der for r in found["own"]] == [der["own"], der["older"]]  # newest first
    assert all(r.bound_to == ADDRESS for r in found["own"])
    for name in ("colleague", "expired", "future", "signer"):
        assert [r.der for r in found[name]] == [der["domain"]], name
    assert [r.der for r in found["signer-sign"]] == [der["sign"]]
    assert found["elsewhere"] == found["garbage"] == []
    assert found["via-directory"] == [der["own"], der["older"]]


@pytest.mark.parametrize(("certificate", "binding", "usage", "message"), [
    (issue(email="other@chu-nantes.mssante.example"), {"address": ADDRESS},
     CertificateUsage.ENCRYPT, "not issued for jean.dupont@"),
    (issue(dns="other.example"), {"domain": DOMAIN}, CertificateUsage.ENCRYPT,
     "not issued for the domain"),
    (issue(email=ADDRESS, encrypt=False), {"address": ADDRESS}, CertificateUsage.ENCRYPT,
     "allows no encryption"),
    (issue(email=ADDRESS, sign=False), {"address": ADDRESS}, CertificateUsage.SIGN,
     "allows no signature"),
    (issue(email=ADDRESS), {"address": ADDRESS}, CertificateUsage.TLS_CLIENT,
     "excludes TLS client use"),
    (issue(email=ADDRESS), {"address": ADDRESS, "domain": DOMAIN}, CertificateUsage.ENCRYPT,
     "one of them"),
])
def test_wrong_bindings_are_refused(
    tmp_path: Path, certificate: x509.Certificate, binding: dict[str, str],
    usage: CertificateUsage, message: str,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        with pytest.raises(DirectoryError) as refusal:
            await Certificates(engine).add(certificate, usage, **binding)
        return str(refusal.value)

    assert message in with_db(url, body)


def test_cli_cert_add_pem_and_der_then_lookup(data_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    base = ("--data-dir", str(data_dir), "directory", "cert")
    pem = tmp_path / "jean.pem"
    pem.write_bytes(issue(email=ADDRESS).public_bytes(Encoding.PEM))
    der = tmp_path / "domain.der"
    der.write_bytes(issue(dns=DOMAIN).public_bytes(Encoding.DER))

    added = mss(*base, "add", str(pem), "--address", ADDRESS, "--usage", "encrypt",
                "--usage", "sign")
    assert added.exit_code == 0, added.output
    assert added.output.count(f"to {ADDRESS}") == 2
    assert mss(*base, "add", str(der), "--domain", DOMAIN, "--usage", "encrypt").exit_code == 0
    again = mss(*base, "add", str(der), "--domain", DOMAIN, "--usage", "encrypt")
    assert again.exit_code == 1 and "already bound" in again.output

    lookup = mss(*base, "lookup", ADDRESS)
    assert lookup.exit_code == 0 and f"\t{ADDRESS}\t" in lookup.output
    colleague = mss(*base, "lookup", f"colleague@{DOMAIN}")
    assert f"\t{DOMAIN}\t" in colleague.output
    assert len(mss(*base, "list", ADDRESS).output.splitlines()) == 2
    nothing = mss(*base, "lookup", "x@elsewhere.example")
    assert nothing.exit_code == 1 and "no valid encrypt certificate" in nothing.output

    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    refused = mss(*base, "add", str(garbage), "--domain", DOMAIN, "--usage", "encrypt")
    assert refused.exit_code == 1 and "not a PEM or DER" in refused.output
    assert "Traceback" not in refused.output
