"""Reports between two operators: the DSNs and MDNs B writes for A's senders leave
DKIM-signed with B's domain key (checked here with dkimpy, and by A on intake), and a
message from A refused by B after DATA answers an asked-for MDN ``processed/error``
(RFC 8098 §3.2.6) through B's outbound queue."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from mailserver.dkim import keys as dkim_keys
from tests import xdm_fixtures as fx
from tests.conftest import ServerThread
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

ALICE = f"alice@{DOMAIN_A}"
BRUNO = f"bruno@{DOMAIN_B}"


@pytest.fixture
def operators(tmp_path: Path, database_url: str) -> Operators:
    url = "" if database_url.startswith("sqlite") else database_url
    operators = make_operators(tmp_path, url)
    # B signs with RSA-2048; A finds B's public key in its DNS override directory.
    mss(operators.b, "dkim", "keygen", DOMAIN_B)
    a = operators.a
    override = a.path(a.dkim.dns_override_dir)
    override.mkdir(parents=True, exist_ok=True)
    (override / f"{operators.b.dkim.selector}._domainkey.{DOMAIN_B}").write_text(
        dkim_keys.public_record(operators.b.path(operators.b.dkim.keys_dir), DOMAIN_B))
    return operators


@pytest.fixture
def running(operators: Operators) -> Iterator[tuple[ServerThread, ServerThread]]:
    with running_pair(operators) as pair:
        yield pair


def _b_key(b: ServerThread) -> bytes:
    return dkim_keys.public_record(b.settings.path(b.settings.dkim.keys_dir),
                                   DOMAIN_B).encode()


def _dkim_pass(raw: bytes, b: ServerThread) -> bool:
    """dkimpy's own verdict, with B's published key as the only DNS answer."""
    record = _b_key(b)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return record if name.rstrip(b".") == f"mss._domainkey.{DOMAIN_B}".encode() else b""

    return bool(dkim.verify(raw, dnsfunc=dnsfunc))


def submit(server: ServerThread, raw: bytes, **options: list[str]) -> dict[str, object]:
    context = ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as client:
        client.starttls(context=context)
        client.login(ALICE, PASSWORD)
        return client.sendmail(ALICE, [BRUNO], raw, **options)  # type: ignore[return-value]


def plain(subject: str, extra: str = "") -> bytes:
    return (f"From: Alice <{ALICE}>\r\nTo: <{BRUNO}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@{DOMAIN_A}>\r\n{extra}MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nCompte rendu.\r\n").encode()


def test_dsn_and_mdn_from_b_are_dkim_signed(running: tuple[ServerThread, ServerThread]) -> None:
    a, b = running
    asked = f"Disposition-Notification-To: <{ALICE}>\r\n"
    assert submit(a, plain("signed-reports", asked),
                  rcpt_options=["NOTIFY=SUCCESS", f"ORCPT=rfc822;{BRUNO}"]) == {}
    wait_for(lambda: len(a.inbox(ALICE)) >= 2, what="DSN and MDN back at A")
    reports = a.inbox(ALICE)
    kinds = sorted("disposition-notification" if b"report-type=disposition-notification"
                   in r else "delivery-status" for r in reports)
    assert kinds == ["delivery-status", "disposition-notification"]
    for report in reports:
        head = report.split(b"\r\n\r\n", 1)[0].decode()
        [signature] = [line for line in head.replace("\r\n\t", " ").splitlines()
                       if line.startswith("DKIM-Signature:")]
        assert "d=sante-b.example" in signature and "a=rsa-sha256" in signature
        assert _dkim_pass(report, b)
        # A verified it on intake too, and said so under its own authserv-id.
        assert f"dkim=pass header.d={DOMAIN_B} header.s=mss" in " ".join(head.split())
        # Altered on the way: dkimpy says so (the test can fail).
        assert not _dkim_pass(report.replace(b"Final-Recipient", b"Final-Recipienx", 1), b)
    wait_for(lambda: queue_size(a) == 0 and queue_size(b) == 0, what="queues drained")


def _relay_context(a: ServerThread, b: ServerThread) -> ssl.SSLContext:
    sa, sb = a.settings, b.settings
    context = ssl.create_default_context(cafile=sb.path(sb.tls.ca))
    context.check_hostname = False
    context.load_cert_chain(sa.path(sa.tls.cert), sa.path(sa.tls.key))  # A's operator cert
    return context


def relay_to_b(a: ServerThread, b: ServerThread, raw: bytes) -> tuple[int, bytes]:
    """What A's relay would send, straight to B's port 25 with A's operator certificate
    (A's own pipeline would refuse the message before relaying it)."""
    with smtplib.SMTP("127.0.0.1", b.port("smtp"), timeout=10) as client:
        client.ehlo(f"mx.{DOMAIN_A}")
        client.starttls(context=_relay_context(a, b))
        client.ehlo(f"mx.{DOMAIN_A}")
        assert client.mail(ALICE)[0] == 250
        assert client.rcpt(BRUNO)[0] == 250
        return client.data(raw)


def inconsistent(headers: dict[str, str]) -> bytes:
    """A structured message whose X-MSS-CODECDA contradicts its CDA document."""
    return fx.message(ALICE, BRUNO, xdm=fx.package(),
                      headers={"X-MSS-CODECDA": "34133-9", **headers})


def test_refused_relayed_message_gets_a_processed_error_mdn(
    running: tuple[ServerThread, ServerThread],
) -> None:
    a, b = running
    code, reply = relay_to_b(a, b, inconsistent({
        "Disposition-Notification-To": ALICE, "Message-ID": f"<cr-7@{DOMAIN_A}>"}))
    assert code == 554 and b"MSS-CODECDA" in reply
    wait_for(lambda: a.inbox(ALICE), what="MDN processed/error back at A")
    [report] = a.inbox(ALICE)
    notification = report.split(b"Content-Type: message/disposition-notification")[1]
    # RFC 8098 §3.2.6 "processed/error" (main now writes the ANS guide's
    # "processed/Error: <code>^<label>" here: both read the same, case-insensitively).
    assert (b"disposition: automatic-action/mdn-sent-automatically; processed/error"
            in notification.lower())
    assert b"Error: MSS-CODECDA^X-MSS-CODECDA declare 34133-9" in notification
    assert f"Original-Message-ID: <cr-7@{DOMAIN_A}>".encode() in notification
    assert f"Final-Recipient: rfc822;{BRUNO}".encode() in notification
    assert b"Auto-Submitted: auto-replied" in report
    assert _dkim_pass(report, b)  # through B's queue, signed like any outgoing mail
    assert b.inbox(BRUNO) == []

    # Direct's final-delivery option alone asks for it too (to the envelope sender).
    direct = {"Disposition-Notification-Options":
              "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true"}
    assert relay_to_b(a, b, inconsistent(direct))[0] == 554
    wait_for(lambda: len(a.inbox(ALICE)) == 2, what="second MDN at A")

    # Not asked, asked for a third party, or an automatic message: nothing comes back.
    assert relay_to_b(a, b, inconsistent({}))[0] == 554
    assert relay_to_b(a, b, inconsistent(
        {"Disposition-Notification-To": f"someone@{DOMAIN_A}"}))[0] == 554
    assert relay_to_b(a, b, inconsistent(
        {"Disposition-Notification-To": ALICE, "Auto-Submitted": "auto-generated"}))[0] == 554
    wait_for(lambda: queue_size(b) == 0, what="B's queue drained")
    assert len(a.inbox(ALICE)) == 2
    assert b.inbox(BRUNO) == []


def test_no_refusal_notice_for_a_temporary_refusal_or_a_null_sender() -> None:
    """4xx: the sending server tries again, nothing is final; <>: a report is never
    answered (RFC 3834 §2)."""
    from email import message_from_bytes

    from mailserver.queue.mdn import refusal_notice
    from policies.decision import Reject

    headers = message_from_bytes(f"Disposition-Notification-To: {ALICE}\r\n\r\n".encode())

    def notice(mail_from: str, decision: Reject) -> tuple[str, bytes] | None:
        return refusal_notice(mail_from=mail_from, headers=headers, final_recipients=[BRUNO],
                              problems=(), decision=decision,
                              reporting_host=f"mx.{DOMAIN_B}")

    refused = Reject(554, "5.6.0", "refused", "refusé", "rule")
    found = notice(ALICE, refused)
    assert found is not None and found[0] == ALICE and b"Error: 5.6.0^refuse" in found[1]
    assert notice(ALICE, Reject(451, "4.3.0", "later", "plus tard", "rule")) is None
    assert notice("", refused) is None
