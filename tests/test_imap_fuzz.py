"""Random and mutated commands: the parser answers with a reason, never crashes,
and a live session survives them (issue 4)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.imap.fetchitems import parse_items
from mailserver.imap.search import Context, compile_keys
from mailserver.imap.syntax import SyntaxFault, parse_command
from tests.conftest import ServerThread
from tests.imap_support import ALICE, PASSWORD, Raw

VALID = [
    b"a1 SELECT INBOX",
    b'a2 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100> BINARY[1])',
    b"a3 UID SEARCH CHARSET UTF-8 OR FROM x (SUBJECT y NOT SEEN) SINCE 1-Jan-2020",
    b"a4 STORE 1,3:5 (UNCHANGEDSINCE 12) +FLAGS.SILENT (\\Seen $Label)",
    b'a5 LIST (SUBSCRIBED) "" ("INBOX" "%") RETURN (CHILDREN STATUS (MESSAGES))',
    b"a6 APPEND INBOX (\\Seen) {5+}\r\nhello",
    b"a7 UID MOVE 1:* Archive",
    b"a8 SORT (REVERSE DATE) UTF-8 ALL",
]

_fragments = st.sampled_from([
    b" ", b"(", b")", b"[", b"]", b"<", b">", b'"', b"\\", b"{", b"}", b"*", b"%", b"$", b"~",
    b"{3}\r\nabc", b"{999}\r\n", b"BODY[", b"1:*", b"\x00", b"\xff", b"NIL", b"UID", b"OR",
])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(base)))
        action = draw(st.integers(0, 2))
        if action == 0:
            base[position:position] = draw(_fragments)
        elif action == 1 and base:
            del base[position:position + draw(st.integers(1, 8))]
        else:
            base[position:position] = draw(st.binary(max_size=8))
    return bytes(base)


def _exercise(data: bytes) -> None:
    try:
        command = parse_command(data)
    except SyntaxFault as fault:
        assert str(fault)
        return
    for args in (command.args, command.args[1:]):
        for runner in (lambda a: compile_keys(a, Context(uids=[1, 2, 3], saved=[])),
                       lambda a: parse_items(a[0] if len(a) == 1 else a)):
            try:
                runner(args)
            except SyntaxFault as fault:
                assert str(fault)
            except IndexError:
                pass


@settings(max_examples=1500, deadline=None)
@given(st.one_of(mutated(), st.binary(max_size=200)))
def test_parser_answers_syntax_faults_only(data: bytes) -> None:
    _exercise(data)


_live_bytes = st.binary(max_size=120).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"{", b"(")
)
_live_mutated = mutated().map(
    lambda b: b.split(b"\r\n", 1)[0].replace(b"\n", b"").replace(b"\r", b"").replace(b"{", b"(")
)


@pytest.fixture
def logged_in(server: ServerThread) -> Raw:
    server.add_mailbox(ALICE, PASSWORD)
    raw = Raw(server, tls=True)
    assert raw.command(f'x LOGIN {ALICE} "{PASSWORD}"'.encode())[-1].startswith(b"x OK")
    raw.command(b"x APPEND INBOX {5+}\r\nhello")
    raw.command(b"x SELECT INBOX")
    return raw


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(_live_mutated, _live_bytes))
def test_live_session_survives_random_commands(logged_in: Raw, line: bytes) -> None:
    if b"LOGOUT" in line.upper() or b"IDLE" in line.upper():
        return
    logged_in.send(line + b"\r\nzz NOOP\r\n")
    lines = logged_in.until_tagged(b"zz")
    assert lines[-1].startswith(b"zz OK"), (line, lines)
    assert not any(b"SERVERBUG" in answer for answer in lines), (line, lines)
