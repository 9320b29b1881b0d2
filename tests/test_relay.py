"""Two operators on loopback exchanging mail through the trust space: real SMTP,
real mutual TLS, real queue in the database (A on SQLite and on PostgreSQL)."""

from __future__ import annotations

import email
import smtplib
import ssl
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mailserver.pki.local_ca import issue_server_certificate, write_private_key
from mailserver.settings import Settings
from tests.conftest import ServerThread, files_containing
from tests.relay_setup import (
    DOMAIN_A,
    DOMAIN_B,
    PASSWORD,
    Operators,
    make_operators,
    mss,
    queue_size,
    running_pair,
    wait_for,
)

ALICE = f"alice@{DOMAIN_A}"  # a professional at operator A
BRUNO = f"bruno@{DOMAIN_B}"  # a professional at operator B


def message(subject: str, to: str = BRUNO) -> bytes:
    return (
        f"From: Alice <{ALICE}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@{DOMAIN_A}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nCompte rendu.\r\n"
    ).encode()


def submit(server: ServerThread, to: list[str], raw: bytes, **options: list[str]) -> dict:
    context = ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as client:
        client.starttls(context=context)
        client.login(ALICE, PASSWORD)
        return client.sendmail(ALICE, to, raw, **options)


@pytest.fixture
def operators(tmp_path: Path, database_url: str) -> Operators:
    # A's database follows the parameter (SQLite, PostgreSQL); B stays on SQLite.
    url = "" if database_url.startswith("sqlite") else database_url
    return make_operators(tmp_path, url)


@pytest.fixture
def running(operators: Operators) -> Iterator[tuple[ServerThread, ServerThread]]:
    with running_pair(operators) as pair:
        yield pair


def parsed(raw: bytes) -> Message:
    return email.message_from_bytes(raw)


def test_professional_to_remote_professional(running: tuple[ServerThread, ServerThread]) -> None:
    a, b = running
    assert submit(a, [BRUNO], message("cr-1")) == {}
    wait_for(lambda: b.inbox(BRUNO), what="delivery at B")
    [stored] = b.inbox(BRUNO)
    headers = parsed(stored)
    assert headers["Subject"] == "cr-1"
    # B verified A's DKIM signature (Ed25519, relaxed/relaxed) and said so under its id.
    assert headers["DKIM-Signature"] is not None and "c=relaxed/relaxed" in " ".join(
        headers["DKIM-Signature"].split())
    results = " ".join(headers["Authentication-Results"].split())
    assert results.startswith("mx.sante-b.example;")
    assert f"dkim=pass header.d={DOMAIN_A} header.s=mss" in results
    # Received over mutual TLS on B's port 25.
    assert "with ESMTPS" in " ".join(str(v) for v in headers.get_all("Received", []))
    wait_for(lambda: queue_size(a) == 0, what="queue drained")
    assert b.inbox(BRUNO) == [stored]  # once
    assert a.inbox(ALICE) == []  # no bounce


def test_domain_outside_the_trust_space_refused_at_rcpt(
    running: tuple[ServerThread, ServerThread],
) -> None:
    a, _ = running
    context = ssl.create_default_context(cafile=a.settings.path(a.settings.tls.ca))
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=10) as client:
        client.starttls(context=context)
        client.login(ALICE, PASSWORD)
        client.mail(ALICE)
        code, reply = client.rcpt("someone@unlisted.example")
        assert (code, reply[:5]) == (550, b"5.7.1")
        assert b"not in the trust space" in reply
        assert client.rcpt(BRUNO)[0] == 250  # a listed operator is fine
    assert queue_size(a) == 0


def _client_context(b: Settings, cert_pem: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=b.path(b.tls.ca))
    context.check_hostname = False
    if cert_pem is not None and key is not None:
        context.load_cert_chain(cert_pem, key)
    return context


def _relay_mail_from(b: Settings, context: ssl.SSLContext | None, sender: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", b.listen.port("smtp"), timeout=10) as client:
        client.ehlo("mx.peer.example")
        if context is not None:
            client.starttls(context=context)
            client.ehlo("mx.peer.example")
        return client.mail(sender)


def test_port_25_requires_the_listed_operator_certificate(
    running: tuple[ServerThread, ServerThread], tmp_path: Path,
) -> None:
    a, b = running
    sb = b.settings
    # Without TLS, or with TLS but no client certificate: 530 5.7.0 before DATA.
    code, reply = _relay_mail_from(sb, None, ALICE)
    assert (code, reply[:5]) == (530, b"5.7.0")
    code, reply = _relay_mail_from(sb, _client_context(sb, None, None), ALICE)
    assert (code, reply[:5]) == (530, b"5.7.0")
    # A's genuine operator certificate, for A's domain: accepted.
    sa = a.settings
    genuine = _client_context(sb, sa.path(sa.tls.cert), sa.path(sa.tls.key))
    assert _relay_mail_from(sb, genuine, ALICE)[0] == 250
    assert _relay_mail_from(sb, genuine, "<>")[0] == 250  # bounces from a listed operator
    # The same certificate claiming another listed domain's mail: wrong DN.
    code, reply = _relay_mail_from(sb, genuine, f"someone@{DOMAIN_B}")
    assert (code, reply[:5]) == (550, b"5.7.1") and b"not in the trust space" in reply
    # A domain absent from the list.
    code, reply = _relay_mail_from(sb, genuine, "x@unlisted.example")
    assert (code, reply[:5]) == (550, b"5.7.1") and b"not in the trust space" in reply
    # A certificate from A's CA (so it chains) but with another DN: refused.
    ca_key = serialization.load_pem_private_key(sa.path(sa.tls.ca_key).read_bytes(), None)
    from cryptography import x509

    ca_cert = x509.load_pem_x509_certificate(sa.path(sa.tls.ca).read_bytes())
    key, cert = issue_server_certificate(ca_key, ca_cert, ["impostor.example"],  # type: ignore[arg-type]
                                         "impostor")
    cert_path, key_path = tmp_path / "impostor.pem", tmp_path / "impostor.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private_key(key_path, key)
    code, reply = _relay_mail_from(sb, _client_context(sb, cert_path, key_path), ALICE)
    assert (code, reply[:5]) == (550, b"5.7.1")
    assert b"CN=impostor.example" in reply and b"not in the trust space" in reply


def test_peer_down_then_back_delivers_once(operators: Operators) -> None:
    a = ServerThread(operators.a).start()
    try:
        a.add_mailbox(ALICE, PASSWORD)
        assert submit(a, [BRUNO], message("while-b-down")) == {}
        # B is not listening: the message waits, retried, nothing lost.
        wait_for(lambda: any(e.attempts >= 2 for e in a.call(a.app.queue.entries())),
                 what="retries while B is down")
        [entry] = a.call(a.app.queue.entries())
        assert entry.recipient == BRUNO and "4.4.2" in entry.last_reply
        listing = mss(operators.a, "queue", "list")
        assert f"<{BRUNO}>" in listing and "1 entries" in listing
        assert "Subject: while-b-down" in mss(operators.a, "queue", "show", str(entry.id))
        mss(operators.a, "queue", "hold", str(entry.id))
        # Encryption at rest covers the queue: no plaintext in any file of A (the
        # Message-ID, which threads are kept by, is metadata in clear by design).
        assert files_containing(operators.a.data_dir, b"Subject: while-b-down") == []
        assert files_containing(operators.a.data_dir, b"Compte rendu.") == []
        # A rotation re-wraps the queued message's key; the running server follows.
        rotated = mss(operators.a, "keys", "rotate")
        assert "and 1 queued messages re-wrapped" in rotated
        b = ServerThread(operators.b).start()
        try:
            b.add_mailbox(BRUNO, PASSWORD)
            a.call(a.app.queue.entries())
            import time

            time.sleep(1.5)  # held: never tried although B is back
            assert b.inbox(BRUNO) == []
            mss(operators.a, "queue", "retry", str(entry.id))
            wait_for(lambda: b.inbox(BRUNO), what="delivery after B came back")
            wait_for(lambda: queue_size(a) == 0, what="queue drained")
            time.sleep(1.0)
            [stored] = b.inbox(BRUNO)  # exactly once
            assert b"Subject: while-b-down" in stored
        finally:
            b.stop()
        assert a.inbox(ALICE) == []  # no delay notice before 4 hours, no bounce
    finally:
        a.stop()


def test_permanent_failure_bounces_a_dsn(running: tuple[ServerThread, ServerThread]) -> None:
    a, b = running
    nobody = f"nobody@{DOMAIN_B}"
    refused = submit(
        a, [nobody, BRUNO], message("to-nobody", to=nobody),
        mail_options=["RET=FULL", "ENVID=env+2Bid-42"],
        rcpt_options=["NOTIFY=FAILURE,DELAY", f"ORCPT=rfc822;{nobody}"],
    )
    assert refused == {}  # A accepts both: it cannot know B's mailboxes
    wait_for(lambda: a.inbox(ALICE), what="DSN in the sender's INBOX")
    wait_for(lambda: queue_size(a) == 0, what="queue drained")
    [dsn] = a.inbox(ALICE)
    report = parsed(dsn)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    human, status, returned = report.get_payload()
    assert nobody in human.get_payload(decode=True).decode()
    assert status.get_content_type() == "message/delivery-status"
    fields = dsn.decode()
    assert "Reporting-MTA: dns; mx.sante-a.example" in fields
    assert "Original-Envelope-Id: env+id-42" in fields  # xtext decoded
    assert f"Final-Recipient: rfc822; {nobody}" in fields
    assert f"Original-Recipient: rfc822;{nobody}" in fields
    assert "Action: failed" in fields and "Status: 5.1.1" in fields
    assert "Diagnostic-Code: smtp; 550 5.1.1" in fields
    assert BRUNO not in fields  # Bruno got it
    assert returned.get_content_type() == "message/rfc822"  # RET=FULL
    assert b"Compte rendu." in dsn
    assert len(b.inbox(BRUNO)) == 1


def test_notify_never_suppresses_the_dsn(running: tuple[ServerThread, ServerThread]) -> None:
    a, _ = running
    nobody = f"nobody@{DOMAIN_B}"
    assert submit(a, [nobody], message("never"), rcpt_options=["NOTIFY=NEVER"]) == {}
    wait_for(lambda: queue_size(a) == 0, what="queue drained")
    assert a.inbox(ALICE) == []


def test_dsn_parameters_are_checked(running: tuple[ServerThread, ServerThread]) -> None:
    a, _ = running
    context = ssl.create_default_context(cafile=a.settings.path(a.settings.tls.ca))
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=10) as client:
        client.starttls(context=context)
        client.ehlo("client.example")
        assert client.has_extn("dsn")
        client.login(ALICE, PASSWORD)
        code, reply = client.mail(ALICE, ["RET=BODY"])
        assert (code, reply[:5]) == (501, b"5.5.4")
        assert client.mail(ALICE, ["RET=HDRS", "ENVID=abc"])[0] == 250
        code, reply = client.rcpt(BRUNO, ["NOTIFY=NEVER,FAILURE"])
        assert (code, reply[:5]) == (501, b"5.5.4")
        code, reply = client.rcpt(BRUNO, ["ORCPT=no-semicolon"])
        assert (code, reply[:5]) == (501, b"5.5.4")
        assert client.rcpt(BRUNO, ["NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{BRUNO}"])[0] == 250


def test_forged_authentication_results_stripped(
    running: tuple[ServerThread, ServerThread],
) -> None:
    a, b = running
    forged = (b"Authentication-Results: mx.sante-b.example; dkim=pass header.d=forged.example\r\n"
              b"Authentication-Results: other.example; spf=pass\r\n")
    assert submit(a, [BRUNO], forged + message("forged")) == {}
    wait_for(lambda: b.inbox(BRUNO), what="delivery at B")
    [stored] = b.inbox(BRUNO)
    assert b"forged.example" not in stored  # claimed B's authserv-id: removed
    assert b"Authentication-Results: other.example; spf=pass" in stored  # not ours: kept
    assert stored.count(b"mx.sante-b.example;") == 1  # B's own verdict


def test_delay_notice_then_expiry_bounce(operators: Operators) -> None:
    # Ages scaled down: a delay notice after ~0.7 s, expiry after ~3 s.
    from tests.relay_setup import tune

    settings = tune(operators.a, delay_warning_hours="0.0002", max_age_hours="0.0008")
    a = ServerThread(settings).start()  # B never comes up
    try:
        a.add_mailbox(ALICE, PASSWORD)
        assert submit(a, [BRUNO], message("never-arrives")) == {}
        wait_for(lambda: len(a.inbox(ALICE)) >= 2, timeout=30, what="delay notice and bounce")
        wait_for(lambda: queue_size(a) == 0, what="queue emptied")
        delayed, failed = (m.decode() for m in a.inbox(ALICE))
        assert "Action: delayed" in delayed and "Status: 4.4.2" in delayed
        assert "Will-Retry-Until: " in delayed
        assert "text/rfc822-headers" in delayed  # a delay notice returns headers only
        assert "Action: failed" in failed and "Status: 5.4.7" in failed
        assert f"Final-Recipient: rfc822; {BRUNO}" in failed
        assert len(a.inbox(ALICE)) == 2  # one delay notice, one bounce
    finally:
        a.stop()


def test_peer_with_another_dn_gets_nothing(running: tuple[ServerThread, ServerThread]) -> None:
    """A's list says B's operator certificate has another DN: A does not deliver
    to whoever answers on B's port, the message waits (4.7.5) and B gets nothing."""
    from mailserver.trust.whitelist import parse_whitelist
    from tests.relay_setup import operator_dn, whitelist

    a, b = running
    wrong = whitelist({DOMAIN_A: operator_dn(a.settings),
                       DOMAIN_B: "CN=mx.sante-b.example,O=another operator,C=FR"})
    a.call(a.app.trust.replace(parse_whitelist(wrong.encode())))
    assert submit(a, [BRUNO], message("wrong-dn")) == {}
    wait_for(lambda: any("4.7.5" in e.last_reply for e in a.call(a.app.queue.entries())),
             what="deferred for the DN")
    [entry] = a.call(a.app.queue.entries())
    assert "not the operator DN of the trust list" in entry.last_reply
    assert b.inbox(BRUNO) == []


def test_notify_success_comes_back_from_the_remote_operator(
    running: tuple[ServerThread, ServerThread],
) -> None:
    """RFC 3461: A relays NOTIFY/ORCPT/ENVID to B, B delivers and reports
    "delivered" back to A's sender, over the trust space with a null sender."""
    a, b = running
    assert submit(a, [BRUNO], message("please-confirm"), mail_options=["ENVID=conf-1"],
                  rcpt_options=["NOTIFY=SUCCESS", f"ORCPT=rfc822;{BRUNO}"]) == {}
    wait_for(lambda: a.inbox(ALICE), what="delivered DSN back at A")
    [report] = a.inbox(ALICE)
    text = report.decode()
    assert "Reporting-MTA: dns; mx.sante-b.example" in text
    assert "Original-Envelope-Id: conf-1" in text
    assert f"Original-Recipient: rfc822;{BRUNO}" in text
    assert "Action: delivered" in text and "Status: 2.0.0" in text
    assert "text/rfc822-headers" in text and "Subject: please-confirm" in text
    assert len(b.inbox(BRUNO)) == 1
    wait_for(lambda: queue_size(a) == 0 and queue_size(b) == 0, what="queues drained")


def test_mdn_round_trip(running: tuple[ServerThread, ServerThread]) -> None:
    """RFC 8098 with the Direct Project's options: B reports "processed" and,
    asked for final delivery, "dispatched", back to A's sender."""
    a, b = running
    asked = (f"Disposition-Notification-To: <{ALICE}>\r\n"
             "Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY="
             "optional,true\r\n").encode()
    assert submit(a, [BRUNO], asked + message("mdn-1")) == {}
    wait_for(lambda: len(a.inbox(ALICE)) >= 2, what="two MDNs back at A")
    reports = sorted(m.decode() for m in a.inbox(ALICE))
    dispositions = sorted(
        line for r in reports for line in r.splitlines() if line.startswith("Disposition:"))
    assert dispositions == [
        "Disposition: automatic-action/MDN-sent-automatically; dispatched",
        "Disposition: automatic-action/MDN-sent-automatically; processed",
    ]
    for report in reports:
        assert "report-type=disposition-notification" in report
        assert f"Final-Recipient: rfc822; {BRUNO}" in report
        assert f"Original-Message-ID: <mdn-1@{DOMAIN_A}>" in report
    # A forged notification address (not the envelope sender) gets nothing.
    forged = b"Disposition-Notification-To: <victim@sante-a.example>\r\n"
    assert submit(a, [BRUNO], forged + message("mdn-2")) == {}
    wait_for(lambda: len(b.inbox(BRUNO)) == 2, what="second message at B")
    wait_for(lambda: queue_size(b) == 0, what="B's queue drained")
    assert len(a.inbox(ALICE)) == 2
