"""``mss pki``: CAs, issuing, PKCS#12, revocation and CRLs, trust anchors; checked with openssl."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from cli.main import main
from mailserver.pki.registry import registrations
from mailserver.settings import Settings


def mss(settings: Settings, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args], input=input)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def pki(deployment: Settings) -> Settings:
    ok(mss(deployment, "pki", "init", "--key-type", "ec256"))
    return deployment


def issued_paths(output: str) -> tuple[Path, Path]:
    lines = dict(line.split(None, 1) for line in output.splitlines()[1:])
    return Path(lines["certificate"].strip()), Path(lines["key"].strip())


def test_init_creates_root_and_sub_cas_with_private_keys_0600(pki: Settings) -> None:
    folder = pki.data_dir / "pki"
    for name in ("root", "servers", "people", "organisations"):
        assert stat.S_IMODE((folder / "ca" / name / "ca.key").stat().st_mode) == 0o600
        assert (folder / "crl" / f"{name}.crl").exists()
    assert len(list((folder / "trust").glob("*.pem"))) == 1
    again = mss(pki, "pki", "init")
    assert again.exit_code != 0 and "already holds a PKI" in again.output


def test_people_get_separate_signing_and_encryption_certificates(pki: Settings) -> None:
    folder = pki.data_dir / "pki"
    sign = ok(mss(pki, "pki", "issue", "dr.house@hopital.example", "--usage", "sign",
                  "--name", "Gregory House", "--id", "810001234567"))
    encrypt = ok(mss(pki, "pki", "issue", "dr.house@hopital.example", "--usage", "encrypt"))
    sign_cert, sign_key = issued_paths(sign)
    encrypt_cert, _ = issued_paths(encrypt)
    assert stat.S_IMODE(sign_key.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(sign_cert.read_bytes())
    assert certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value \
        == "810001234567"
    root, people = folder / "ca/root/ca.pem", folder / "ca/people/ca.pem"
    # openssl agrees on the chain and on the purposes (RFC 8550 key usages).
    for path, purpose in ((sign_cert, "smimesign"), (encrypt_cert, "smimeencrypt")):
        result = openssl("verify", "-CAfile", str(root), "-untrusted", str(people),
                         "-purpose", purpose, str(path))
        assert result.returncode == 0, result.stdout + result.stderr
    wrong = openssl("verify", "-CAfile", str(root), "-untrusted", str(people),
                    "-purpose", "sslclient", str(sign_cert))
    assert wrong.returncode != 0
    rows = registrations(folder, "dr.house@hopital.example")
    assert sorted(r.usage for r in rows) == ["encrypt", "sign"]
    assert {r.issuer for r in rows} == {"people"}


def test_revoked_certificate_appears_in_the_published_crl(pki: Settings) -> None:
    folder = pki.data_dir / "pki"
    output = ok(mss(pki, "pki", "issue", "alice@hopital.example", "--usage", "sign"))
    cert_path, _ = issued_paths(output)
    serial = output.split("serial ")[1].split()[0]
    chain = folder / "chain.pem"
    chain.write_bytes((folder / "ca/root/ca.pem").read_bytes()
                      + (folder / "ca/people/ca.pem").read_bytes())
    crls = folder / "crls.pem"

    def verify_with_crl() -> subprocess.CompletedProcess[str]:
        pem = b""
        for name in ("root", "people"):
            crl = x509.load_der_x509_crl((folder / "crl" / f"{name}.crl").read_bytes())
            pem += crl.public_bytes(Encoding.PEM)
        crls.write_bytes(pem)
        return openssl("verify", "-crl_check_all", "-CAfile", str(chain), "-CRLfile", str(crls),
                       str(cert_path))

    assert verify_with_crl().returncode == 0
    ok(mss(pki, "pki", "revoke", serial))
    refused = verify_with_crl()
    assert refused.returncode != 0 and "revoked" in refused.stdout + refused.stderr
    again = mss(pki, "pki", "revoke", serial)
    assert again.exit_code != 0 and "already revoked" in again.output
    unknown = mss(pki, "pki", "revoke", "0xdeadbeef")
    assert unknown.exit_code != 0 and "no certificate with serial" in unknown.output
    ok(mss(pki, "pki", "crl"))
    assert verify_with_crl().returncode != 0


def test_application_certificate_exported_as_pkcs12(pki: Settings, tmp_path: Path) -> None:
    password_file = tmp_path / "p12-password"
    password_file.write_text("correct horse battery\n")
    p12 = tmp_path / "logiciel.p12"
    ok(mss(pki, "pki", "issue", "logiciel@hopital.example", "--usage", "tls-client",
           "--key-type", "rsa2048", "--p12", str(p12), "--p12-password-file", str(password_file)))
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    read = openssl("pkcs12", "-in", str(p12), "-passin", f"file:{password_file}", "-nodes")
    assert read.returncode == 0, read.stderr
    assert read.stdout.count("BEGIN CERTIFICATE") == 3 and "PRIVATE KEY" in read.stdout
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    assert openssl("pkcs12", "-in", str(p12), "-passin", f"file:{wrong}",
                   "-nodes").returncode != 0
    # Without a password file, the password is prompted for (twice), never an argument.
    prompted = tmp_path / "prompted.p12"
    ok(mss(pki, "pki", "issue", "logiciel@hopital.example", "--usage", "tls-client",
           "--p12", str(prompted), input="another password\nanother password\n"))
    assert openssl("pkcs12", "-in", str(prompted), "-passin", "pass:another password",
                   "-nodes").returncode == 0


def test_bad_addresses_and_usages_are_refused(pki: Settings) -> None:
    result = mss(pki, "pki", "issue", "not an address", "--usage", "sign")
    assert result.exit_code != 0 and "is not a mail address" in result.output
    result = mss(pki, "pki", "issue", "a@b.example", "--usage", "teleport")
    assert result.exit_code != 0
    server = ok(mss(pki, "pki", "issue", "mail.hopital.example", "--usage", "tls-server"))
    cert_path, _ = issued_paths(server)
    folder = pki.data_dir / "pki"
    assert openssl("verify", "-CAfile", str(folder / "ca/root/ca.pem"), "-untrusted",
                   str(folder / "ca/servers/ca.pem"), "-purpose", "sslserver",
                   str(cert_path)).returncode == 0


def test_trust_anchors_from_pem_and_pkcs7_bundles(pki: Settings, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for name in ("a", "b"):
        made = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-keyout", str(other / f"{name}.key"),
                       "-out", str(other / f"{name}.pem"),
                       "-subj", f"/C=FR/O=IGC-Sante test/CN=AC {name}", "-days", "30",
                       "-addext", "basicConstraints=critical,CA:TRUE")
        assert made.returncode == 0, made.stderr
    bundle = tmp_path / "bundle.p7b"
    made = openssl("crl2pkcs7", "-nocrl", "-certfile", str(other / "a.pem"), "-certfile",
                   str(other / "b.pem"), "-outform", "DER", "-out", str(bundle))
    assert made.returncode == 0, made.stderr
    output = ok(mss(pki, "pki", "trust", "add", str(bundle)))
    assert "CN=AC a" in output and "CN=AC b" in output
    listed = ok(mss(pki, "pki", "trust", "list"))
    assert len(listed.splitlines()) == 3
    # An end-entity certificate is not a trust anchor.
    leaf = issued_paths(ok(mss(pki, "pki", "issue", "x@hopital.example", "--usage", "sign")))[0]
    refused = mss(pki, "pki", "trust", "add", str(leaf))
    assert refused.exit_code != 0 and "not a CA certificate" in refused.output
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"hello")
    refused = mss(pki, "pki", "trust", "add", str(garbage))
    assert refused.exit_code != 0 and "not a PEM or PKCS#7" in refused.output


def test_rsa_hierarchy(deployment: Settings) -> None:
    ok(mss(deployment, "pki", "init", "--key-type", "rsa3072"))
    output = ok(mss(deployment, "pki", "issue", "bob@hopital.example", "--usage", "encrypt"))
    cert_path, _ = issued_paths(output)
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert certificate.public_key().key_size == 2048  # type: ignore[union-attr]
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
