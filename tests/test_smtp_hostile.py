"""Hostile SMTP clients: smuggling, STARTTLS injection, login throttling,
connection floods. Raw sockets where smtplib would be too polite."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.conftest import DOMAIN, ServerThread

BOB = f"bob@{DOMAIN}"
ALICE = f"alice@{DOMAIN}"
PASSWORD = "correct horse battery"


@pytest.fixture
def accounts(server: ServerThread) -> ServerThread:
    server.add_mailbox(ALICE, PASSWORD)
    server.add_mailbox(BOB, PASSWORD)
    return server


class RawClient:
    """A line-level SMTP client that sends exactly the bytes it is given."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.reply()  # greeting

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, bytes]:
        """Read one (possibly multi-line) reply."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; got {lines!r} {self.buffer!r}")
                self.buffer += chunk
            line, _, self.buffer = self.buffer.partition(b"\r\n")
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def command(self, line: bytes) -> tuple[int, bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


# Each variant tries to end DATA early with something other than CRLF.CRLF and
# start a second, forged transaction (SMTP smuggling, CVE-2023-51764/51765/51766).
SMUGGLING_VARIANTS = {
    "lf.lf": b"\n.\n",
    "lf.crlf": b"\n.\r\n",
    "cr.cr": b"\r.\r",
    "crlf.lf": b"\r\n.\n",
    "crlf.cr": b"\r\n.\r",
    "cr.crlf": b"\r.\r\n",
    "lf.cr": b"\n.\r",
    "crlf.crcrlf": b"\r\n.\r\r\n",
    "nul": b"\r\n\x00.\r\n",  # not an end; the message must arrive whole
}


@pytest.mark.parametrize("name", sorted(SMUGGLING_VARIANTS))
def test_smtp_smuggling_variants_never_split_a_message(accounts: ServerThread, name: str) -> None:
    end = SMUGGLING_VARIANTS[name]
    forged = (
        b"MAIL FROM:<ceo@" + DOMAIN.encode() + b">\r\nRCPT TO:<" + BOB.encode()
        + b">\r\nDATA\r\nSubject: forged\r\n\r\nsmuggled\r\n"
    )
    client = RawClient(accounts.port("smtp"))
    try:
        assert client.command(b"EHLO attacker.example")[0] == 250
        assert client.command(b"MAIL FROM:<a@attacker.example>")[0] == 250
        assert client.command(b"RCPT TO:<" + BOB.encode() + b">")[0] == 250
        assert client.command(b"DATA")[0] == 354
        client.send(b"Subject: first\r\n\r\nhello" + end + forged + b".\r\n")
        code, reply = client.reply()
        if name == "nul":
            assert code == 250  # no smuggling shape: one whole message
        else:
            assert (code, reply[:9]) == (550, b"550 5.6.0"), reply
        # Nothing after the smuggled end was taken as commands.
        assert client.command(b"NOOP")[0] == 250
    finally:
        client.close()
    inbox = accounts.inbox(BOB)
    assert all(b"Subject: forged" not in m.split(b"\r\n\r\n")[0] for m in inbox)
    assert len(inbox) == (1 if name == "nul" else 0)


def test_pipelined_commands_after_starttls_are_discarded(accounts: ServerThread) -> None:
    """CVE-2011-0411 family: bytes sent with STARTTLS must not run after the handshake."""
    client = RawClient(accounts.port("submission"))
    try:
        client.command(b"EHLO attacker.example")
        client.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<" + ALICE.encode() + b">\r\n")
        code, _ = client.reply()
        assert code == 220
        context = ssl.create_default_context(
            cafile=accounts.settings.path(accounts.settings.tls.ca)
        )
        tls = context.wrap_socket(client.sock, server_hostname="localhost")
        tls.settimeout(3)
        tls.sendall(b"NOOP\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            data += tls.recv(4096)
        # The first reply after the handshake answers our NOOP, not the injected RSET/MAIL.
        assert data.startswith(b"250 2.0.0"), data
        with pytest.raises(TimeoutError):
            extra = tls.recv(4096)
            raise AssertionError(f"unexpected reply {extra!r}")
        tls.close()
    finally:
        client.close()


def test_failed_logins_are_delayed_then_refused_with_454(accounts: ServerThread) -> None:
    import base64

    settings = accounts.settings.auth
    context = ssl.create_default_context(cafile=accounts.settings.path(accounts.settings.tls.ca))

    def attempt(password: str) -> tuple[int, bytes, float]:
        client = RawClient(accounts.port("submission"))
        client.command(b"EHLO attacker.example")
        client.command(b"STARTTLS")
        tls = context.wrap_socket(client.sock, server_hostname="localhost")
        client.sock = tls
        client.buffer = b""
        client.command(b"EHLO attacker.example")
        token = base64.b64encode(f"\0{ALICE}\0{password}".encode())
        started = time.monotonic()
        code, reply = client.command(b"AUTH PLAIN " + token)
        elapsed = time.monotonic() - started
        client.close()
        return code, reply, elapsed

    code, reply, _ = attempt("wrong")
    assert (code, reply[:9]) == (535, b"535 5.7.8")
    code, reply, second = attempt("wrong")
    assert code == 535
    assert second >= settings.failure_delay * 0.9  # the growing delay is served
    for _ in range(settings.max_failures - 2):
        attempt("wrong")
    code, reply, _ = attempt(PASSWORD)  # even the right password, while blocked
    assert (code, reply[:9]) == (454, b"454 4.7.0"), reply


def test_connections_per_address_are_limited(accounts: ServerThread) -> None:
    limit = accounts.settings.smtp.max_connections_per_ip
    clients = [RawClient(accounts.port("smtp")) for _ in range(limit)]
    try:
        extra = socket.create_connection(("127.0.0.1", accounts.port("smtp")), timeout=10)
        greeting = extra.recv(4096)
        assert greeting.startswith(b"421 4.7.0"), greeting
        assert extra.recv(4096) == b""  # and the connection is closed
        extra.close()
    finally:
        for client in clients:
            client.close()
    time.sleep(0.2)
    again = RawClient(accounts.port("smtp"))  # slots are given back
    again.close()


def test_overlong_command_line_is_refused_and_session_lives(accounts: ServerThread) -> None:
    client = RawClient(accounts.port("smtp"))
    try:
        client.command(b"EHLO attacker.example")
        code, reply = client.command(b"MAIL FROM:<" + b"a" * 5000 + b"@x.example>")
        assert code == 500 and reply[4:5] == b"5"
        assert client.command(b"NOOP")[0] == 250
    finally:
        client.close()


def test_patient_cannot_send_as_professional(accounts: ServerThread) -> None:
    """Sender ownership holds for every kind of mailbox."""
    import smtplib

    from directory.ins import nir_control_key

    first13 = "2850575112034"
    ins = f"{first13}{nir_control_key(first13):02d}"

    async def add() -> None:
        from mailserver.auth import hash_password

        await accounts.app.directory.add_patient(
            ins=ins, family_name="MARTIN", given_names="Claire",
            birthdate=__import__("datetime").date(1985, 5, 12),
            patient_domain=accounts.settings.server.patient_domain,
            password_hash=hash_password(PASSWORD),
        )

    accounts.call(add())
    patient = f"{ins}@{accounts.settings.server.patient_domain}"
    context = ssl.create_default_context(cafile=accounts.settings.path(accounts.settings.tls.ca))
    with smtplib.SMTP("127.0.0.1", accounts.port("submission"), timeout=10) as client:
        client.starttls(context=context)
        client.login(patient, PASSWORD)
        code, _ = client.mail(ALICE)
        assert code == 553


def test_overlong_line_in_data_is_refused_whole(accounts: ServerThread) -> None:
    client = RawClient(accounts.port("smtp"))
    try:
        client.command(b"EHLO mx.example")
        client.command(b"MAIL FROM:<a@mx.example>")
        client.command(b"RCPT TO:<" + BOB.encode() + b">")
        assert client.command(b"DATA")[0] == 354
        client.send(b"Subject: long\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\n")
        code, reply = client.reply()
        assert (code, reply[:9]) == (500, b"500 5.5.2")
        assert client.command(b"NOOP")[0] == 250  # the session goes on
    finally:
        client.close()
    assert accounts.inbox(BOB) == []
