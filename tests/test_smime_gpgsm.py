"""Interoperability with GnuPG's ``gpgsm`` (Debian package gpgsm): it verifies our
signatures, and we decrypt what it encrypts.

gpgsm 2.2 (Debian 12) lacks AuthEnvelopedData, RSA-OAEP and ECDH with keyAgreement-only
certificates, and cannot import openssl 3 / cryptography PKCS#12 files, so the other two
directions (gpgsm decrypting and signing) are proven with openssl instead.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from mailserver.smime import decrypt_message, mime, sign_message
from tests.smime_support import ALICE, BOB, CAROL, Pki, make_pki, message, openssl


class Gpgsm:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = dict(os.environ, GNUPGHOME=str(home))

    def __call__(self, *args: str,
                 input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["gpgsm", "--batch", *args], input=input, env=self.env,
                              capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def gpgsm(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gpgsm]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    (home / "gpgsm.conf").write_text("disable-crl-checks\ndisable-dirmngr\n")
    tool = Gpgsm(home)
    certificates = [pki.root_pem, pki.store.ca_dir("people") / "ca.pem",
                    *(p.encrypt.certificate_path for p in pki.people.values())]
    imported = tool("--import", *map(str, certificates))
    assert imported.returncode == 0, imported.stderr
    fingerprint = openssl("x509", "-in", str(pki.root_pem), "-noout", "-fingerprint", "-sha1")
    value = fingerprint.stdout.decode().split("=", 1)[1].strip()
    (home / "trustlist.txt").write_text(f"{value} S relax\n")
    yield tool
    subprocess.run(["gpgconf", "--kill", "all"], env=tool.env, capture_output=True, timeout=30)


@pytest.mark.parametrize("who", [ALICE, CAROL], ids=["rsa", "ecdsa"])
def test_gpgsm_verifies_our_signature(pki: Pki, gpgsm: Gpgsm, tmp_path: Path, who: str) -> None:
    signed = sign_message(message(sender=who), pki.people[who].signer, pki.chain)
    head, body = mime.split(mime.entity_of(signed)[1])
    content, signature_head, signature_body = mime.split_multipart_signed(head, body)
    signature = tmp_path / "smime.p7s"
    signature.write_bytes(mime.decode_body(signature_head, signature_body))
    signed_part = tmp_path / "content"
    signed_part.write_bytes(content)
    result = gpgsm("--verify", str(signature), str(signed_part))
    assert result.returncode == 0, result.stderr
    assert b"Good signature" in result.stderr and who.encode() in result.stderr
    signed_part.write_bytes(content.replace(b"RAS.", b"KO!!"))
    assert gpgsm("--verify", str(signature), str(signed_part)).returncode != 0


@pytest.mark.parametrize("cipher", ["AES256", "AES"])
def test_we_decrypt_what_gpgsm_encrypts(pki: Pki, gpgsm: Gpgsm, cipher: str) -> None:
    bob = pki.people[BOB]
    fingerprint = bob.encrypt.certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    entity = mime.entity_of(message())[1]
    encrypted = gpgsm("--cipher-algo", cipher, "--encrypt", "-r", fingerprint, input=entity)
    assert encrypted.returncode == 0, encrypted.stderr
    received = (b"From: " + ALICE.encode() + b"\r\nTo: " + BOB.encode() + b"\r\n"
                b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + base64.encodebytes(encrypted.stdout))
    result = decrypt_message(received, [bob.decrypter])
    assert result.ok, result.reason
    assert result.content == entity
