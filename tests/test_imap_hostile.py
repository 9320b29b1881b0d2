"""Hostile input against the real IMAP server (issue 4, "what must hold")."""

from __future__ import annotations

import base64
import resource
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import ServerThread, make_deployment, start_server
from tests.imap_support import ALICE, BOB, PASSWORD, Raw, tls_context


@pytest.fixture
def accounts(server: ServerThread) -> ServerThread:
    server.add_mailbox(ALICE, PASSWORD)
    server.add_mailbox(BOB, PASSWORD)
    return server


def login(raw: Raw, user: str = ALICE) -> None:
    assert raw.command(f"l1 LOGIN {user} \"{PASSWORD}\"".encode())[-1].startswith(b"l1 OK")


def test_starttls_discards_pipelined_commands(accounts: ServerThread) -> None:
    raw = Raw(accounts, tls=False)
    assert b"STARTTLS" in raw.greeting and b"LOGINDISABLED" in raw.greeting
    raw.send(b"a STARTTLS\r\nb NOOP\r\n")
    assert raw.line().startswith(b"a OK")
    assert raw.buffer == b""
    sock = tls_context(accounts).wrap_socket(raw.sock, server_hostname="localhost")
    raw.sock = sock
    # The pipelined "b NOOP" was never executed: the next thing we hear answers "c".
    lines = raw.command(b"c CAPABILITY")
    assert not any(line.startswith(b"b ") for line in lines)
    assert b"AUTH=PLAIN" in lines[0] and b"LOGINDISABLED" not in lines[0]
    assert raw.command(b"d NOOP") == [b"d OK NOOP completed"]
    raw.close()


def test_starttls_with_plaintext_after_it_breaks_the_handshake(accounts: ServerThread) -> None:
    raw = Raw(accounts, tls=False)
    raw.send(b"a STARTTLS\r\n")
    assert raw.line().startswith(b"a OK")
    raw.send(b"b LOGIN alice x\r\n")  # plaintext where a TLS ClientHello belongs
    assert raw.closed()


def test_login_refused_before_tls(accounts: ServerThread) -> None:
    raw = Raw(accounts, tls=False)
    reply = raw.command(f"a LOGIN {ALICE} \"{PASSWORD}\"".encode())[-1]
    assert reply.startswith(b"a NO [PRIVACYREQUIRED]")
    plain = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    assert raw.command(b"b AUTHENTICATE PLAIN " + plain)[-1].startswith(b"b NO")
    raw.close()


def test_long_line_before_login_is_refused_and_closed(accounts: ServerThread) -> None:
    raw = Raw(accounts, tls=True)
    raw.send(b"a LOGIN " + b"x" * 9000 + b" y\r\n")
    assert raw.line().startswith(b"* BAD line too long")
    assert raw.closed()


def test_huge_literal_plus_before_login_closes_without_reading(
    accounts: ServerThread,
) -> None:
    before = accounts.call(_rss())
    raw = Raw(accounts, tls=True)
    raw.send(b"a LOGIN {104857600+}\r\n")
    assert raw.line().startswith(b"a BAD [TOOBIG]")
    try:
        raw.sock.sendall(b"x" * 1_000_000)
    except (ConnectionError, OSError):
        pass
    assert raw.closed()
    assert accounts.call(_rss()) - before < 20 * 1024 * 1024


async def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_sync_literal_over_limit_before_login_gets_bad_and_session_lives(
    accounts: ServerThread,
) -> None:
    raw = Raw(accounts, tls=True)
    reply = raw.command(b"a LOGIN {9000}")
    assert reply[-1].startswith(b"a BAD [TOOBIG]")
    assert raw.command(b"b NOOP") == [b"b OK NOOP completed"]
    # A literal within the limit works: continuation, then the data.
    raw.send(f"c LOGIN {{{len(ALICE)}}}\r\n".encode())
    assert raw.line().startswith(b"+ ")
    raw.send(ALICE.encode() + f" \"{PASSWORD}\"\r\n".encode())
    assert raw.until_tagged(b"c")[-1].startswith(b"c OK")
    raw.close()


def test_literal_caps_after_login(accounts: ServerThread) -> None:
    raw = Raw(accounts, tls=True)
    login(raw)
    # Non-APPEND literal over 1 MiB: refused, the session goes on.
    assert raw.command(b"a SELECT {2000000}")[-1].startswith(b"a BAD [TOOBIG]")
    assert raw.command(b"b NOOP")[-1] == b"b OK NOOP completed"
    # APPEND over APPENDLIMIT with a synchronising literal: refused before sending.
    limit = accounts.settings.smtp.max_message_size
    reply = raw.command(f"c APPEND INBOX {{{limit + 1}}}".encode())
    assert reply[-1].startswith(b"c BAD [TOOBIG]")
    # LITERAL+ over the cap: BAD, then the connection closes.
    raw.send(b"d SELECT {2000000+}\r\n")
    assert raw.line().startswith(b"d BAD [TOOBIG]")
    assert raw.closed()


def test_malformed_commands_get_bad_and_the_session_lives(accounts: ServerThread) -> None:
    raw = Raw(accounts, tls=True)
    for junk in (b"", b"a", b"+ NOOP", b"a FOO", b"a LOGIN", b'a LOGIN "unterminated',
                 b"a NOOP ((((", b"a SELECT )", b"\x00\x01\x02", b"a CAPABILITY extra",
                 b"a UID", b"a UID FROB 1"):
        raw.send(junk + b"\r\n")
        line = raw.line()
        assert b" BAD " in line, (junk, line)
    login(raw)
    raw.command(b"s SELECT INBOX")
    for junk in (b"a FETCH 1:* (FLAGS", b"a FETCH x FLAGS", b"a FETCH 0 FLAGS",
                 b"a SEARCH FOO", b"a STORE 1 +FLAGS (\\Bogus)", b"a UID FETCH 1 BODY[9.TEXTX]",
                 b"a SEARCH OR SEEN", b"a LIST", b"a STATUS INBOX (FOO)"):
        reply = raw.command(junk)[-1]
        assert reply.startswith(b"a BAD"), (junk, reply)
    assert raw.command(b"z NOOP")[-1] == b"z OK NOOP completed"
    raw.close()


@pytest.mark.parametrize("name", [
    "../bob@hopital.example/INBOX", "a/../b", "%", "Foo*", "a//b", "/abs", "~bob", "#shared/x",
    "x" * 600, "/".join(["d"] * 40), "a\x01b",
])
def test_hostile_mailbox_names_are_refused(accounts: ServerThread, name: str) -> None:
    raw = Raw(accounts, tls=True)
    login(raw)
    quoted = name.replace("\\", "\\\\").replace('"', '\\"').encode()
    reply = raw.command(b'a CREATE "' + quoted + b'"')[-1]
    assert reply.startswith((b"a NO", b"a BAD")), reply
    raw.close()


def test_one_account_never_sees_another(accounts: ServerThread) -> None:
    bob = Raw(accounts, tls=True)
    login(bob, BOB)
    assert bob.command(b'a CREATE "Secret"')[-1].startswith(b"a OK")
    bob.close()
    alice = Raw(accounts, tls=True)
    login(alice)
    listing = alice.command(b'a LIST "" "*"')
    assert not any(b"Secret" in line for line in listing)
    for name in (b"Secret", b"../bob@hopital.example/Secret", b"bob@hopital.example/Secret"):
        assert alice.command(b"b SELECT " + name)[-1].startswith(b"b NO")
    # Encoded names decode to the same refusal (modified UTF-7 of "..")
    assert alice.command(b'c SELECT "&AC4ALg-/x"')[-1].startswith(b"c NO")
    alice.close()


def test_pre_auth_timeout(tmp_path: Path) -> None:
    settings = make_deployment(tmp_path)
    toml = settings.data_dir / "mss.toml"
    toml.write_text(toml.read_text().replace("pre_auth_timeout = 60", "pre_auth_timeout = 1"))
    from tests.conftest import reload

    running = start_server(reload(settings))
    try:
        raw = Raw(running, tls=True)
        started = time.monotonic()
        assert raw.line().startswith(b"* BYE")
        assert raw.closed()
        assert time.monotonic() - started < 5
    finally:
        running.stop()


def test_pre_auth_deadline_runs_from_the_connection(tmp_path: Path) -> None:
    """NOOPs do not keep an unauthenticated connection alive past the deadline."""
    settings = make_deployment(tmp_path)
    toml = settings.data_dir / "mss.toml"
    toml.write_text(toml.read_text().replace("pre_auth_timeout = 60", "pre_auth_timeout = 2"))
    from tests.conftest import reload

    running = start_server(reload(settings))
    try:
        raw = Raw(running, tls=True)
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            for n in range(20):
                raw.command(f"n{n} NOOP".encode())
                time.sleep(0.3)
        assert time.monotonic() - started < 4
    finally:
        running.stop()


def test_autologout_after_idle_time(accounts: ServerThread) -> None:
    """RFC 9051 §5.4: an authenticated session without commands is logged out (here
    after a short autologout on a second listener; the configured one must be >= 30 min)."""
    import asyncio

    from mailserver.imap.session import Session, SessionConfig
    from mailserver.settings import SettingsError, load_settings

    app = accounts.app
    config = SessionConfig(hostname="test", append_limit=1000, tls_context=None,
                           autologout=1.0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Session(reader, writer, store=app.store, authenticator=app.authenticator,
                      config=config, tls=True).run()

    async def listen() -> asyncio.Server:
        return await asyncio.start_server(serve, "127.0.0.1", 0)

    async def close(server: asyncio.Server) -> None:
        # asyncio.Server is not thread-safe: closed on its own loop, never from this thread
        server.close()
        await server.wait_closed()

    listener = accounts.call(listen())
    port = listener.sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"* OK")
            sock.sendall(f'a LOGIN {ALICE} "{PASSWORD}"\r\n'.encode())
            assert reader.readline().startswith(b"a OK")
            started = time.monotonic()
            assert reader.readline().startswith(b"* BYE Autologout")
            assert 0.9 < time.monotonic() - started < 10  # generous: CI machines are busy
    finally:
        accounts.call(close(listener))
    assert accounts.settings.imap.autologout >= 30 * 60
    toml = accounts.settings.data_dir / "mss.toml"
    toml.write_text(toml.read_text().replace("autologout = 1860", "autologout = 600"))
    with pytest.raises(SettingsError, match="autologout"):
        load_settings(accounts.settings.data_dir)
