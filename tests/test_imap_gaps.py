"""IMAP protocol details: MULTIAPPEND all or nothing (RFC 3502), DELETE of a
mailbox with inferiors (RFC 3501 / RFC 9051 §6.3.4), \\Recent (RFC 3501 §2.3.2)."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import text

from tests.conftest import ServerThread, make_deployment, start_server
from tests.imap_support import ALICE, BOB, PASSWORD, Raw, imaps, message, tls_context

REFUSED_SIZE = 4242

SQLITE_TRIGGER = [
    f"CREATE TRIGGER refuse_size BEFORE INSERT ON messages WHEN NEW.size = {REFUSED_SIZE} "
    "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END",
]
POSTGRES_TRIGGER = [
    "CREATE FUNCTION refuse_size() RETURNS trigger AS $$ BEGIN "
    f"IF NEW.size = {REFUSED_SIZE} THEN RAISE EXCEPTION 'refused by the test trigger'; "
    "END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER refuse_size BEFORE INSERT ON messages FOR EACH ROW "
    "EXECUTE FUNCTION refuse_size()",
]


@pytest.fixture
def any_server(tmp_path: Path, database_url: str) -> Iterator[ServerThread]:
    running = start_server(make_deployment(tmp_path, database_url))
    try:
        running.add_mailbox(ALICE, PASSWORD)
        running.add_mailbox(BOB, PASSWORD)
        yield running
    finally:
        running.stop()


def _sized(size: int, subject: str) -> bytes:
    head = message(subject=subject, body="")
    return head + b"x" * (size - len(head) - 2) + b"\r\n"


def _literal(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def test_multiappend_appends_all_or_none(any_server: ServerThread) -> None:
    """A database refusal of the second message leaves the folder as it was."""

    async def refuse_one_size() -> None:
        postgres = any_server.app.engine.dialect.name == "postgresql"
        async with any_server.app.engine.begin() as connection:
            for statement in POSTGRES_TRIGGER if postgres else SQLITE_TRIGGER:
                await connection.execute(text(statement))

    any_server.call(refuse_one_size())
    raw = Raw(any_server, tls=True)
    raw.command(f'l LOGIN {ALICE} "{PASSWORD}"'.encode())
    good, refused = _sized(1000, "first"), _sized(REFUSED_SIZE, "second")
    lines = raw.command(b"a APPEND INBOX (\\Seen) " + _literal(good) + b" " + _literal(refused))
    assert lines[-1].startswith(b"a NO"), lines
    client = imaps(any_server)
    assert client.select("INBOX") == ("OK", [b"0"])
    assert client.status("INBOX", "(MESSAGES UIDNEXT)")[1] == [b'"INBOX" (MESSAGES 0 UIDNEXT 1)']
    lines = raw.command(b"b APPEND INBOX " + _literal(good) + b" (\\Flagged) " + _literal(good))
    assert lines[-1].startswith(b"b OK [APPENDUID ") and b" 1:2] " in lines[-1]
    assert client.noop()[0] == "OK"
    assert client.uid("FETCH", "1:*", "(FLAGS)")[1] == [
        b"1 (UID 1 FLAGS (\\Recent))", b"2 (UID 2 FLAGS (\\Flagged \\Recent))"]
    client.logout()


def test_delete_of_a_parent_keeps_its_name_noselect_while_children_exist(
        server: ServerThread) -> None:
    server.add_mailbox(ALICE, PASSWORD)
    client = IMAPClient("127.0.0.1", port=server.port("imaps"),
                        ssl_context=tls_context(server), timeout=10)
    client.login(ALICE, PASSWORD)
    client.create_folder("Dossiers/2026")
    client.append("Dossiers", message("in the parent"))
    client.append("Dossiers/2026", message("in the child"))
    client.delete_folder("Dossiers")  # RFC 3501 §6.3.4: permitted, name becomes \Noselect
    listed = {name: flags for flags, _, name in client.list_folders("", "Dossiers*")}
    assert listed == {"Dossiers": (b"\\Noselect", b"\\HasChildren"),
                      "Dossiers/2026": (b"\\HasNoChildren",)}
    assert client.folder_status("Dossiers/2026", ["MESSAGES"])[b"MESSAGES"] == 1
    with pytest.raises(IMAPClient.Error, match="NONEXISTENT"):
        client.select_folder("Dossiers")
    with pytest.raises(IMAPClient.Error, match="HASCHILDREN"):
        client.delete_folder("Dossiers")  # \Noselect with inferiors: an error
    client.delete_folder("Dossiers/2026")
    assert client.list_folders("", "Dossiers*") == []  # the placeholder goes with them
    client.create_folder("Dossiers")
    assert client.select_folder("Dossiers")[b"EXISTS"] == 0  # its messages went
    client.logout()


def test_rev2_session_sees_nonexistent_parent(server: ServerThread) -> None:
    server.add_mailbox(ALICE, PASSWORD)
    client = imaps(server)
    assert client.create('"Projets/A"')[0] == "OK"
    assert client.delete("Projets")[0] == "OK"
    assert client.list('""', '"Projets"')[1] == [b'(\\Noselect \\HasChildren) "/" "Projets"']
    raw = Raw(server, tls=True)
    raw.command(f'l LOGIN {ALICE} "{PASSWORD}"'.encode())
    raw.command(b"e ENABLE IMAP4rev2")
    lines = raw.command(b'a LIST "" "Projets*" RETURN (STATUS (MESSAGES))')
    assert lines[0] == b'* LIST (\\NonExistent \\HasChildren) "/" "Projets"'
    assert b'* STATUS "Projets/A" (MESSAGES 0)' in lines
    assert not any(line.startswith(b'* STATUS "Projets" ') for line in lines)
    client.logout()


def test_imaplib_cannot_reach_deleted_parent(server: ServerThread) -> None:
    server.add_mailbox(ALICE, PASSWORD)
    client: imaplib.IMAP4_SSL = imaps(server)
    client.create("Archives/2025")
    client.delete("Archives")
    status, data = client.status("Archives", "(MESSAGES)")
    assert status == "NO" and b"NONEXISTENT" in data[0]
    client.logout()


def _deliver(server: ServerThread, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as smtp:
        smtp.sendmail(BOB, [ALICE], message(subject=subject))


def _recent_flags(client: imaplib.IMAP4_SSL) -> list[bytes]:
    fetched = client.fetch("1:*", "(FLAGS)")[1]
    return [line.split()[0] for line in fetched
            if isinstance(line, bytes) and b"\\Recent" in line]


def test_recent_belongs_to_the_first_session_told(any_server: ServerThread) -> None:
    """RFC 3501 §2.3.2 on both backends: \\Recent for the first read-write session
    told about a message, for no other; EXAMINE looks without taking; IMAP4rev2
    sessions neither see nor take it."""
    _deliver(any_server, "one")
    _deliver(any_server, "two")
    first, second, watcher = imaps(any_server), imaps(any_server), imaps(any_server)
    assert watcher.status("INBOX", "(RECENT)")[1] == [b'"INBOX" (RECENT 2)']
    first.select("INBOX")
    assert first.response("RECENT") == ("RECENT", [b"2"])
    assert _recent_flags(first) == [b"1", b"2"]
    assert first.search(None, "RECENT") == ("OK", [b"1 2"])
    assert first.search(None, "NEW") == ("OK", [b"1 2"])
    assert first.search(None, "OLD") == ("OK", [b""])
    second.select("INBOX")
    assert second.response("RECENT") == ("RECENT", [b"0"])
    assert _recent_flags(second) == [] and second.search(None, "OLD") == ("OK", [b"1 2"])
    assert watcher.status("INBOX", "(RECENT)")[1] == [b'"INBOX" (RECENT 0)']

    _deliver(any_server, "three")  # whoever hears of it first has it
    second.noop()
    assert second.response("RECENT") == ("RECENT", [b"1"])
    first.noop()
    assert first.response("RECENT") == ("RECENT", [None])  # nothing new for it
    assert _recent_flags(second) == [b"3"] and _recent_flags(first) == [b"1", b"2"]

    _deliver(any_server, "four")
    assert watcher.status("INBOX", "(RECENT)")[1] == [b'"INBOX" (RECENT 1)']
    watcher.select("INBOX", readonly=True)  # EXAMINE sees it, takes nothing
    assert watcher.response("RECENT") == ("RECENT", [b"1"])
    rev2 = Raw(any_server, tls=True)
    rev2.command(f'l LOGIN {ALICE} "{PASSWORD}"'.encode())
    rev2.command(b"e ENABLE IMAP4rev2")
    lines = rev2.command(b"s SELECT INBOX") + rev2.command(b"f FETCH 1:* (FLAGS)")
    assert not any(b"RECENT" in line or b"\\Recent" in line for line in lines)
    first.noop()
    assert first.response("RECENT") == ("RECENT", [b"3"])  # 1, 2 and now 4
    assert first.search(None, "RECENT") == ("OK", [b"1 2 4"])
    for client in (first, second, watcher):
        client.logout()
