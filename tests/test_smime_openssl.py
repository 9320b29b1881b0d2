"""Interoperability with ``openssl cms``, both ways: what we sign and encrypt, openssl
verifies and decrypts; what openssl signs and encrypts, we verify and decrypt."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailserver.smime import (
    DecryptStatus,
    Status,
    decrypt_message,
    encrypt_message,
    mime,
    protect,
    sign_message,
    unprotect,
    verify_message,
)
from tests.smime_support import ALICE, BOB, CAROL, Pki, make_pki, message, openssl

ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nCompte rendu: RAS.\r\n"
HEADERS = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: CR\r\n".encode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def ok(result: object) -> bytes:
    assert getattr(result, "returncode") == 0, getattr(result, "stderr")  # noqa: B009
    out: bytes = getattr(result, "stdout")  # noqa: B009
    return out


# -- we produce, openssl consumes -------------------------------------------------------------

@pytest.mark.parametrize("who", [ALICE, CAROL], ids=["rsa", "ecdsa"])
@pytest.mark.parametrize("opaque", [False, True], ids=["detached", "opaque"])
def test_openssl_verifies_our_signature(pki: Pki, tmp_path: Path, who: str,
                                        opaque: bool) -> None:
    signed = sign_message(message(sender=who), pki.people[who].signer, pki.chain, opaque=opaque)
    path = write(tmp_path, "signed.eml", signed)
    result = openssl("cms", "-verify", "-in", str(path), "-CAfile", str(pki.root_pem),
                     "-purpose", "smimesign")
    assert b"Compte rendu: RAS." in ok(result)
    assert b"Verification successful" in result.stderr
    tampered = write(tmp_path, "tampered.eml", signed.replace(b"RAS.", b"OK!!") if not opaque
                     else signed)
    if not opaque:
        assert openssl("cms", "-verify", "-in", str(tampered), "-CAfile",
                       str(pki.root_pem)).returncode != 0


@pytest.mark.parametrize("who", [BOB, CAROL], ids=["rsa-oaep", "ecdh"])
@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes256-cbc"])
def test_openssl_decrypts_what_we_encrypt(pki: Pki, tmp_path: Path, who: str,
                                          cipher: str) -> None:
    recipient = pki.people[who].encrypt
    encrypted = encrypt_message(message(), [pki.people[ALICE].encrypt.certificate,
                                            recipient.certificate], cipher)  # type: ignore[arg-type]
    path = write(tmp_path, "encrypted.eml", encrypted)
    plain = ok(openssl("cms", "-decrypt", "-in", str(path), "-recip",
                       str(recipient.certificate_path), "-inkey", str(recipient.key_path)))
    assert plain.replace(b"\r\n", b"\n").endswith(b"\n\nCompte rendu: RAS.\n")
    info = ok(openssl("cms", "-cmsout", "-print", "-in", str(path)))
    if cipher == "aes256-gcm":
        assert b"authEnvelopedData" in info or b"id-smime-ct-authEnvelopedData" in info
        assert b"aes-256-gcm" in info
    else:
        assert b"aes-256-cbc" in info
    if who == BOB:
        assert b"rsaesOaep" in info and b"sha256" in info


def test_openssl_unwraps_our_protected_message(pki: Pki, tmp_path: Path) -> None:
    alice, bob = pki.people[ALICE], pki.people[BOB]
    protected = protect(message(), alice.signer, [bob.encrypt.certificate], chain=pki.chain)
    path = write(tmp_path, "protected.eml", protected)
    signed_entity = ok(openssl("cms", "-decrypt", "-in", str(path), "-recip",
                               str(bob.encrypt.certificate_path), "-inkey",
                               str(bob.encrypt.key_path)))
    signed_path = write(tmp_path, "signed.eml", signed_entity)
    inner = ok(openssl("cms", "-verify", "-in", str(signed_path), "-CAfile",
                       str(pki.root_pem), "-purpose", "smimesign"))
    inner = inner.replace(b"\r\n", b"\n")
    assert inner.startswith(b"Content-Type: message/rfc822\n\n")
    assert inner.endswith(message().replace(b"\r\n", b"\n"))


# -- openssl produces, we consume -------------------------------------------------------------

def openssl_sign(pki: Pki, tmp_path: Path, who: str, *extra: str) -> bytes:
    issued = pki.people[who].sign
    entity = write(tmp_path, "entity", ENTITY)
    people = pki.store.ca_dir("people") / "ca.pem"
    out = ok(openssl("cms", "-sign", "-in", str(entity), "-signer",
                     str(issued.certificate_path), "-inkey", str(issued.key_path),
                     "-certfile", str(people), *extra))
    return f"From: {who}\r\nTo: {BOB}\r\nSubject: CR\r\n".encode() + out


@pytest.mark.parametrize(("who", "extra"), [
    (ALICE, ("-md", "sha256")),
    (ALICE, ("-md", "sha512")),
    (ALICE, ("-md", "sha256", "-keyopt", "rsa_padding_mode:pss")),
    (CAROL, ("-md", "sha256")),
    (ALICE, ("-md", "sha256", "-nodetach")),
    (CAROL, ("-md", "sha384", "-nodetach", "-noattr")),
], ids=["rsa", "rsa-sha512", "rsa-pss", "ecdsa", "rsa-opaque", "ecdsa-opaque-no-attributes"])
def test_we_verify_openssl_signatures(pki: Pki, tmp_path: Path, who: str,
                                      extra: tuple[str, ...]) -> None:
    signed = openssl_sign(pki, tmp_path, who, *extra)
    result = verify_message(signed, pki.trust())
    assert result.status is Status.PASS, result.reason
    assert result.content is not None and result.content.endswith(b"Compte rendu: RAS.\r\n")
    assert result.signer is not None and result.signer.addresses == (who,)


def test_sha1_signatures_are_refused(pki: Pki, tmp_path: Path) -> None:
    signed = openssl_sign(pki, tmp_path, ALICE, "-md", "sha1")
    result = verify_message(signed, pki.trust())
    assert result.status is Status.POLICY and "sha1" in result.reason


def test_small_rsa_keys_are_refused(pki: Pki, tmp_path: Path) -> None:
    """A 1024-bit signer, even with a valid chain, is refused (RFC 8551 §4.5)."""
    people = pki.store.ca_dir("people")
    key = tmp_path / "small.key"
    csr = tmp_path / "small.csr"
    ok(openssl("req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", str(key), "-out",
               str(csr), "-subj", f"/C=FR/O=hopital.example/CN={ALICE}"))
    extensions = write(tmp_path, "ext.cnf", (
        f"subjectAltName=email:{ALICE}\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=emailProtection\nbasicConstraints=critical,CA:FALSE\n").encode())
    cert = tmp_path / "small.pem"
    ok(openssl("x509", "-req", "-in", str(csr), "-CA", str(people / "ca.pem"), "-CAkey",
               str(people / "ca.key"), "-CAcreateserial", "-out", str(cert), "-days", "30",
               "-extfile", str(extensions), "-sha256"))
    ok(openssl("verify", "-CAfile", str(pki.chain_pem), str(cert)))
    entity = write(tmp_path, "entity", ENTITY)
    signed = HEADERS + ok(openssl("cms", "-sign", "-in", str(entity), "-signer", str(cert),
                                  "-inkey", str(key), "-md", "sha256"))
    result = verify_message(signed, pki.trust())
    assert result.status is Status.POLICY and "1024 bits" in result.reason


def test_openssl_signature_by_an_untrusted_ca_fails(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", organisation="pirate.example")
    signed = openssl_sign(other, tmp_path, ALICE, "-md", "sha256")
    result = verify_message(signed, pki.trust())
    assert result.status is Status.FAIL and "trust anchor" in result.reason


@pytest.mark.parametrize(("who", "extra"), [
    (BOB, ("-aes-256-gcm",)),
    (BOB, ("-aes-128-gcm",)),
    (BOB, ("-aes-256-cbc",)),  # RSAES-PKCS1-v1_5 key transport, older senders
    (BOB, ("-aes-256-cbc", "-keyopt", "rsa_padding_mode:oaep", "-keyopt",
           "rsa_oaep_md:sha256")),
    (BOB, ("-aes-128-cbc", "-keyopt", "rsa_padding_mode:oaep")),  # OAEP with SHA-1
    (CAROL, ("-aes-256-gcm",)),
    (CAROL, ("-aes-256-cbc",)),
], ids=["gcm-pkcs1", "gcm128", "cbc-pkcs1", "cbc-oaep-sha256", "cbc128-oaep-sha1", "ecdh-gcm",
        "ecdh-cbc"])
def test_we_decrypt_what_openssl_encrypts(pki: Pki, tmp_path: Path, who: str,
                                          extra: tuple[str, ...]) -> None:
    recipient = pki.people[who].encrypt
    entity = write(tmp_path, "entity", ENTITY)
    encrypted = HEADERS + ok(openssl("cms", "-encrypt", "-in", str(entity), "-recip",
                                     str(recipient.certificate_path), *extra))
    result = decrypt_message(encrypted, [pki.people[who].decrypter])
    assert result.ok, result.reason
    assert result.content == ENTITY
    other = decrypt_message(encrypted, [pki.people[ALICE].decrypter])
    assert other.status is DecryptStatus.NOT_FOR_US


def test_wrong_key_with_pkcs1_key_transport_fails_quietly(pki: Pki, tmp_path: Path) -> None:
    """RFC 3218: a PKCS#1 v1.5 padding failure looks like any wrong key."""
    bob, alice = pki.people[BOB], pki.people[ALICE]
    entity = write(tmp_path, "entity", ENTITY)
    encrypted = HEADERS + ok(openssl("cms", "-encrypt", "-in", str(entity), "-aes-256-gcm",
                                     "-recip", str(bob.encrypt.certificate_path)))
    # Alice claims Bob's certificate but holds her own key.
    from mailserver.smime import Identity

    result = decrypt_message(encrypted, [Identity(bob.encrypt.certificate, alice.encrypt.key)])
    assert result.status is DecryptStatus.FAILED and "tag" in result.reason


def test_openssl_signed_then_encrypted_message(pki: Pki, tmp_path: Path) -> None:
    bob = pki.people[BOB]
    signed = openssl_sign(pki, tmp_path, ALICE, "-md", "sha256")
    signed_entity = write(tmp_path, "signed-entity", mime.entity_of(mime.canonical(signed))[1])
    encrypted = HEADERS + ok(openssl("cms", "-encrypt", "-in", str(signed_entity),
                                     "-aes-256-gcm", "-recip",
                                     str(bob.encrypt.certificate_path)))
    result = unprotect(encrypted, [bob.decrypter], pki.trust(), authserv_id="mx.example")
    assert result.decrypt.ok and result.verify.ok, result.verify.reason
    assert result.message.startswith(b"Authentication-Results: mx.example;")
    assert b"smime=pass" in result.message and result.message.endswith(b"Compte rendu: RAS.\r\n")
