"""The IMAP server driven by clients no one here wrote: imaplib, imapclient,
aioimaplib, over TLS (993 and 143 with STARTTLS)."""

from __future__ import annotations

import asyncio
import imaplib
import re
import threading
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.conftest import ServerThread, make_deployment, start_server
from tests.imap_support import ALICE, BOB, PASSWORD, imaps, message, tls_context


@pytest.fixture
def accounts(server: ServerThread) -> ServerThread:
    server.add_mailbox(ALICE, PASSWORD)
    server.add_mailbox(BOB, PASSWORD)
    return server


def deliver(server: ServerThread, raw: bytes, to: str = ALICE) -> None:
    async def go() -> None:
        record = await server.app.directory.lookup(to)
        assert record is not None
        await server.app.store.deliver([record.id], raw)

    server.call(go())


def test_imaplib_starttls_login_list_select(accounts: ServerThread) -> None:
    client = imaplib.IMAP4("127.0.0.1", accounts.port("imap"), timeout=10)
    assert "LOGINDISABLED" in client.capabilities
    client.starttls(ssl_context=tls_context(accounts))
    client.login(ALICE, PASSWORD)
    typ, listing = client.list()
    assert typ == "OK"
    names = [line.decode() for line in listing]  # type: ignore[union-attr]
    assert any(n.endswith('"INBOX"') or n.endswith(" INBOX") for n in names)
    assert any("\\Sent" in n and "Sent" in n for n in names)
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"0"])
    client.logout()


def test_wrong_password_and_throttling_message(accounts: ServerThread) -> None:
    client = imaplib.IMAP4_SSL("127.0.0.1", accounts.port("imaps"),
                               ssl_context=tls_context(accounts), timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(ALICE, "wrong")
    client.login(ALICE, PASSWORD)  # the session lives on
    client.logout()


def test_authenticate_plain_with_initial_response(accounts: ServerThread) -> None:
    client = imaplib.IMAP4_SSL("127.0.0.1", accounts.port("imaps"),
                               ssl_context=tls_context(accounts), timeout=10)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())
    assert typ == "OK"
    assert client.state == "AUTH"
    client.logout()


def test_append_fetch_store_search_copy_move_expunge(accounts: ServerThread) -> None:
    client = imaps(accounts)
    raw = message("Résultats d'analyse", "Le taux est normal.\r\n")
    typ, data = client.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(time.time()),
                              raw)
    assert typ == "OK" and b"APPENDUID" in data[0]  # type: ignore[operator]
    client.append("INBOX", None, None, message("Second", "autre texte\r\n"))
    assert client.select("INBOX") == ("OK", [b"2"])
    typ, data = client.fetch("1", "(FLAGS RFC822.SIZE BODY.PEEK[] UID)")
    assert typ == "OK"
    head, body = data[0]  # type: ignore[misc]
    assert body == raw
    assert b"\\Flagged" in head and f"RFC822.SIZE {len(raw)}".encode() in head
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1].startswith(b"Subject: R")  # type: ignore[index]
    typ, data = client.fetch("1:2", "(ENVELOPE BODYSTRUCTURE)")
    flat = b"".join(d if isinstance(d, bytes) else b"".join(d) for d in data)  # type: ignore[misc]
    assert typ == "OK" and flat.count(b"ENVELOPE (") == 2 and b"BODYSTRUCTURE (" in flat
    # BODY[] without PEEK sets \Seen
    client.fetch("2", "(BODY[TEXT])")
    assert client.search(None, "SEEN") == ("OK", [b"2"])
    assert client.search(None, "UNSEEN") == ("OK", [b"1"])
    assert client.search("UTF-8", "SUBJECT", '"résultats"'.encode()) == ("OK", [b"1"])
    assert client.search(None, "BODY", "autre") == ("OK", [b"2"])
    assert client.search(None, "FROM", "bob", "FLAGGED") == ("OK", [b"1"])
    assert client.search(None, "OR", "FLAGGED", "SEEN") == ("OK", [b"1 2"])
    assert client.search(None, "NOT", "1") == ("OK", [b"2"])
    typ, data = client.store("2", "+FLAGS", "(\\Deleted $Label1)")
    assert typ == "OK" and b"$Label1" in data[0] and b"\\Deleted" in data[0]  # type: ignore[operator]
    assert client.create("Patients/Dupont") == ("OK", [b"CREATE completed"])
    typ, data = client.copy("1", "Patients/Dupont")
    assert typ == "OK" and b"COPYUID" in data[0]  # type: ignore[operator]
    typ, data = client.expunge()
    assert (typ, data) == ("OK", [b"2"])
    assert client.select("Patients/Dupont") == ("OK", [b"1"])
    typ, data = client.uid("MOVE", "1:*", "INBOX")
    assert typ == "OK"
    assert client.select("INBOX") == ("OK", [b"2"])
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK" and len(data) == 2
    client.logout()


def test_folder_commands(accounts: ServerThread) -> None:
    client = imaps(accounts)
    assert client.create("Projets")[0] == "OK"
    assert client.create("Projets")[0] == "NO"
    # IMAP4rev1 clients name folders in modified UTF-7 (RFC 3501 §5.1.3): "Été/Août"
    assert client.create("&AMk-t&AOk-/Ao&APs-t")[0] == "OK"
    assert client.rename("Projets", "Archives2026")[0] == "OK"
    _typ, data = client.list()
    text = b"\n".join(data).decode()  # type: ignore[arg-type]
    assert "Archives2026" in text and "Projets" not in text
    assert '"&AMk-t&AOk-/Ao&APs-t"' in text
    assert client.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY SIZE HIGHESTMODSEQ)")[0] \
        == "OK"
    assert client.subscribe("Archives2026")[0] == "OK"
    assert client.unsubscribe("Archives2026")[0] == "OK"
    _typ, data = client.lsub()
    assert not any(b"Archives2026" in d for d in data)  # type: ignore[operator]
    assert client.delete("Archives2026")[0] == "OK"
    assert client.delete("INBOX")[0] == "NO"
    # RENAME INBOX moves its messages to the new folder and leaves INBOX empty.
    client.append("INBOX", None, None, message("to move"))
    assert client.rename("INBOX", "Old")[0] == "OK"
    assert client.select("Old") == ("OK", [b"1"])
    assert client.select("INBOX") == ("OK", [b"0"])
    client.logout()


def test_imapclient_idle_reports_delivery_within_a_second(accounts: ServerThread) -> None:
    client = IMAPClient("127.0.0.1", port=accounts.port("imaps"),
                        ssl_context=tls_context(accounts), timeout=10)
    client.login(ALICE, PASSWORD)
    client.select_folder("INBOX")
    client.idle()
    started = time.monotonic()
    threading.Timer(0.2, deliver, (accounts, message("new"))).start()
    responses = client.idle_check(timeout=5)
    elapsed = time.monotonic() - started
    client.idle_done()
    assert (1, b"EXISTS") in responses
    assert elapsed < 1.5
    client.logout()


def test_imapclient_condstore_qresync_and_capabilities(accounts: ServerThread) -> None:
    client = IMAPClient("127.0.0.1", port=accounts.port("imaps"),
                        ssl_context=tls_context(accounts), timeout=10)
    client.login(ALICE, PASSWORD)
    for capability in (b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE", b"QRESYNC", b"ESEARCH",
                       b"SPECIAL-USE", b"LIST-STATUS", b"APPENDLIMIT=26214400", b"BINARY",
                       b"SORT", b"THREAD=REFERENCES", b"LITERAL+", b"ENABLE"):
        assert client.has_capability(capability.decode()), capability
    assert client.enable("QRESYNC") == [b"QRESYNC"]
    for n in range(3):
        client.append("INBOX", message(f"m{n}"))
    info = client.select_folder("INBOX")
    modseq = info[b"HIGHESTMODSEQ"]
    client.add_flags([1], [b"\\Seen"])
    changed = client.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {modseq}"])
    assert list(changed) == [1]
    assert changed[1][b"MODSEQ"][0] > modseq
    client.delete_messages([2])
    client.expunge()
    client.close_folder()
    # QRESYNC SELECT: VANISHED (EARLIER) for the expunged UID.
    uidvalidity = info[b"UIDVALIDITY"]
    typ, data = client._imap._simple_command(  # type: ignore[attr-defined]
        "SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {modseq}))")
    _, untagged = client._imap._untagged_response(typ, data, "VANISHED")  # type: ignore[attr-defined]
    assert untagged[-1] == b"(EARLIER) 2"  # the one before: EXPUNGE as "VANISHED 2"
    client.logout()


def test_unsolicited_updates_between_sessions(accounts: ServerThread) -> None:
    first = imaps(accounts)
    second = imaps(accounts)
    first.append("INBOX", None, None, message("a"))
    first.append("INBOX", None, None, message("b"))
    first.select("INBOX")
    second.select("INBOX")
    second.store("1", "+FLAGS", "(\\Seen)")
    second.store("2", "+FLAGS", "(\\Deleted)")
    second.expunge()
    deliver(accounts, message("c"))
    typ, _ = first.noop()
    assert typ == "OK"
    responses = first.untagged_responses
    assert responses.get("EXPUNGE") == [b"2"]
    # The first session to select was told of "a" and "b" first: \Recent for it.
    assert any(b"FLAGS (\\Seen \\Recent)" in f for f in responses.get("FETCH", []))
    assert b"2" in responses.get("EXISTS", [])
    first.logout()
    second.logout()


def test_fetch_does_not_report_expunge_but_uid_forms_and_noop_do(accounts: ServerThread) -> None:
    first = imaps(accounts)
    second = imaps(accounts)
    for n in range(2):
        first.append("INBOX", None, None, message(f"x{n}"))
    first.select("INBOX")
    second.select("INBOX")
    second.store("1", "+FLAGS", "(\\Deleted)")
    second.expunge()
    first.fetch("1:2", "(FLAGS)")  # RFC 9051 §7.4.1: no EXPUNGE during FETCH
    assert "EXPUNGE" not in first.untagged_responses
    first.noop()
    assert first.untagged_responses.get("EXPUNGE") == [b"1"]
    first.logout()
    second.logout()


def test_binary_partial_and_sections(accounts: ServerThread) -> None:
    client = imaps(accounts)
    raw = (
        f"From: {BOB}\r\nTo: {ALICE}\r\nSubject: pièce jointe\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
        "Content-Type: text/plain\r\n\r\nvoir PJ\r\n--XX\r\n"
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "AAECAwQ=\r\n--XX--\r\n"
    ).encode()
    client.append("INBOX", None, None, raw)
    client.select("INBOX")
    typ, data = client.fetch("1", "(BINARY.PEEK[2] BINARY.SIZE[2])")
    assert typ == "OK"
    assert data[0][1] == b"\x00\x01\x02\x03\x04"  # type: ignore[index]
    assert b"BINARY.SIZE[2] 5" in data[1]  # type: ignore[operator]
    typ, data = client.fetch("1", "(BODY.PEEK[1]<0.4> BODY.PEEK[2.MIME])")
    assert data[0][0].endswith(b"BODY[1]<0> {4}") and data[0][1] == b"voir"  # type: ignore[index]
    assert b"Content-Transfer-Encoding: base64" in data[1][1]  # type: ignore[index]
    client.logout()


def test_esearch_searchres_sort_thread(accounts: ServerThread) -> None:
    client = imaps(accounts)
    client.append("INBOX", None, None, message("Zèbre", extra="Message-ID: <a@x>\r\n"))
    client.append("INBOX", None, None, message("Re: Zèbre",
                                               extra="Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\n"))
    client.append("INBOX", None, None, message("Abeille", extra="Message-ID: <c@x>\r\n"))
    client.select("INBOX")
    typ, data = client._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")  # type: ignore[attr-defined]
    _, esearch = client._untagged_response(typ, data, "ESEARCH")  # type: ignore[attr-defined]
    assert esearch[0].endswith(b"MIN 1 MAX 3 COUNT 3")
    client._simple_command("UID", "SEARCH", "RETURN", "(SAVE)", "SUBJECT", "abeille")  # type: ignore[attr-defined]
    typ, data = client.uid("FETCH", "$", "(UID)")
    assert re.search(rb"UID 3\b", data[0])  # type: ignore[arg-type]
    typ, data = client.sort("(SUBJECT)", "UTF-8", "ALL")
    assert data == [b"3 1 2"]
    typ, data = client.thread("REFERENCES", "UTF-8", "ALL")
    assert data == [b"(1 2)(3)"]
    client.logout()


def test_aioimaplib_login_select_fetch(accounts: ServerThread) -> None:
    import aioimaplib

    deliver(accounts, message("via aioimaplib"))

    async def go() -> list[str]:
        client = aioimaplib.IMAP4_SSL("127.0.0.1", accounts.port("imaps"),
                                      ssl_context=tls_context(accounts), timeout=10)
        await client.wait_hello_from_server()
        await client.login(ALICE, PASSWORD)
        await client.select("INBOX")
        response = await client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        await client.logout()
        return [line.decode() if isinstance(line, bytes | bytearray) else str(line)
                for line in response.lines]

    lines = asyncio.run(go())
    assert any("Subject: via aioimaplib" in line for line in lines)


def test_idle_with_aioimaplib(accounts: ServerThread) -> None:
    import aioimaplib

    async def go() -> list[object]:
        client = aioimaplib.IMAP4_SSL("127.0.0.1", accounts.port("imaps"),
                                      ssl_context=tls_context(accounts), timeout=10)
        await client.wait_hello_from_server()
        await client.login(ALICE, PASSWORD)
        await client.select("INBOX")
        idle = await client.idle_start(timeout=5)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(deliver, accounts, message("idle"))
        pushed = await client.wait_server_push(timeout=2)
        client.idle_done()
        await asyncio.wait_for(idle, 5)
        await client.logout()
        return list(pushed)

    pushed = asyncio.run(go())
    assert any(b"EXISTS" in (p if isinstance(p, bytes) else str(p).encode()) for p in pushed)


def test_idle_hears_a_delivery_made_by_another_node(tmp_path: Path, postgres_url: str) -> None:
    """Two server processes' worth of state (two applications) on one PostgreSQL:
    LISTEN/NOTIFY carries the delivery to the idling session within a second."""
    first = start_server(make_deployment(tmp_path / "a", postgres_url))
    second = start_server(make_deployment(tmp_path / "b", postgres_url))
    try:
        first.add_mailbox(ALICE, PASSWORD)
        client = IMAPClient("127.0.0.1", port=first.port("imaps"),
                            ssl_context=tls_context(first), timeout=10)
        client.login(ALICE, PASSWORD)
        client.select_folder("INBOX")
        client.idle()
        started = time.monotonic()
        threading.Timer(0.2, deliver, (second, message("from node b"))).start()
        responses = client.idle_check(timeout=5)
        elapsed = time.monotonic() - started
        client.idle_done()
        client.logout()
        assert (1, b"EXISTS") in responses
        assert elapsed < 1.2
    finally:
        second.stop()
        first.stop()
