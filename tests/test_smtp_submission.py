"""Submission (587 STARTTLS, 465 implicit TLS) and intake (25), through smtplib
over real TLS against the real server."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from tests.conftest import DOMAIN, ServerThread

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
PASSWORD = "correct horse battery"


def tls_context(server: ServerThread) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))


def submission(server: ServerThread) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10)
    client.ehlo("client.example")
    client.starttls(context=tls_context(server))
    client.ehlo("client.example")
    return client


MESSAGE = (
    f"From: Alice <{ALICE}>\r\nTo: Bob <{BOB}>\r\nSubject: Résultats\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\nBonjour Bob,\r\nles résultats sont là.\r\n"
).encode()


@pytest.fixture
def accounts(server: ServerThread) -> ServerThread:
    server.add_mailbox(ALICE, PASSWORD)
    server.add_mailbox(BOB, PASSWORD)
    return server


def test_ehlo_before_tls_offers_starttls_not_auth(accounts: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", accounts.port("submission"), timeout=10) as client:
        code, _ = client.ehlo("client.example")
        assert code == 250
        for keyword in ("starttls", "size", "8bitmime", "smtputf8", "pipelining",
                        "enhancedstatuscodes"):
            assert client.has_extn(keyword), keyword
        assert client.esmtp_features["size"] == str(accounts.settings.smtp.max_message_size)
        assert not client.has_extn("auth")
        code, reply = client.docmd("AUTH", "PLAIN AGFsaWNlAHg=")
        assert (code, reply[:5]) == (530, b"5.7.0")
        code, reply = client.docmd("MAIL", f"FROM:<{ALICE}>")
        assert (code, reply[:5]) == (530, b"5.7.0")


def test_submission_delivers_to_local_inbox_and_keeps_no_sent_copy(accounts: ServerThread) -> None:
    with submission(accounts) as client:
        assert client.has_extn("auth")
        assert "PLAIN" in client.esmtp_features["auth"]
        assert not client.has_extn("starttls")
        client.login(ALICE, PASSWORD)
        refused = client.sendmail(ALICE, [BOB], MESSAGE)
        assert refused == {}
    [stored] = accounts.inbox(BOB)
    assert stored.endswith(MESSAGE)  # the client's bytes, verbatim
    headers = stored[: stored.index(b"\r\n\r\n")].decode()
    assert headers.startswith("Received: from client.example ([127.0.0.1])")
    assert "with ESMTPSA id" in headers and "TLSv1." in headers
    assert "\r\nMessage-ID: <" in headers and "\r\nDate: " in headers  # added on submission
    assert accounts.inbox(ALICE) == []  # no copy in Sent or INBOX of the sender


def test_implicit_tls_465_with_auth_login(accounts: ServerThread) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", accounts.port("submissions"),
                          context=tls_context(accounts), timeout=10) as client:
        client.ehlo("client.example")
        client.user, client.password = ALICE, PASSWORD
        code, reply = client.auth("LOGIN", client.auth_login)
        assert (code, reply[:5]) == (235, b"2.7.0")
        client.sendmail(ALICE, [BOB], MESSAGE)
    assert len(accounts.inbox(BOB)) == 1


def test_message_id_and_date_are_kept_when_present(accounts: ServerThread) -> None:
    message = (
        b"Message-ID: <given@client.example>\r\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n" + MESSAGE
    )
    with submission(accounts) as client:
        client.login(ALICE, PASSWORD)
        client.sendmail(ALICE, [BOB], message)
    [stored] = accounts.inbox(BOB)
    assert stored.count(b"Message-ID:") == 1 and stored.count(b"\r\nDate:") == 1


def test_refusals_carry_enhanced_codes(accounts: ServerThread) -> None:
    with submission(accounts) as client:
        client.login(ALICE, PASSWORD)
        code, reply = client.mail(f"mallory@{DOMAIN}")
        assert (code, reply[:5]) == (553, b"5.7.1")  # not the login's address
        client.rset()
        code, reply = client.mail("<>")
        assert code == 553
        client.rset()
        assert client.mail(ALICE)[0] == 250
        code, reply = client.rcpt(f"nobody@{DOMAIN}")
        assert (code, reply[:5]) == (550, b"5.1.1")
        code, reply = client.rcpt("someone@other-operator.example")
        assert (code, reply[:5]) == (550, b"5.7.1")
        assert b"not in the trust space" in reply  # no white list here: no remote domain
        code, reply = client.docmd("DATA")
        assert (code, reply[:5]) == (503, b"5.5.1")  # aiosmtpd's own reply, given a code
        code, reply = client.docmd("BOGUS")
        assert (code, reply[:5]) == (500, b"5.5.2")


def test_disabled_mailbox_neither_receives_nor_logs_in(accounts: ServerThread) -> None:
    from directory.models import MailboxStatus

    accounts.call(accounts.app.directory.set_status(BOB, MailboxStatus.DISABLED))
    with submission(accounts) as client:
        client.login(ALICE, PASSWORD)
        client.mail(ALICE)
        code, reply = client.rcpt(BOB)
        assert (code, reply[:5]) == (550, b"5.1.1")
    with submission(accounts) as client, pytest.raises(smtplib.SMTPAuthenticationError) as error:
        client.login(BOB, PASSWORD)
    assert error.value.smtp_code == 535


def test_size_limit_refused_at_mail_and_at_data(accounts: ServerThread) -> None:
    limit = accounts.settings.smtp.max_message_size
    with submission(accounts) as client:
        client.login(ALICE, PASSWORD)
        code, reply = client.mail(ALICE, [f"SIZE={limit + 1}"])
        assert (code, reply[:5]) == (552, b"5.3.4")
        client.rset()
        client.mail(ALICE)
        client.rcpt(BOB)
        line = b"x" * 998 + b"\r\n"
        big = b"Subject: big\r\n\r\n" + line * (limit // len(line) + 2)
        code, reply = client.data(big)
        assert (code, reply[:5]) == (552, b"5.3.4")
    assert accounts.inbox(BOB) == []


def test_too_many_recipients(accounts: ServerThread) -> None:
    limit = accounts.settings.smtp.max_recipients
    with submission(accounts) as client:
        client.login(ALICE, PASSWORD)
        client.mail(ALICE)
        for _ in range(limit):
            assert client.rcpt(BOB)[0] == 250
        code, reply = client.rcpt(BOB)
        assert (code, reply[:5]) == (452, b"4.5.3")


def test_relay_port_takes_local_mail_without_auth_and_never_relays(accounts: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", accounts.port("smtp"), timeout=10) as client:
        client.ehlo("mx.other-operator.example")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert client.sendmail("doctor@other-operator.example", [BOB], MESSAGE) == {}
        client.mail("doctor@other-operator.example")
        code, reply = client.rcpt("patient@elsewhere.example")
        assert (code, reply[:5]) == (550, b"5.7.1")
        client.rset()
        client.mail("<>")  # bounces have a null sender
        assert client.rcpt(BOB)[0] == 250
    [stored] = accounts.inbox(BOB)
    assert b"with ESMTP id" in stored
    assert stored.count(b"Message-ID") == 0  # intake adds no Message-ID


def test_utf8_address_with_smtputf8(accounts: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", accounts.port("smtp"), timeout=10) as client:
        client.ehlo("mx.other-operator.example")
        code, _ = client.mail("médecin@other-operator.example", ["SMTPUTF8"])
        assert code == 250
        assert client.rcpt(BOB)[0] == 250
        assert client.data(b"Subject: =?utf-8?q?t?=\r\n\r\nbody\r\n")[0] == 250
    [stored] = accounts.inbox(BOB)
    assert b"with UTF8SMTP id" in stored
