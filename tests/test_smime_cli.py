"""``mss smime``: an operator signs, encrypts, protects, decrypts and verifies from the shell."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from mailserver.settings import Settings
from tests.smime_support import ALICE, BOB, CAROL, message, openssl


def mss(settings: Settings, *args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args], input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def pki(deployment: Settings) -> Settings:
    ok(mss(deployment, "pki", "init", "--key-type", "ec256"))
    for address, usage in ((ALICE, "sign"), (ALICE, "encrypt"), (BOB, "encrypt")):
        ok(mss(deployment, "pki", "issue", address, "--usage", usage))
    return deployment


def test_sign_then_verify_through_pipes(pki: Settings) -> None:
    signed = ok(mss(pki, "smime", "sign", input=message())).stdout_bytes
    assert b"multipart/signed" in signed
    verified = ok(mss(pki, "smime", "verify", input=signed))
    assert "smime=pass" in verified.stdout and ALICE in verified.stdout
    assert verified.stdout.startswith(f"Authentication-Results: {pki.server.hostname};")
    tampered = mss(pki, "smime", "verify", input=signed.replace(b"RAS.", b"KO!!"))
    assert tampered.exit_code == 1 and "smime=fail" in tampered.stdout


def test_opaque_sign_and_verify_files(pki: Settings, tmp_path: Path) -> None:
    source = tmp_path / "in.eml"
    source.write_bytes(message())
    signed = tmp_path / "signed.eml"
    content = tmp_path / "content"
    ok(mss(pki, "smime", "sign", "--opaque", "--in", str(source), "--out", str(signed)))
    assert b"signed-data" in signed.read_bytes()
    ok(mss(pki, "smime", "verify", "--in", str(signed), "--content", str(content)))
    assert content.read_bytes().endswith(b"Compte rendu: RAS.\r\n")


def test_protect_then_decrypt_by_recipient_and_sender(pki: Settings, tmp_path: Path) -> None:
    protected = tmp_path / "protected.eml"
    source = tmp_path / "in.eml"
    source.write_bytes(message())
    ok(mss(pki, "smime", "protect", "--in", str(source), "--out", str(protected)))
    assert b"RAS" not in protected.read_bytes()
    for reader in (BOB, ALICE):  # To: field's recipient, and the sender's own copy
        result = ok(mss(pki, "smime", "decrypt", "--to", reader, "--in", str(protected)))
        assert result.stdout_bytes.endswith(b"\r\n\r\nCompte rendu: RAS.\r\n")
        assert b"smime=pass" in result.stdout_bytes
        assert "signature: pass" in result.stderr


def test_encrypt_for_an_external_certificate(pki: Settings, tmp_path: Path) -> None:
    key, cert = tmp_path / "ext.key", tmp_path / "ext.pem"
    made = openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                   "-out", str(cert), "-subj", "/CN=ext@autre.example", "-days", "2")
    assert made.returncode == 0, made.stderr
    encrypted = ok(mss(pki, "smime", "encrypt", "--recipient-cert", str(cert), "--cbc",
                       input=message())).stdout_bytes
    assert b"smime-type=enveloped-data" in encrypted
    plain = openssl("cms", "-decrypt", "-recip", str(cert), "-inkey", str(key), input=encrypted)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.replace(b"\r\n", b"\n").endswith(b"Compte rendu: RAS.\n")


def test_missing_certificates_are_clear_errors(pki: Settings) -> None:
    result = mss(pki, "smime", "encrypt", "--to", CAROL, input=message())
    assert result.exit_code == 1
    assert f"no valid encryption certificate for {CAROL}" in result.output
    assert "mss pki issue" in result.output
    result = mss(pki, "smime", "sign", "--from", BOB, input=message())
    assert result.exit_code == 1 and f"no signing certificate for {BOB}" in result.output
    encrypted = ok(mss(pki, "smime", "encrypt", "--to", BOB, input=message())).stdout_bytes
    result = mss(pki, "smime", "decrypt", "--to", ALICE, input=encrypted)
    assert result.exit_code == 1 and "cannot decrypt" in result.output
    assert "Traceback" not in result.output


def test_revoked_signer_fails_verification(pki: Settings) -> None:
    signed = ok(mss(pki, "smime", "sign", input=message())).stdout_bytes
    from mailserver.pki.registry import registrations

    serial = registrations(pki.data_dir / "pki", ALICE, "sign")[0].serial
    ok(mss(pki, "pki", "revoke", f"{serial:x}"))
    result = mss(pki, "smime", "verify", input=signed)
    assert result.exit_code == 1 and "smime=fail" in result.stdout and "revoked" in result.stdout
