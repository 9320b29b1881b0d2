"""S/MIME between two operators through real SMTP, real mutual TLS and real IMAP:
A protects (Direct style: wrap, sign with its operator certificate, encrypt to the
directory's certificates), DKIM-signs and relays; B decrypts, verifies, unwraps and
records dkim and smime in Authentication-Results. A recipient with a certificate of
its own gets the message end to end. Hostile CMS on B's port 25 gets a clear outcome."""

from __future__ import annotations

import asyncio
import base64
import email
import imaplib
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from directory.certificates import Certificates
from mailserver.app import TRUST_CHECK_SECONDS
from mailserver.pki.local_pki import LocalPki
from mailserver.pki.operator import load_operator
from mailserver.queue.protect import Refusal
from mailserver.settings import Settings
from mailserver.smime import Identity, protect
from mailserver.smime.mime import split
from mailserver.store.database import create_engine
from tests.conftest import ServerThread
from tests.relay_setup import (
    DOMAIN_A,
    DOMAIN_B,
    PASSWORD,
    Operators,
    enable_smime,
    make_operators,
    mss,
    queue_size,
    running_pair,
    tune,
    wait_for,
)

ALICE = f"alice@{DOMAIN_A}"
BRUNO = f"bruno@{DOMAIN_B}"
CLAIRE = f"claire@{DOMAIN_B}"  # has an encryption certificate of her own


def message(subject: str, to: str = BRUNO) -> bytes:
    return (
        f"From: Alice <{ALICE}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@{DOMAIN_A}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nCompte rendu confidentiel.\r\n"
    ).encode()


def submit(server: ServerThread, to: list[str], raw: bytes) -> dict:
    context = ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as client:
        client.starttls(context=context)
        client.login(ALICE, PASSWORD)
        return client.sendmail(ALICE, to, raw)


def imap_messages(server: ServerThread, address: str) -> list[bytes]:
    """What the professional's mail client gets: every INBOX message over IMAPS."""
    context = ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context) as imap:
        imap.login(address, PASSWORD)
        imap.select("INBOX")
        _, data = imap.uid("SEARCH", "ALL")
        found = []
        for uid in data[0].split():
            _, fetched = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            found.append(bytes(fetched[0][1]))
        return found


def auth_results(raw: bytes) -> str:
    head, _ = split(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    fields = email.message_from_bytes(head + b"\r\n").get_all("Authentication-Results", [])
    return " ".join(" ".join(str(f).split()) for f in fields)


@pytest.fixture
def operators(tmp_path: Path, database_url: str) -> Operators:
    url = "" if database_url.startswith("sqlite") else database_url
    operators = make_operators(tmp_path, url)
    enable_smime(operators)
    operators.reload()
    return operators


@pytest.fixture
def running(operators: Operators) -> Iterator[tuple[ServerThread, ServerThread]]:
    with running_pair(operators, (CLAIRE,)) as pair:
        yield pair


def test_signed_encrypted_arrives_verified_and_decrypted(
    running: tuple[ServerThread, ServerThread],
) -> None:
    a, b = running
    assert submit(a, [BRUNO], message("smime-1")) == {}
    wait_for(lambda: b.inbox(BRUNO), what="delivery at B")
    [fetched] = imap_messages(b, BRUNO)
    results = auth_results(fetched)
    assert results.startswith("mx.sante-b.example;")
    assert f"dkim=pass header.d={DOMAIN_A}" in results
    assert "smime=pass" in results and "decrypted" in results and "unwrapped" in results
    assert f'body.smime-identifier="{DOMAIN_A}"' in results
    parsed = email.message_from_bytes(fetched)
    assert parsed["Subject"] == "smime-1" and parsed["From"] == f"Alice <{ALICE}>"
    assert parsed.get_content_type() == "text/plain"
    assert b"Compte rendu confidentiel." in fetched


def test_queue_row_holds_ciphertext(operators: Operators) -> None:
    # B is down: the message waits in A's queue, which holds only ciphertext.
    a = ServerThread(operators.a).start()
    try:
        a.add_mailbox(ALICE, PASSWORD)
        assert submit(a, [BRUNO], message("queued")) == {}
        wait_for(lambda: queue_size(a) == 1, what="queued at A")
        [entry] = a.call(a.app.queue.entries())
        _, data = a.call(a.app.queue.entry(entry.id))
    finally:
        a.stop()
    head, _ = split(data)
    assert b"application/pkcs7-mime" in head and head.startswith(b"DKIM-Signature:")
    assert b"Compte rendu" not in data


def test_recipient_with_own_certificate_kept_end_to_end(
    operators: Operators, tmp_path: Path,
) -> None:
    # Claire's encryption certificate, from B's PKI, is in A's directory: A encrypts to
    # her (and to itself), not to B's operator; B cannot open it and keeps it as it is.
    b_pki = LocalPki(operators.b.data_dir / "pki")
    issued = b_pki.issue(CLAIRE, "encrypt", organisation=DOMAIN_B, key_type="rsa2048")
    mss(operators.a, "directory", "cert", "add", str(issued.certificate_path),
        "--address", CLAIRE, "--usage", "encrypt")
    a = ServerThread(operators.a).start()
    b = ServerThread(operators.b).start()
    try:
        a.add_mailbox(ALICE, PASSWORD)
        b.add_mailbox(BRUNO, PASSWORD)
        b.add_mailbox(CLAIRE, PASSWORD)
        # One message to both: each gets the copy meant for her or his certificate.
        assert submit(a, [CLAIRE, BRUNO], message("e2e", to=CLAIRE)) == {}
        wait_for(lambda: b.inbox(CLAIRE) and b.inbox(BRUNO), what="delivery at B")
        [kept] = imap_messages(b, CLAIRE)
        [opened] = imap_messages(b, BRUNO)
    finally:
        a.stop()
        b.stop()
    assert "smime=none" in auth_results(kept)
    assert b"application/pkcs7-mime" in kept and b"Compte rendu" not in kept
    assert "smime=pass" in auth_results(opened) and b"Compte rendu" in opened
    # Claire's client decrypts what IMAP gave her, then verifies A's signature.
    path = tmp_path / "kept.eml"
    path.write_bytes(kept)
    decrypted = subprocess.run(
        ["openssl", "cms", "-decrypt", "-in", str(path), "-inkey", str(issued.key_path),
         "-recip", str(issued.certificate_path)], capture_output=True, check=True,
    ).stdout
    signed_path = tmp_path / "signed.eml"
    signed_path.write_bytes(decrypted)
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes((operators.a.data_dir / "pki/ca/root/ca.pem").read_bytes())
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-in", str(signed_path), "-CAfile", str(anchors),
         "-purpose", "any"], capture_output=True,
    )
    assert verified.returncode == 0, verified.stderr
    assert b"message/rfc822" in verified.stdout and b"Compte rendu confidentiel." in verified.stdout


def _unbind(settings: Settings, name: str) -> None:
    async def go() -> None:
        engine = create_engine(settings.database_url)
        try:
            certificates = Certificates(engine)
            for record in await certificates.bound_to(name):
                await certificates.remove(record.sha256, name)
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_always_refuses_a_recipient_without_certificate(operators: Operators) -> None:
    operators.a = tune(operators.a, when='"always"')
    _unbind(operators.a, DOMAIN_B)  # A's directory no longer knows B's certificate
    a = ServerThread(operators.a).start()
    try:
        a.add_mailbox(ALICE, PASSWORD)
        # Known from the envelope: refused at RCPT (DESIGN: envelope rules answer there).
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            submit(a, [BRUNO], message("nocert"))
        code, reply = refused.value.recipients[BRUNO]
        assert code == 550 and reply.startswith(b"5.7.1 S/MIME is required")
        assert BRUNO.encode() in reply
        assert queue_size(a) == 0
        # The check at the end of DATA stands too (a certificate removed meanwhile).
        copies = a.call(a.app.protector.protect_outgoing(message("late"), ALICE, [BRUNO]))
        assert isinstance(copies, Refusal) and copies.code == 550
    finally:
        a.stop()


def test_certificate_policy_sends_plain_without_certificate(operators: Operators) -> None:
    # when = "certificate" (the default): no certificate, no S/MIME; smime=none at B.
    _unbind(operators.a, DOMAIN_B)
    a = ServerThread(operators.a).start()
    b = ServerThread(operators.b).start()
    try:
        a.add_mailbox(ALICE, PASSWORD)
        b.add_mailbox(BRUNO, PASSWORD)
        assert submit(a, [BRUNO], message("plain")) == {}
        wait_for(lambda: b.inbox(BRUNO), what="delivery at B")
        [fetched] = imap_messages(b, BRUNO)
    finally:
        a.stop()
        b.stop()
    results = auth_results(fetched)
    assert "dkim=pass" in results and "smime=none" in results


# ---- hostile CMS on B's port 25, sent with A's genuine operator TLS certificate ----

def relay_to_b(a: Settings, b: Settings, raw: bytes) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=b.path(b.tls.ca))
    context.check_hostname = False
    context.load_cert_chain(a.path(a.tls.cert), a.path(a.tls.key))
    with smtplib.SMTP("127.0.0.1", b.listen.port("smtp"), timeout=10) as client:
        client.starttls(context=context)
        try:
            client.sendmail(ALICE, [BRUNO], raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error
    return 250, b""


def protected(a: Settings, b: Settings, raw: bytes, signer: Identity | None = None,
              chain: tuple[x509.Certificate, ...] | None = None) -> bytes:
    keys = load_operator(a)
    theirs = load_operator(b)
    assert keys is not None and theirs is not None
    return protect(raw, signer or keys.signer, [theirs.encryption_certificate],
                   chain=keys.chain if chain is None else chain)


def stored_results(b: ServerThread) -> str:
    wait_for(lambda: b.inbox(BRUNO), what="delivery at B")
    return auth_results(b.inbox(BRUNO)[-1])


def test_truncated_cms_refused(running: tuple[ServerThread, ServerThread]) -> None:
    a, b = running
    raw = protected(a.settings, b.settings, message("truncated"))
    head, body = split(raw)
    code, reply = relay_to_b(a.settings, b.settings, head + b"\r\n" + body[: len(body) // 2])
    assert code == 550 and reply.startswith(b"5.7.5 S/MIME: cannot read the encrypted")
    assert b.inbox(BRUNO) == []


def test_swapped_encrypted_part_delivered_as_failed(
    running: tuple[ServerThread, ServerThread],
) -> None:
    a, b = running
    original = protected(a.settings, b.settings, message("original"))
    _, body = split(original)
    head, _ = split(protected(a.settings, b.settings, message("replayed")))
    assert relay_to_b(a.settings, b.settings, head + b"\r\n" + body)[0] == 250
    results = stored_results(b)
    assert "smime=fail" in results and "swapped" in results


def test_tampered_ciphertext_refused(running: tuple[ServerThread, ServerThread]) -> None:
    a, b = running
    raw = protected(a.settings, b.settings, message("tampered"))
    head, body = split(raw)
    der = bytearray(base64.b64decode(body))
    der[-40] ^= 0x01  # inside the AES-GCM ciphertext or tag
    body = base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n")
    code, reply = relay_to_b(a.settings, b.settings, head + b"\r\n" + body)
    assert code == 550 and reply.startswith(b"5.7.5")


def test_untrusted_signer_delivered_as_failed(
    running: tuple[ServerThread, ServerThread], tmp_path: Path,
) -> None:
    a, b = running
    rogue = LocalPki(tmp_path / "rogue")
    rogue.init("rogue.example", "ec256")
    issued = rogue.issue(DOMAIN_A, "sign", organisation="rogue", key_type="ec256")
    raw = protected(a.settings, b.settings, message("rogue"),
                    Identity(issued.certificate, issued.key),
                    tuple(rogue.chain_of(issued.registration.issuer)))
    assert relay_to_b(a.settings, b.settings, raw)[0] == 250
    results = stored_results(b)
    assert "smime=fail" in results
    assert b"Compte rendu" in b.inbox(BRUNO)[-1]  # readable, with the warning


def test_revoked_signer_delivered_as_failed(
    running: tuple[ServerThread, ServerThread],
) -> None:
    a, b = running
    a_pki = LocalPki(a.settings.data_dir / "pki")
    issued = a_pki.issue(DOMAIN_A, "sign", organisation=DOMAIN_A, key_type="ec256")
    a_pki.revoke(issued.certificate.serial_number)
    # B holds A's CRL (as CRL fetching would bring it).
    crl = a_pki.crl_dir / f"{issued.registration.issuer}.crl"
    (b.settings.data_dir / "pki" / "crl" / "peer-a-people.crl").write_bytes(crl.read_bytes())
    time.sleep(TRUST_CHECK_SECONDS + 0.5)  # B re-reads its trust store
    raw = protected(a.settings, b.settings, message("revoked"),
                    Identity(issued.certificate, issued.key),
                    tuple(a_pki.chain_of(issued.registration.issuer)))
    assert relay_to_b(a.settings, b.settings, raw)[0] == 250
    results = stored_results(b)
    assert "smime=fail" in results and "revoked" in results


def test_signer_not_the_sender_delivered_as_policy(
    running: tuple[ServerThread, ServerThread],
) -> None:
    a, b = running
    # B's operator certificate signing mail that claims to be from A's domain.
    theirs = load_operator(b.settings)
    assert theirs is not None
    raw = protected(a.settings, b.settings, message("impostor"), theirs.signer, theirs.chain)
    assert relay_to_b(a.settings, b.settings, raw)[0] == 250
    results = stored_results(b)
    assert "smime=policy" in results or "smime=fail" in results
    assert DOMAIN_B in results
