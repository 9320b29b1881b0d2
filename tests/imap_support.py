"""Helpers for the IMAP tests: accounts, TLS contexts, raw connections."""

from __future__ import annotations

import imaplib
import socket
import ssl
import time

from tests.conftest import DOMAIN, ServerThread

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
PASSWORD = "correct horse battery"


def tls_context(server: ServerThread) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))


def imaps(server: ServerThread, user: str = ALICE, password: str = PASSWORD) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                               ssl_context=tls_context(server), timeout=10)
    client.login(user, password)
    return client


def message(subject: str = "Hello", body: str = "Bonjour.\r\n", sender: str = BOB,
            to: str = ALICE, extra: str = "") -> bytes:
    return (
        f"From: Bob <{sender}>\r\nTo: Alice <{to}>\r\nSubject: {subject}\r\n"
        f"Date: Tue, 24 Nov 2026 09:00:00 +0000\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


class Raw:
    """A raw line-oriented IMAP connection (plain or TLS)."""

    def __init__(self, server: ServerThread, *, tls: bool) -> None:
        sock = socket.create_connection(("127.0.0.1", server.port("imaps" if tls else "imap")),
                                        timeout=10)
        if tls:
            sock = tls_context(server).wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buffer = b""
        self.server = server
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def until_tagged(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, text: bytes) -> list[bytes]:
        tag = text.split(b" ", 1)[0]
        self.send(text + b"\r\n")
        return self.until_tagged(tag)

    def closed(self, within: float = 5.0) -> bool:
        """True once the server closed the connection (the rest is drained)."""
        deadline = time.monotonic() + within
        self.sock.settimeout(within)
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False
        return False

    def close(self) -> None:
        self.sock.close()
