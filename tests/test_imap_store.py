"""The Store API parts IMAP needs, on SQLite and PostgreSQL: folders, copy/move,
expunge with a record of vanished UIDs, conditional flag changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from directory.models import MailboxType
from directory.service import Directory
from mailserver.store import Store, StoreError
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[tuple[Store, int]]:
    engine = create_engine(database_url)
    await upgrade(engine)
    store = Store(engine)
    box = await Directory(engine).add_mailbox("a@h.example", MailboxType.PER, password_hash=None)
    await store.ensure_folders(box.id)
    try:
        yield store, box.id
    finally:
        await store.close()
        await engine.dispose()


async def test_create_rename_delete_folders(stack: tuple[Store, int]) -> None:
    store, box = stack
    created = await store.create_folder(box, "Projets")
    with pytest.raises(StoreError):
        await store.create_folder(box, "Projets")
    await store.create_folder(box, "Projets/2026")
    await store.rename_folder(box, "Projets", "Dossiers", "/")
    names = {f.name for f in await store.folders(box)}
    assert {"Dossiers", "Dossiers/2026"} <= names and "Projets" not in names
    renamed = await store.folder(box, "Dossiers")
    assert renamed is not None and renamed.id == created.id
    assert renamed.uidvalidity == created.uidvalidity
    await store.delete_folder(box, "Dossiers/2026")
    again = await store.create_folder(box, "Dossiers/2026")
    # RFC 9051 §2.3.1.1: a re-created name gets a new UIDVALIDITY.
    assert again.uidvalidity not in {f.uidvalidity for f in await store.folders(box)
                                     if f.id != again.id}


async def test_copy_move_expunge_and_vanished(stack: tuple[Store, int]) -> None:
    store, box = stack
    inbox = await store.folder(box, "INBOX")
    archive = await store.folder(box, "Archive")
    assert inbox is not None and archive is not None
    for n in range(4):
        await store.append(box, "INBOX", f"Subject: {n}\r\n\r\nbody\r\n".encode(),
                           flags={"\\Seen"} if n == 0 else ())
    copied = await store.copy_messages(inbox.id, [1, 3], archive.id)
    assert copied.uidvalidity == archive.uidvalidity and copied.pairs == [(1, 1), (3, 2)]
    start = (await store.folder_by_id(inbox.id)).highestmodseq  # type: ignore[union-attr]
    moved = await store.copy_messages(inbox.id, [2], archive.id, move=True)
    assert moved.pairs == [(2, 3)]
    assert await store.expunge(inbox.id, [4]) == [4]
    assert [m.uid for m in await store.messages(inbox.id)] == [1, 3]
    assert await store.vanished_since(inbox.id, start) == [2, 4]
    assert await store.vanished_since(inbox.id, 0) == [2, 4]
    copies = await store.messages(archive.id)
    assert copies[0].flags == frozenset({"\\Seen"})
    stats = await store.folder_stats(archive.id)
    assert (stats.messages, stats.unseen) == (3, 2)


async def test_store_flags_unchanged_since(stack: tuple[Store, int]) -> None:
    store, box = stack
    inbox = await store.folder(box, "INBOX")
    assert inbox is not None
    one = await store.append(box, "INBOX", b"Subject: 1\r\n\r\nx\r\n")
    await store.append(box, "INBOX", b"Subject: 2\r\n\r\ny\r\n")
    bumped = await store.store_flags(inbox.id, [2], {"\\Flagged"}, "add")
    result = await store.store_flags(inbox.id, [1, 2], {"\\Seen"}, "add",
                                     unchanged_since=one.modseq)
    assert [m.uid for m in result.changed] == [1] and result.modified == [2]
    assert result.changed[0].modseq > bumped.changed[0].modseq
    changed = await store.changed_since(inbox.id, bumped.changed[0].modseq)
    assert [m.uid for m in changed] == [1]
    assert [u for u, _, _ in await store.uid_flags(inbox.id)] == [1, 2]


async def test_folder_delta_is_shared_and_dropped_on_change(stack: tuple[Store, int]) -> None:
    store, box = stack
    inbox = await store.folder(box, "INBOX")
    assert inbox is not None
    await store.append(box, "INBOX", b"Subject: 1\r\n\r\nx\r\n")
    first, second = await asyncio.gather(store.folder_delta(inbox.id, 1),
                                         store.folder_delta(inbox.id, 1))
    assert first is second  # one query for both askers
    assert [m.uid for m in first.changed] == [1] and first.vanished == []
    await store.expunge(inbox.id, [1])
    after = await store.folder_delta(inbox.id, 1)  # the change dropped the cached answer
    assert after.changed == [] and after.vanished == [1]
    assert after.folder is not None and after.folder.highestmodseq > first.folder.highestmodseq  # type: ignore[union-attr]
