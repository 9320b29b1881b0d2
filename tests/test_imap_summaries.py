"""Message summaries (issue 4): written sealed with each message, on SQLite and
PostgreSQL; FETCH ENVELOPE/BODYSTRUCTURE, SEARCH on header keys, SORT and THREAD
answer from them exactly as from the bodies; missing or damaged ones are rebuilt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from directory.models import MailboxType
from directory.service import Directory
from mailserver.mime import fetch as mime_fetch
from mailserver.mime.parse import ParsedMessage
from mailserver.mime.summary import decode_render, head_block, summarize
from mailserver.store import Store, crypto
from mailserver.store.database import Reader, create_engine
from mailserver.store.migrate import upgrade
from mailserver.store.models import MessageSummary
from mailserver.store.vault import Vault
from tests.conftest import ServerThread
from tests.imap_support import ALICE, BOB, imaps

ENCODED = (
    b"From: =?utf-8?q?Dr_Andr=C3=A9?= <andre@h.example>\r\nTo: <a@h.example>\r\n"
    b"Cc: Lab <lab@h.example>\r\nSubject: =?utf-8?q?R=C3=A9sultats_urgents?=\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <enc@h.example>\r\n"
    b"X-Other: not kept\r\n\r\nCorps.\r\n"
)
EIGHT_BIT = (
    "From: Zoé <zoe@h.example>\r\nTo: <a@h.example>\r\nSubject: Compte rendu opératoire\r\n"
    "Date: Tue, 24 Nov 2026 09:00:00 +0000\r\nMessage-ID: <8bit@h.example>\r\n"
    "In-Reply-To: <enc@h.example>\r\nReferences: <enc@h.example>\r\n\r\nTexte.\r\n"
).encode()
MULTIPART = (
    b"From: <b@h.example>\r\nTo: <a@h.example>\r\nSubject: CR\r\n"
    b"Date: Wed, 25 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="xx"\r\n\r\n'
    b"--xx\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVoir pi\xc3\xa8ce.\r\n"
    b'--xx\r\nContent-Type: application/pdf; name="cr.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment\r\n\r\n"
    b"JVBERi0xLjQK\r\n--xx--\r\n"
)
SAMPLES = [ENCODED, EIGHT_BIT, MULTIPART]


def test_summary_renders_what_the_body_renders() -> None:
    for raw in SAMPLES:
        parsed = ParsedMessage.from_bytes(raw)
        summary = summarize(raw)
        rendered = decode_render(summary.render)
        for utf8 in (False, True):
            assert rendered.item("ENVELOPE", utf8) == mime_fetch.envelope(parsed, utf8=utf8)
            assert rendered.item("BODYSTRUCTURE", utf8) == mime_fetch.body_structure(
                parsed, extended=True, utf8=utf8)
            assert rendered.item("BODY", utf8) == mime_fetch.body_structure(
                parsed, extended=False, utf8=utf8)
        # The head parses like the message's header for the fields it keeps.
        head = ParsedMessage.from_bytes(summary.head)
        for name in ("from", "subject", "date", "message-id", "references", "cc"):
            assert head.header_values(name) == parsed.header_values(name)
        assert head.header_value("x-other") is None
    with pytest.raises(ValueError):
        decode_render(b"\x01\x03\x00\x00")


def test_sealed_summaries_refuse_other_keys_and_plain_text() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = crypto.summary_key(X25519PrivateKey.generate(), 7)
    other = crypto.summary_key(X25519PrivateKey.generate(), 7)
    sealed = crypto.seal_summary(key, 7, b"head", b"From: x\r\n\r\n")
    assert b"From" not in sealed
    assert crypto.open_summary(key, 7, b"head", sealed) == b"From: x\r\n\r\n"
    assert crypto.summary_opener(key, 7, b"head")(sealed) == b"From: x\r\n\r\n"
    for wrong in (lambda: crypto.open_summary(other, 7, b"head", sealed),
                  lambda: crypto.open_summary(key, 8, b"head", sealed),
                  lambda: crypto.open_summary(key, 7, b"render", sealed),
                  lambda: crypto.summary_opener(key, 8, b"head")(sealed),
                  # a plain summary where the mailbox is sealed would be a downgrade
                  lambda: crypto.open_summary(key, 7, b"head", crypto.PLAIN_SUMMARY + b"x")):
        with pytest.raises(crypto.CryptoError):
            wrong()


@pytest.fixture
async def sealed_store(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Store, int]]:
    engine = create_engine(database_url)
    await upgrade(engine)
    crypto.create_master_key(tmp_path / "master.key")
    vault = Vault(crypto.load_master_key(tmp_path / "master.key"), engine.dialect.name)
    reader = Reader(engine)
    store = Store(engine, vault, reader=reader)
    box = await Directory(engine).add_mailbox("a@h.example", MailboxType.PER, password_hash=None)
    await store.ensure_folders(box.id)
    try:
        yield store, box.id
    finally:
        await store.close()
        reader.close()
        await engine.dispose()


async def _stored(store: Store, folder_id: int) -> dict[int, tuple[bytes, bytes]]:
    async with store._engine.connect() as connection:  # the raw rows, as on disk
        rows = (await connection.execute(
            select(MessageSummary.uid, MessageSummary.head, MessageSummary.render)
            .where(MessageSummary.folder_id == folder_id))).all()
    return {int(r[0]): (bytes(r[1]), bytes(r[2])) for r in rows}


async def test_summaries_sealed_copied_expunged_and_rebuilt(
    sealed_store: tuple[Store, int],
) -> None:
    store, box = sealed_store
    for raw in SAMPLES:
        await store.append(box, "INBOX", raw)
    inbox = await store.folder(box, "INBOX")
    archive = await store.folder(box, "Archive")
    assert inbox is not None and archive is not None
    stored = await _stored(store, inbox.id)
    assert sorted(stored) == [1, 2, 3]
    for head, render in stored.values():  # sealed: no header text on disk
        assert head.startswith(crypto.SUMMARY_FORMAT) and render.startswith(b"MSS1")
        # (longer than 2 bytes: "CR" alone turns up in random ciphertext now and then)
        assert b"h.example" not in head + render and b'"CR"' not in render
    heads = await store.summary_heads(inbox.id, box, [1, 2, 3])
    assert heads == {n + 1: head_block(ParsedMessage.from_bytes(r)) for n, r in
                     enumerate(SAMPLES)}
    expected = {n + 1: summarize(r).render for n, r in enumerate(SAMPLES)}
    rendered = await store.rendered(inbox.id, box, [1, 2, 3])
    assert {u: r.envelope for u, r in rendered.items()} == {
        u: decode_render(e).envelope for u, e in expected.items()}

    # COPY carries the sealed summaries; EXPUNGE takes them away with the message.
    copied = await store.copy_messages(inbox.id, [1, 3], archive.id)
    assert sorted(await _stored(store, archive.id)) == [p[1] for p in copied.pairs]
    assert (await store.rendered(archive.id, box, [2]))[2].body_structure == \
        decode_render(expected[3]).body_structure
    assert await store.expunge(inbox.id, [2]) == [2]
    assert sorted(await _stored(store, inbox.id)) == [1, 3]

    # Missing (stored before summaries existed) and damaged summaries are rebuilt
    # from the bodies on first use, and stored sealed for the next time.
    async with store._engine.begin() as connection:
        await connection.execute(delete(MessageSummary).where(
            MessageSummary.folder_id == inbox.id, MessageSummary.uid == 1))
        await connection.execute(update(MessageSummary).where(
            MessageSummary.folder_id == inbox.id, MessageSummary.uid == 3,
        ).values(head=crypto.PLAIN_SUMMARY + b"Subject: forged\r\n\r\n"))
    heads = await store.summary_heads(inbox.id, box, [1, 3])
    assert heads[3] == head_block(ParsedMessage.from_bytes(MULTIPART))
    assert heads[1] == head_block(ParsedMessage.from_bytes(ENCODED))
    rebuilt = await _stored(store, inbox.id)
    assert sorted(rebuilt) == [1, 3]
    assert all(h.startswith(crypto.SUMMARY_FORMAT) for h, _ in rebuilt.values())
    async with store._engine.begin() as connection:
        await connection.execute(delete(MessageSummary))
    whole = await store.summary_heads(inbox.id, box, list(range(1, 2500)))
    assert sorted(whole) == [1, 3]  # the scan of a whole folder fills them too
    assert (await store.rendered(inbox.id, box, [1]))[1].envelope == \
        decode_render(expected[1]).envelope


def _fetch_lines(client: object, items: str) -> list[bytes]:
    typ, data = client.fetch("1:*", items)  # type: ignore[attr-defined]
    assert typ == "OK"
    return [b"".join(part if isinstance(part, bytes) else b"".join(part) for part in data)]


def test_imap_answers_from_summaries_as_from_bodies(server: ServerThread) -> None:
    server.add_mailbox(ALICE, "correct horse battery")
    server.add_mailbox(BOB, "correct horse battery")
    record = server.call(server.app.directory.lookup(ALICE))
    assert record is not None
    for raw in SAMPLES:
        server.call(server.app.store.deliver([record.id], raw))
    client = imaps(server)
    try:
        client.select("INBOX")
        items = "(ENVELOPE BODYSTRUCTURE BODY)"
        searches = [("FROM", '"andre"'), ("SUBJECT", '"sultats urgents"'), ("CC", "lab"),
                    ("SUBJECT", "ratoire"), ("HEADER", "Message-ID", "<8bit@h.example>"),
                    ("SENTON", "24-Nov-2026"), ("SENTBEFORE", "25-Nov-2026"),
                    ("OR", "FROM", "zoe", "TO", "nobody"), ("NOT", "FROM", "b@h.example"),
                    ("HEADER", "References", '""')]
        from_summaries = _fetch_lines(client, items)
        found = [client.uid("SEARCH", "CHARSET", "UTF-8", *key)[1] for key in searches]
        sort = client.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")[1]
        thread = client.uid("THREAD", "REFERENCES", "UTF-8", "ALL")[1]
        assert found[0] == [b"1"] and found[1] == [b"1"] and found[3] == [b"2"]
        assert found[4] == [b"2"] and found[5] == [b"2"] and found[7] == [b"2"]
        assert thread == [b"(1 2)(3)"]

        # The same questions with every summary gone: answered from the bodies (and
        # the summaries rebuilt); and with a key the summaries lack (body path).
        async def drop() -> None:
            async with server.app.engine.begin() as connection:
                await connection.execute(delete(MessageSummary))

        server.call(drop())
        assert _fetch_lines(client, items) == from_summaries
        server.call(drop())
        assert [client.uid("SEARCH", "CHARSET", "UTF-8", *key)[1] for key in searches] \
            == found
        assert client.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")[1] == sort
        assert client.uid("THREAD", "REFERENCES", "UTF-8", "ALL")[1] == thread
        assert client.uid("SEARCH", "HEADER", "X-Other", "kept")[1] == [b"1"]
        assert client.uid("SEARCH", "FROM", "andre", "HEADER", "X-Other", "kept")[1] == [b"1"]
    finally:
        client.logout()
