"""Commands and extensions checked on the wire, line by line, over TLS."""

from __future__ import annotations

import pytest

from directory.models import MailboxType
from tests.conftest import PATIENT_DOMAIN, ServerThread
from tests.imap_support import ALICE, BOB, PASSWORD, Raw


@pytest.fixture
def alice(server: ServerThread) -> Raw:
    server.add_mailbox(ALICE, PASSWORD)
    server.add_mailbox(BOB, PASSWORD)
    raw = Raw(server, tls=True)
    assert raw.command(f'l LOGIN {ALICE} "{PASSWORD}"'.encode())[-1].startswith(b"l OK")
    return raw


def test_list_extended_special_use_status_and_children(alice: Raw) -> None:
    assert alice.command(b'a CREATE "Dossiers/2026"')[-1].startswith(b"a OK")
    assert alice.command(b'b CREATE "Envoyes" (USE (\\Sent))')[-1].startswith(b"b OK")
    lines = alice.command(b'c LIST "" "*" RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN))')
    assert b'* LIST (\\HasChildren \\Subscribed) "/" "Dossiers"' in lines
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" "Dossiers/2026"' in lines
    assert b'* STATUS "INBOX" (MESSAGES 0 UNSEEN 0)' in lines
    special = alice.command(b'd LIST (SPECIAL-USE) "" "*"')
    names = [line.rsplit(b" ", 1)[1] for line in special if line.startswith(b"* LIST")]
    assert b'"Envoyes"' in names and b'"Sent"' in names and b'"INBOX"' not in names
    percent = alice.command(b'e LIST "" "%"')
    assert not any(b"Dossiers/2026" in line for line in percent)
    assert alice.command(b'f LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""'


def test_utf8_accept_names_and_modified_utf7(alice: Raw) -> None:
    assert alice.command(b'a CREATE "&AMk-t&AOk-"')[-1].startswith(b"a OK")
    assert any(b'"&AMk-t&AOk-"' in line for line in alice.command(b'b LIST "" "*"'))
    lines = alice.command(b"c ENABLE UTF8=ACCEPT")
    assert lines[0] == b"* ENABLED UTF8=ACCEPT"
    assert any('"Été"'.encode() in line for line in alice.command(b'd LIST "" "*"'))
    assert alice.command('e SELECT "Été"'.encode())[-1].startswith(b"e OK")


def test_multiappend_uidplus_uid_expunge_and_examine(alice: Raw) -> None:
    lines = alice.command(b"a APPEND INBOX (\\Seen) {12+}\r\nSubject: 1\r\n (\\Deleted) {12+}\r\n"
                          b"Subject: 2\r\n {12+}\r\nSubject: 3\r\n")
    assert lines[-1].startswith(b"a OK [APPENDUID ") and lines[-1].split()[4] == b"1:3]"
    alice.command(b"b SELECT INBOX")
    alice.command(b"c STORE 3 +FLAGS.SILENT (\\Deleted)")
    lines = alice.command(b"d UID EXPUNGE 2")
    assert lines == [b"* 2 EXPUNGE", b"d OK UID EXPUNGE completed"]
    lines = alice.command(b"e EXAMINE INBOX")
    assert b"* OK [CLOSED] previous mailbox closed" in lines
    assert lines[-1].startswith(b"e OK [READ-ONLY]")
    assert alice.command(b"f STORE 1 +FLAGS (\\Flagged)")[-1].startswith(b"f NO [READ-ONLY]")
    assert alice.command(b"g EXPUNGE")[-1].startswith(b"g NO [READ-ONLY]")
    alice.command(b"h SELECT INBOX")
    assert alice.command(b"i CLOSE") == [b"i OK CLOSE completed"]  # expunges message 3
    lines = alice.command(b"j STATUS INBOX (MESSAGES DELETED)")
    assert lines[0] == b'* STATUS "INBOX" (MESSAGES 1 DELETED 0)'


def test_condstore_unchangedsince_and_modified(alice: Raw) -> None:
    alice.command(b"a APPEND INBOX {12+}\r\nSubject: 1\r\n")
    alice.command(b"b APPEND INBOX {12+}\r\nSubject: 2\r\n")
    lines = alice.command(b"c SELECT INBOX (CONDSTORE)")
    highest = next(int(line.split()[3][:-1]) for line in lines if b"HIGHESTMODSEQ" in line)
    lines = alice.command(b"d FETCH 1:2 (MODSEQ)")
    modseqs = [int(line.rsplit(b"(", 1)[1].rstrip(b"))")) for line in lines[:-1]]
    assert max(modseqs) == highest
    alice.command(b"e STORE 2 +FLAGS (\\Seen)")
    lines = alice.command(f"f STORE 1:2 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)".encode())
    assert lines[-1].startswith(b"f OK [MODIFIED 2]")
    assert lines[0].startswith(b"* 1 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (")
    lines = alice.command(f"g SEARCH MODSEQ {highest + 1}".encode())
    assert lines[0].startswith(b"* SEARCH 1 2 (MODSEQ ")


def test_namespace_id_unselect_idle_done(alice: Raw) -> None:
    assert alice.command(b"a NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL'
    assert alice.command(b"b ID NIL")[0].startswith(b'* ID ("name" "MSS"')
    alice.command(b"c SELECT INBOX")
    assert alice.command(b"d UNSELECT") == [b"d OK UNSELECT completed"]
    assert alice.command(b"e FETCH 1 FLAGS")[-1].startswith(b"e BAD")
    alice.send(b"f IDLE\r\n")
    assert alice.line().startswith(b"+ ")
    alice.send(b"DONE\r\n")
    assert alice.line() == b"f OK IDLE terminated"
    assert alice.command(b"g LOGOUT") == [b"* BYE logging out", b"g OK LOGOUT completed"]


def test_imap4rev2_esearch_by_default_and_no_recent(alice: Raw) -> None:
    assert alice.command(b"a ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2"
    alice.command(b"b APPEND INBOX {12+}\r\nSubject: 1\r\n")
    lines = alice.command(b"c SELECT INBOX")
    assert not any(b"RECENT" in line for line in lines)
    assert alice.command(b"d SEARCH ALL")[0] == b'* ESEARCH (TAG "d") ALL 1'
    assert alice.command(b"e UID SEARCH UNSEEN")[0] == b'* ESEARCH (TAG "e") UID ALL 1'


def test_patient_sees_only_own_folders(server: ServerThread) -> None:
    patient = f"jean.dupont@{PATIENT_DOMAIN}"
    server.add_mailbox(ALICE, PASSWORD)
    server.add_mailbox(patient, PASSWORD, MailboxType.PAT)
    alice = Raw(server, tls=True)
    alice.command(f'l LOGIN {ALICE} "{PASSWORD}"'.encode())
    alice.command(b'a CREATE "Dossier patient"')
    raw = Raw(server, tls=True)
    lines = raw.command(f'l LOGIN {patient} "{PASSWORD}"'.encode())
    assert lines[-1].startswith(b"l OK")
    listing = raw.command(b'a LIST "" "*"')
    assert not any(b"Dossier patient" in line for line in listing)
    assert raw.command(b'b SELECT "Dossier patient"')[-1].startswith(b"b NO [NONEXISTENT]")


def test_header_search_plain_folded_and_encoded(alice: Raw) -> None:
    messages = [
        b"From: Alice Martin\r\n <alice.martin@x.example>\r\nSubject: one\r\n\r\nbody\r\n",
        b"From: =?utf-8?q?Ren=C3=A9e?= <renee@y.example>\r\nSubject: two\r\n\r\nbody\r\n",
        b"Subject: three\r\nX-From: martin\r\n\r\nbody\r\n",
        "From: Zoé <zoe@z.example>\r\nSubject: four\r\n\r\nbody\r\n".encode(),
    ]
    for raw in messages:
        alice.command(b"a APPEND INBOX {%d+}\r\n" % len(raw) + raw)
    alice.command(b"b SELECT INBOX")
    assert alice.command(b"c SEARCH FROM MARTIN")[0] == b"* SEARCH 1"
    assert alice.command(b"d SEARCH FROM \"martin@x\"")[0] == b"* SEARCH 1"
    assert alice.command("e SEARCH CHARSET UTF-8 FROM renée".encode())[0] == b"* SEARCH 2"
    assert alice.command("f SEARCH CHARSET UTF-8 FROM zoé".encode())[0] == b"* SEARCH 4"
    assert alice.command(b"g SEARCH HEADER X-From \"\"")[0] == b"* SEARCH 3"
    assert alice.command(b"h SEARCH NOT FROM example")[0] == b"* SEARCH 3"


def test_list_pattern_inbox_is_case_insensitive(alice: Raw) -> None:
    assert alice.command(b'a LIST "" "inbox*"')[0] == b'* LIST (\\HasNoChildren) "/" "INBOX"'
    assert alice.command(b"b SELECT inbox")[-1].startswith(b"b OK [READ-WRITE]")


def test_fetch_of_a_message_another_session_expunged(server: ServerThread, alice: Raw) -> None:
    """RFC 2180 §4.1 / RFC 5530: the body went with the message; the session that
    still shows it gets no data for it (or NO [EXPUNGEISSUED] when the expunge lands
    between reading the list and the bodies), never an error, then the EXPUNGE at the
    next NOOP."""
    lines = alice.command(b"a APPEND INBOX {14+}\r\nSubject: gone\r\n")
    assert lines[-1].startswith(b"a OK")
    assert alice.command(b"b SELECT INBOX")[-1].startswith(b"b OK")
    other = Raw(server, tls=True)
    assert other.command(f'l LOGIN {ALICE} "{PASSWORD}"'.encode())[-1].startswith(b"l OK")
    other.command(b"s SELECT INBOX")
    other.command(b"t STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert other.command(b"u EXPUNGE")[-1].startswith(b"u OK")
    lines = alice.command(b"c FETCH 1 BODY.PEEK[]")
    assert lines == [b"c OK FETCH completed"] or lines[-1].startswith(b"c NO [EXPUNGEISSUED]")
    assert b"* 1 EXPUNGE" in alice.command(b"d NOOP")
