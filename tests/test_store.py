"""The Store API on SQLite and on PostgreSQL: delivery, UIDs, MODSEQ, flags,
expunge, notifications, group commit under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from directory.models import MailboxType
from directory.service import Directory
from mailserver.store import BodyMissing, Store
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade
from mailserver.store.notify import FolderChange


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[tuple[Store, Directory]]:
    engine = create_engine(database_url)
    await upgrade(engine)
    store = Store(engine)
    try:
        yield store, Directory(engine)
    finally:
        await store.close()
        await engine.dispose()


async def test_deliver_assigns_increasing_uids_and_modseqs(
    stack: tuple[Store, Directory],
) -> None:
    store, directory = stack
    box = await directory.add_mailbox("a@h.example", MailboxType.PER, password_hash=None)
    first = await store.deliver([box.id], b"Subject: 1\r\n\r\none\r\n", message_id="<1@x>")
    second = await store.deliver([box.id], b"Subject: 2\r\n\r\ntwo\r\n", message_id="<2@x>")
    assert [first[0].uid, second[0].uid] == [1, 2]
    assert second[0].modseq > first[0].modseq
    folder = await store.folder(box.id, "INBOX")
    assert folder is not None
    assert folder.uidnext == 3 and folder.highestmodseq >= second[0].modseq
    assert folder.uidvalidity == first[0].uidvalidity > 0
    messages = await store.messages(folder.id)
    assert [m.uid for m in messages] == [1, 2]
    assert await store.body(messages[1].blob_sha256) == b"Subject: 2\r\n\r\ntwo\r\n"
    assert await store.delivered_to(box.id, "<2@x>")
    assert not await store.delivered_to(box.id, "<3@x>")


async def test_default_folders_with_special_use(stack: tuple[Store, Directory]) -> None:
    store, directory = stack
    box = await directory.add_mailbox("b@h.example", MailboxType.ORG, password_hash=None)
    await store.ensure_folders(box.id)
    await store.ensure_folders(box.id)  # idempotent
    folders = {f.name: f.special_use for f in await store.folders(box.id)}
    assert folders == {
        "INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
        "Archive": "\\Archive", "Junk": "\\Junk",
    }


async def test_one_body_for_many_recipients_and_all_or_nothing(
    stack: tuple[Store, Directory],
) -> None:
    store, directory = stack
    boxes = [
        await directory.add_mailbox(f"r{i}@h.example", MailboxType.PER, password_hash=None)
        for i in range(3)
    ]
    delivered = await store.deliver([b.id for b in boxes], b"Subject: all\r\n\r\nx\r\n")
    assert len(delivered) == 3
    assert len({d.folder_id for d in delivered}) == 3
    # A recipient that does not exist makes the whole delivery fail: nobody gets it.
    with pytest.raises(Exception):  # noqa: B017 (the FK / folder error of the backend)
        await store.deliver([boxes[0].id, 999_999], b"Subject: half\r\n\r\nx\r\n")
    folder = await store.folder(boxes[0].id, "INBOX")
    assert folder is not None
    assert len(await store.messages(folder.id)) == 1


async def test_flags_and_expunge_bump_modseq_and_notify(stack: tuple[Store, Directory]) -> None:
    store, directory = stack
    box = await directory.add_mailbox("c@h.example", MailboxType.PER, password_hash=None)
    for i in range(3):
        await store.deliver([box.id], f"Subject: {i}\r\n\r\n.\r\n".encode())
    folder = await store.folder(box.id, "INBOX")
    assert folder is not None
    watcher = store.changes.subscribe(folder.id)
    heard: list[FolderChange] = []
    store.changes.listeners.append(heard.append)
    changed = await store.set_flags(folder.id, [1, 2], ["\\Seen"], "add")
    assert {m.uid for m in changed} == {1, 2}
    assert all(m.flags == {"\\Seen"} for m in changed)
    assert await store.set_flags(folder.id, [1], ["\\Seen"], "add") == []  # no change, no bump
    removed = await store.expunge(folder.id, [2, 3, 42])
    assert removed == [2, 3]
    left = await store.messages(folder.id)
    assert [(m.uid, m.flags) for m in left] == [(1, frozenset({"\\Seen"}))]
    assert watcher.take()
    flags_event, expunge_event = [c for c in heard if c.folder_id == folder.id]
    assert (flags_event.kind, flags_event.uids) == ("flags", (1, 2))
    assert (expunge_event.kind, expunge_event.uids) == ("expunge", (2, 3))
    assert expunge_event.modseq > flags_event.modseq
    # New mail after an expunge never reuses a UID (RFC 9051 §2.3.1.1).
    [again] = await store.deliver([box.id], b"Subject: 4\r\n\r\n.\r\n")
    assert again.uid == 4


async def test_append_into_named_folder(stack: tuple[Store, Directory]) -> None:
    store, directory = stack
    box = await directory.add_mailbox("d@h.example", MailboxType.PER, password_hash=None)
    await store.ensure_folders(box.id)
    sent = await store.append(box.id, "Sent", b"Subject: s\r\n\r\n.\r\n", flags=["\\Seen"])
    assert sent.uid == 1
    folder = await store.folder(box.id, "Sent")
    assert folder is not None
    [message] = await store.messages(folder.id)
    assert message.flags == {"\\Seen"}
    from mailserver.store import StoreError

    with pytest.raises(StoreError):
        await store.append(box.id, "../other", b"x")


async def test_concurrent_deliveries_group_commit_keeps_uids_dense(
    stack: tuple[Store, Directory],
) -> None:
    store, directory = stack
    box = await directory.add_mailbox("e@h.example", MailboxType.PER, password_hash=None)
    results = await asyncio.gather(
        *(store.deliver([box.id], f"Subject: {i}\r\n\r\n{i}\r\n".encode()) for i in range(200))
    )
    uids = sorted(r[0].uid for r in results)
    assert uids == list(range(1, 201))
    modseqs = [r[0].modseq for r in results]
    assert len(set(modseqs)) == 200


async def test_threads_are_found_only_through_what_the_mailbox_received(
    stack: tuple[Store, Directory],
) -> None:
    from mailserver.store import ThreadUpdate

    store, directory = stack
    doctor = await directory.add_mailbox("doc@h.example", MailboxType.PER, password_hash=None)
    patient = await directory.add_mailbox("p@h.example", MailboxType.PAT, password_hash=None)
    other = await directory.add_mailbox("q@h.example", MailboxType.PAT, password_hash=None)
    opening = ThreadUpdate(None, opened_by=doctor.address, root_message_id="<open@x>",
                           add_participants=frozenset({doctor.address, patient.address}),
                           status="open")
    await store.deliver([patient.id], b"Subject: r\r\n\r\n.\r\n", message_id="<open@x>",
                        thread=opening)
    await store.deliver([other.id], b"Subject: s\r\n\r\n.\r\n", message_id="<other@x>")
    found = await store.find_thread(patient.id, "<open@x>", [])
    assert found is not None and found.status == "open"
    assert found.participants == {doctor.address, patient.address}
    assert found.opened_by == doctor.address
    # References only: the last id the mailbox received counts.
    by_references = await store.find_thread(patient.id, None, ["<open@x>", "<nope@x>"])
    assert by_references == found
    # Another mailbox's message, or one in no thread, gives nothing.
    assert await store.find_thread(patient.id, "<other@x>", []) is None
    assert await store.find_thread(other.id, "<open@x>", []) is None
    assert await store.find_thread(other.id, "<other@x>", []) is None
    # The doctor received nothing, but follows up as a participant.
    assert await store.find_thread(doctor.id, "<open@x>", []) is None
    assert await store.find_thread(doctor.id, "<open@x>", [],
                                   participant=doctor.address) == found
    closing = ThreadUpdate(found.id, add_participants=frozenset({doctor.address}),
                           status="closed", closed_by=doctor.address)
    await store.deliver([patient.id], b"Subject: fin\r\n\r\n.\r\n", message_id="<fin@x>",
                        thread=closing)
    closed = await store.find_thread(patient.id, "<fin@x>", [])
    assert closed is not None and closed.id == found.id and closed.status == "closed"


async def _stored_bodies(store: Store) -> int:
    from sqlalchemy import func, select

    from mailserver.store.models import Blob

    async with store._engine.connect() as connection:  # what is on disk, not the API
        return int((await connection.execute(select(func.count()).select_from(Blob))).scalar_one())


async def test_bodies_go_with_their_last_message(stack: tuple[Store, Directory]) -> None:
    """An expunged message leaves no body behind once no other message (another
    recipient's copy, an IMAP COPY) uses it; a deleted folder takes its bodies."""
    store, directory = stack
    a = await directory.add_mailbox("gc-a@h.example", MailboxType.PER, password_hash=None)
    b = await directory.add_mailbox("gc-b@h.example", MailboxType.PER, password_hash=None)
    for box in (a, b):
        await store.ensure_folders(box.id)
    base = await _stored_bodies(store)
    shared = await store.deliver([a.id, b.id], b"Subject: both\r\n\r\nshared\r\n")
    await store.deliver([a.id], b"Subject: mine\r\n\r\nown\r\n")
    assert await _stored_bodies(store) == base + 2
    inbox_a = await store.folder(a.id, "INBOX")
    inbox_b = await store.folder(b.id, "INBOX")
    archive_a = await store.folder(a.id, "Archive")
    assert inbox_a and inbox_b and archive_a
    await store.copy_messages(inbox_a.id, [2], archive_a.id)
    assert await store.expunge(inbox_a.id, [1, 2]) == [1, 2]
    # "both" is still b's, "mine" is still in a's Archive
    assert await _stored_bodies(store) == base + 2
    [copy] = await store.messages(archive_a.id)
    assert await store.body(copy.blob_sha256) == b"Subject: mine\r\n\r\nown\r\n"
    assert await store.expunge(inbox_b.id, [shared[1].uid]) == [shared[1].uid]
    assert await _stored_bodies(store) == base + 1
    await store.delete_folder(a.id, "Archive")
    assert await _stored_bodies(store) == base
    with pytest.raises(BodyMissing):  # what a session still showing it gets
        await store.body(copy.blob_sha256)
