"""S/MIME library: what a receiving professional relies on — valid signatures pass, and
altered, untrusted, revoked, mis-addressed, swapped or malformed messages get a clear
result, never an exception."""

from __future__ import annotations

import base64
import datetime as dt
import random
import re
from pathlib import Path

import pytest

from mailserver.smime import (
    DecryptResult,
    DecryptStatus,
    Status,
    UnprotectResult,
    VerifyResult,
    authentication_results,
    decrypt_message,
    encrypt_message,
    mime,
    protect,
    sign_message,
    unprotect,
    verify_message,
)
from tests.smime_support import ALICE, BOB, CAROL, Pki, make_pki, message

AUTHSERV = "mail.hopital.example"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def body_of(data: bytes) -> bytes:
    return mime.split(data)[1]


@pytest.mark.parametrize("who", [ALICE, CAROL], ids=["rsa", "ecdsa"])
def test_signed_message_verifies_and_names_the_signer(pki: Pki, who: str) -> None:
    person = pki.people[who]
    signed = sign_message(message(sender=who), person.signer, pki.chain)
    assert b"multipart/signed" in signed and b"micalg=sha-256" in signed
    result = verify_message(signed, pki.trust())
    assert result.status is Status.PASS, result.reason
    assert result.signer is not None and result.signer.addresses == (who,)
    assert result.content is not None and result.content.endswith(b"Compte rendu: RAS.\r\n")
    field = authentication_results(result, AUTHSERV)
    assert field.startswith(f"Authentication-Results: {AUTHSERV};")
    assert "smime=pass" in field and f'body.smime-identifier="{who}"' in field


def test_lf_line_endings_are_canonicalised(pki: Pki) -> None:
    signed = sign_message(message().replace(b"\r\n", b"\n"), pki.people[ALICE].signer,
                          pki.chain)
    assert verify_message(signed.replace(b"\r\n", b"\n"), pki.trust()).ok


def test_altered_content_fails(pki: Pki) -> None:
    signed = sign_message(message(), pki.people[ALICE].signer, pki.chain)
    tampered = signed.replace(b"Compte rendu: RAS.", b"Compte rendu: OK!.")
    result = verify_message(tampered, pki.trust())
    assert result.status is Status.FAIL and "digest does not match" in result.reason


def test_signer_must_be_the_from_address(pki: Pki) -> None:
    signed = sign_message(message(sender=BOB), pki.people[ALICE].signer, pki.chain)
    result = verify_message(signed, pki.trust())
    assert result.status is Status.POLICY
    assert ALICE in result.reason and BOB in result.reason


def test_untrusted_signer_fails(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", organisation="pirate.example")
    signed = sign_message(message(), other.people[ALICE].signer, other.chain)
    result = verify_message(signed, pki.trust())
    assert result.status is Status.FAIL and "trust anchor" in result.reason


def test_revoked_signer_fails(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    signed = sign_message(message(), pki.people[ALICE].signer, pki.chain)
    before = pki.trust()
    assert verify_message(signed, before).ok
    assert pki.trust() is before  # parsed once, kept while the files do not change
    pki.store.revoke(pki.people[ALICE].sign.certificate.serial_number)
    assert pki.trust() is not before  # the republished CRL is read at once
    result = verify_message(signed, pki.trust())
    assert result.status is Status.FAIL and "revoked" in result.reason
    field = authentication_results(result, AUTHSERV)
    assert "smime=fail" in field and "revoked" in field


def test_expired_signer_fails(pki: Pki) -> None:
    signed = sign_message(message(), pki.people[ALICE].signer, pki.chain)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4000)
    result = verify_message(signed, pki.trust(), at=later)
    assert result.status is Status.FAIL and "expired" in result.reason


def test_encryption_certificate_cannot_sign(pki: Pki) -> None:
    # The people CA issues separate certificates: the encryption one lacks digitalSignature.
    alice = pki.people[ALICE]
    signed = sign_message(message(), alice.decrypter, pki.chain)
    result = verify_message(signed, pki.trust())
    assert result.status is Status.FAIL and "not for signing" in result.reason


def test_opaque_signed_data_is_accepted(pki: Pki) -> None:
    signed = sign_message(message(), pki.people[ALICE].signer, pki.chain, opaque=True)
    assert b"smime-type=signed-data" in signed
    result = verify_message(signed, pki.trust())
    assert result.ok, result.reason
    assert result.content is not None and b"Compte rendu: RAS." in result.content


def test_unsigned_message_is_none(pki: Pki) -> None:
    result = verify_message(message(), pki.trust())
    assert result.status is Status.NONE


@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes256-cbc"])
def test_encrypt_to_rsa_and_ec_recipients(pki: Pki, cipher: str) -> None:
    recipients = [pki.people[BOB].encrypt.certificate, pki.people[CAROL].encrypt.certificate]
    encrypted = encrypt_message(message(), recipients, cipher)  # type: ignore[arg-type]
    assert b"Compte rendu" in encrypted.split(b"\r\n\r\n")[0]  # outer Subject stays
    assert b"RAS." not in encrypted  # "." is outside the base64 alphabet
    kind = b"authEnveloped-data" if cipher == "aes256-gcm" else b"enveloped-data"
    assert kind in encrypted
    for who in (BOB, CAROL):
        result = decrypt_message(encrypted, [pki.people[who].decrypter])
        assert result.ok, result.reason
        assert result.content is not None and result.content.endswith(b"RAS.\r\n")
    stranger = decrypt_message(encrypted, [pki.people[ALICE].decrypter])
    assert stranger.status is DecryptStatus.NOT_FOR_US


@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes256-cbc"])
def test_protect_then_unprotect(pki: Pki, cipher: str) -> None:
    alice, bob = pki.people[ALICE], pki.people[BOB]
    original = message()
    protected = protect(original, alice.signer,
                        [bob.encrypt.certificate, alice.encrypt.certificate],
                        chain=pki.chain, cipher=cipher)  # type: ignore[arg-type]
    assert b"RAS." not in protected  # "." is outside the base64 alphabet
    for reader in (bob, alice):  # the recipient, and the sender's own copy
        result = unprotect(protected, [reader.decrypter], pki.trust(), authserv_id=AUTHSERV)
        assert result.decrypt.ok and result.verify.ok, result.verify.reason
        head, body = mime.split(result.message)
        assert body == b"Compte rendu: RAS.\r\n"
        assert head.startswith(b"Authentication-Results: mail.hopital.example;")
        assert head.endswith(mime.split(original)[0])  # the real header fields, as sent


def test_unprotect_with_lf_line_ends(pki: Pki) -> None:
    """A protected message whose line ends were turned into LF (a Unix mbox, a pipe)."""
    alice, bob = pki.people[ALICE], pki.people[BOB]
    protected = protect(message(), alice.signer, [bob.encrypt.certificate], chain=pki.chain)
    result = unprotect(protected.replace(b"\r\n", b"\n"), [bob.decrypter], pki.trust(),
                       authserv_id=AUTHSERV)
    assert result.decrypt.ok and result.verify.ok, result.verify.reason
    signed = sign_message(message(), alice.signer, pki.chain).replace(b"\r\n", b"\n")
    result = unprotect(signed, [bob.decrypter], pki.trust(), authserv_id=AUTHSERV)
    assert result.verify.ok, result.verify.reason


def test_unprotect_plain_signed_message(pki: Pki) -> None:
    signed = sign_message(message(), pki.people[ALICE].signer, pki.chain)
    result = unprotect(signed, [pki.people[BOB].decrypter], pki.trust(), authserv_id=AUTHSERV)
    assert result.decrypt.status is DecryptStatus.NOT_ENCRYPTED and result.verify.ok
    assert b"smime=pass" in result.message and b"RAS." in result.message


def test_forged_authentication_results_are_removed(pki: Pki) -> None:
    forged = (f"Authentication-Results: {AUTHSERV}; smime=pass\r\n"
              "Authentication-Results: other.example; spf=pass\r\n").encode() + message()
    result = unprotect(forged, [pki.people[BOB].decrypter], pki.trust(), authserv_id=AUTHSERV)
    head = mime.split(result.message)[0]
    fields = [raw for name, raw in mime.fields(head) if name == "authentication-results"]
    assert len(fields) == 2
    assert b"smime=none" in fields[0] and b"other.example" in fields[1]


def test_encrypted_part_swapped_into_another_message(pki: Pki) -> None:
    """Mallory lifts the encrypted body of Alice's message to Bob into his own message,
    or into a new message pretending to be another one of Alice's."""
    alice, bob = pki.people[ALICE], pki.people[BOB]
    original = protect(message(), alice.signer, [bob.encrypt.certificate], chain=pki.chain)
    encrypted_entity = mime.entity_of(original)[1]
    for outer_from, message_id in ((CAROL, "<cr-1@hopital.example>"),
                                   (ALICE, "<other@hopital.example>")):
        outer = (f"From: {outer_from}\r\nTo: {BOB}\r\nSubject: Urgent\r\n"
                 f"Message-ID: {message_id}\r\n").encode()
        forged = mime.join(outer, encrypted_entity)
        result = unprotect(forged, [bob.decrypter], pki.trust(), authserv_id=AUTHSERV)
        assert result.decrypt.ok
        assert result.verify.status in (Status.FAIL, Status.POLICY), result.verify.reason
        assert b"smime=pass" not in result.message


def test_ciphertext_spliced_with_other_recipient_infos(pki: Pki) -> None:
    """Key from one message, ciphertext from another: the GCM tag says no. CBC has no
    tag: its padding check refuses most splices, but about one in 256 decrypts to
    garbage with valid padding by chance, so for CBC what must hold is that the
    other message's plaintext is never recovered."""
    from asn1crypto import cms

    bob = pki.people[BOB]
    for cipher in ("aes256-gcm", "aes256-cbc"):
        first = encrypt_message(message(body="one"), [bob.encrypt.certificate],
                                cipher)  # type: ignore[arg-type]
        second = encrypt_message(message(body="two " * 40), [bob.encrypt.certificate],
                                 cipher)  # type: ignore[arg-type]
        der_one = base64.b64decode(b"".join(body_of(first).split()))
        der_two = base64.b64decode(b"".join(body_of(second).split()))
        info_one, info_two = cms.ContentInfo.load(der_one), cms.ContentInfo.load(der_two)
        field = ("auth_encrypted_content_info" if cipher == "aes256-gcm"
                 else "encrypted_content_info")
        spliced = info_one["content"]
        spliced[field] = info_two["content"][field]
        if cipher == "aes256-gcm":
            spliced["mac"] = info_two["content"]["mac"]
        der = cms.ContentInfo({"content_type": info_one["content_type"].native,
                               "content": spliced}).dump(force=True)
        head = mime.split(first)[0]
        forged = head + b"\r\n" + base64.encodebytes(der).replace(b"\n", b"\r\n")
        result = decrypt_message(forged, [bob.decrypter])
        if cipher == "aes256-gcm":
            assert result.status is DecryptStatus.FAILED, (cipher, result)
        else:
            assert result.status is DecryptStatus.FAILED or (
                b"two two" not in (result.content or b"")
            ), (cipher, result)


def _cms_of(data: bytes) -> tuple[bytes, bytes]:
    """(message up to the base64 CMS part, the DER of the part)."""
    match = re.search(rb"filename=smime\.p7[ms]\r\n\r\n", data)
    assert match is not None
    start = match.end()
    end = data.find(b"\r\n--", start)
    end = len(data) if end < 0 else end
    return data[:start], base64.b64decode(b"".join(data[start:end].split()))


def _with_cms(prefix: bytes, der: bytes, suffix: bytes = b"") -> bytes:
    return prefix + base64.encodebytes(der).replace(b"\n", b"\r\n") + suffix


def test_hostile_cms_never_raises(pki: Pki) -> None:
    """Truncated CMS, wrong tag lengths, random byte flips, in signatures and in encrypted
    parts: always a result, never an exception, and never a pass or a decryption."""
    alice, bob = pki.people[ALICE], pki.people[BOB]
    signed = sign_message(message(), alice.signer, pki.chain)
    encrypted = encrypt_message(message(), [bob.encrypt.certificate])
    rng = random.Random(8551)
    sig_prefix, sig_der = _cms_of(signed)
    sig_suffix = signed[signed.find(b"\r\n--", len(sig_prefix)):]
    enc_prefix, enc_der = _cms_of(encrypted)
    variants: list[tuple[str, bytes, bytes]] = []
    for der, kind in ((sig_der, "sig"), (enc_der, "enc")):
        for cut in (0, 1, 2, 10, len(der) // 3, len(der) // 2, len(der) - 17, len(der) - 1):
            variants.append((kind, f"truncated at {cut}".encode(), der[:cut]))
        # Wrong lengths: the outer SEQUENCE claims more / less than there is.
        variants.append((kind, b"long outer length", der[:2] + b"\xff" + der[3:]))
        variants.append((kind, b"short inner length", der[:4] + b"\x01" + der[5:]))
        variants.append((kind, b"indefinite forever", b"\x30\x80" + der[2:]))
        variants.append((kind, b"huge length", b"\x30\x84\x7f\xff\xff\xff" + der[2:]))
        for _ in range(150):
            mutated = bytearray(der)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            variants.append((kind, b"flipped", bytes(mutated)))
        variants.append((kind, b"garbage", bytes(rng.randrange(256) for _ in range(300))))
    for kind, label, der in variants:
        if kind == "sig":
            result: VerifyResult | DecryptResult = verify_message(
                _with_cms(sig_prefix, der, sig_suffix), pki.trust())
            assert isinstance(result, VerifyResult)
            # A flip in bytes nothing relies on (say, a copy of a CA we already know) may
            # still pass; a pass always vouches for the content as Alice signed it.
            if result.status is Status.PASS:
                assert result.signer is not None and result.signer.addresses == (ALICE,)
                assert result.content == mime.entity_of(message())[1], label
        else:
            result = decrypt_message(_with_cms(enc_prefix, der), [bob.decrypter])
            assert isinstance(result, DecryptResult)
            # A flip in the unauthenticated wrapping may still decrypt to the same
            # plaintext; a different plaintext must never come out.
            if result.ok:
                assert result.content is not None and result.content.endswith(b"RAS.\r\n")
        unprotected = unprotect(_with_cms(enc_prefix if kind == "enc" else sig_prefix, der),
                                [bob.decrypter], pki.trust(), authserv_id=AUTHSERV)
        assert isinstance(unprotected, UnprotectResult)
        assert unprotected.message.startswith(b"Authentication-Results: ")


def test_hostile_mime_framing(pki: Pki) -> None:
    alice = pki.people[ALICE]
    signed = sign_message(message(), alice.signer, pki.chain)
    head, _ = mime.split(signed)
    boundary = re.search(rb'boundary="([^"]+)"', head)
    assert boundary is not None
    cases = {
        "no closing delimiter": signed[: signed.rfind(b"--" + boundary.group(1) + b"--")],
        "one part only": head + b"\r\n--" + boundary.group(1) + b"\r\nhi\r\n--"
                         + boundary.group(1) + b"--\r\n",
        "no boundary": signed.replace(b'boundary="', b'nothing="'),
        "bad base64": signed.replace(b"filename=smime.p7s\r\n\r\nMI",
                                     b"filename=smime.p7s\r\n\r\n!!"),
        "quoted-printable signature": signed.replace(
            b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable"),
        "empty": b"",
        "headers only": b"Content-Type: multipart/signed; boundary=x\r\n",
        "pkcs7 garbage": b"Content-Type: application/pkcs7-mime\r\n\r\nAAAA\r\n",
        "8-bit junk": bytes(range(256)) * 20,
    }
    assert all(data != signed for data in cases.values())
    for label, data in cases.items():
        result = verify_message(data, pki.trust())
        assert result.status in (Status.PERMERROR, Status.NONE, Status.FAIL), (label, result)
        decrypted = decrypt_message(data, [alice.decrypter])
        assert not decrypted.ok, label
        assert unprotect(data, [alice.decrypter], pki.trust(),
                         authserv_id=AUTHSERV).verify.status is not Status.PASS


def test_authentication_results_cannot_be_injected(pki: Pki) -> None:
    result = VerifyResult(Status.FAIL, "bad (evil)\r\nX-Injected: yes", None)
    field = authentication_results(result, AUTHSERV)
    assert "\r\nX-Injected" not in field and "(evil)" not in field
    assert field.count("(") == 1 and field.count(")") == 1
