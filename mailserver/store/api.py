"""The Store API: the only way protocol code reaches mail data.

Writes go through the group-commit writer (``batch.py``); every method that
returns after a write returns after the COMMIT.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    Connection,
    Insert,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from mailserver.store.batch import WriteBatcher
from mailserver.store.models import (
    DEFAULT_FOLDERS,
    Blob,
    Folder,
    Message,
    Thread,
    ThreadParticipant,
)
from mailserver.store.notify import ChangeBus, FolderChange

FlagMode = Literal["set", "add", "remove"]
T = TypeVar("T")


class StoreError(Exception):
    """A store operation cannot be done; the message says why."""


@dataclass(frozen=True)
class FolderInfo:
    id: int
    mailbox_id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    subscribed: bool


@dataclass(frozen=True)
class Delivered:
    mailbox_id: int
    folder_id: int
    uidvalidity: int
    uid: int
    modseq: int


@dataclass(frozen=True)
class ThreadInfo:
    id: int
    status: str
    opened_by: str | None
    participants: frozenset[str]


@dataclass(frozen=True)
class ThreadUpdate:
    """What a delivery does to a thread: join ``thread_id`` or open a new one."""

    thread_id: int | None
    opened_by: str | None = None
    root_message_id: str | None = None
    add_participants: frozenset[str] = frozenset()
    status: str | None = None
    closed_by: str | None = None


@dataclass(frozen=True)
class MessageInfo:
    folder_id: int
    uid: int
    modseq: int
    internal_date: dt.datetime
    size: int
    flags: frozenset[str]
    message_id: str | None
    blob_sha256: str


def _folder_info(row: Any) -> FolderInfo:
    return FolderInfo(
        id=row.id,
        mailbox_id=row.mailbox_id,
        name=row.name,
        special_use=row.special_use,
        uidvalidity=row.uidvalidity,
        uidnext=row.uidnext,
        highestmodseq=row.highestmodseq,
        subscribed=row.subscribed,
    )


def _message_info(row: Any) -> MessageInfo:
    internal_date = row.internal_date
    if internal_date.tzinfo is None:  # SQLite returns naive datetimes (stored as UTC)
        internal_date = internal_date.replace(tzinfo=dt.UTC)
    return MessageInfo(
        folder_id=row.folder_id,
        uid=row.uid,
        modseq=row.modseq,
        internal_date=internal_date,
        size=row.size,
        flags=frozenset(row.flags.split()),
        message_id=row.message_id,
        blob_sha256=row.blob_sha256,
    )


# Statements on the delivery path, built once (SQLAlchemy caches their compiled form).
_FOLDER_ID = select(Folder.id).where(
    Folder.mailbox_id == bindparam("mailbox_id"), Folder.name == bindparam("name")
)
_BUMP_RETURNING = (Folder.highestmodseq, Folder.uidnext, Folder.uidvalidity)
_TAKE_UID_AND_MODSEQ = (
    update(Folder)
    .where(Folder.id == bindparam("folder_id"))
    .values(highestmodseq=Folder.highestmodseq + 1, uidnext=Folder.uidnext + 1)
    .returning(*_BUMP_RETURNING)
)
_TAKE_MODSEQ = (
    update(Folder)
    .where(Folder.id == bindparam("folder_id"))
    .values(highestmodseq=Folder.highestmodseq + 1)
    .returning(*_BUMP_RETURNING)
)
_INSERT_MESSAGE = insert(Message)


def _new_uidvalidity() -> int:
    # RFC 9051 §2.3.1.1: a non-zero 32-bit value that changes if UIDs could repeat.
    return max(1, int(time.time()) & 0xFFFFFFFF)


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self.changes = ChangeBus()
        # (mailbox_id, folder name) -> folder id; folders are never re-numbered.
        self._folder_ids: dict[tuple[int, str], int] = {}
        self._writer = WriteBatcher(engine)
        # A failed group transaction may have cached ids of folders it created.
        self._writer.on_failure = self._folder_ids.clear
        self._insert_blob = self._insert(Blob.__table__)
        self._insert_folders = self._insert(Folder.__table__)

    async def close(self) -> None:
        await self._writer.close()

    # ---- writing -------------------------------------------------------------

    async def deliver(
        self,
        mailbox_ids: Sequence[int],
        raw: bytes,
        *,
        message_id: str | None = None,
        folder: str = "INBOX",
        internal_date: dt.datetime | None = None,
        thread: ThreadUpdate | None = None,
        also: Callable[[Connection], object] | None = None,
    ) -> list[Delivered]:
        """Store ``raw`` in ``folder`` of every mailbox, atomically: all or none,
        together with what it does to its ``thread`` and with ``also`` (e.g. the
        outbound queue's rows for the remote recipients), in the same unit of work."""
        if not mailbox_ids and also is None:
            return []
        when = internal_date or dt.datetime.now(dt.UTC)
        digest = hashlib.sha256(raw).hexdigest()

        def work(connection: Connection) -> list[Delivered]:
            if also is not None:
                also(connection)
            if not mailbox_ids:
                return []
            self._put_blob(connection, digest, raw)
            thread_id = self._apply_thread(connection, thread) if thread else None
            delivered = []
            for mailbox_id in dict.fromkeys(mailbox_ids):  # once per mailbox
                folder_id = self._folder_id(connection, mailbox_id, folder)
                delivered.append(
                    self._insert_message(
                        connection, mailbox_id, folder_id, digest, len(raw),
                        when, "", message_id, thread_id,
                    )
                )
            return delivered

        result: list[Delivered] = await self._writer.submit(work, self._announce_new)
        return result

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` (a synchronous function of the connection) as one unit of
        the group-commit writer; return its result once committed. For rooms that
        own their tables (the outbound queue) and must write beside the store."""
        result: T = await self._writer.submit(work)
        return result

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run a synchronous read ``work`` on a connection of its own."""
        async with self._engine.connect() as connection:
            return await connection.run_sync(work)

    async def append(
        self,
        mailbox_id: int,
        folder: str,
        raw: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: dt.datetime | None = None,
        message_id: str | None = None,
    ) -> Delivered:
        """IMAP APPEND: store ``raw`` in an existing folder of the mailbox."""
        when = internal_date or dt.datetime.now(dt.UTC)
        digest = hashlib.sha256(raw).hexdigest()
        flag_text = " ".join(sorted(set(flags)))

        def work(connection: Connection) -> list[Delivered]:
            folder_id = self._existing_folder_id(connection, mailbox_id, folder)
            self._put_blob(connection, digest, raw)
            return [
                self._insert_message(
                    connection, mailbox_id, folder_id, digest, len(raw),
                    when, flag_text, message_id, None,
                )
            ]

        result: list[Delivered] = await self._writer.submit(work, self._announce_new)
        return result[0]

    async def set_flags(
        self, folder_id: int, uids: Sequence[int], flags: Iterable[str], mode: FlagMode
    ) -> list[MessageInfo]:
        """Change the flags of ``uids``; each changed message gets a new MODSEQ."""
        wanted = set(flags)

        def work(connection: Connection) -> list[MessageInfo]:
            rows = (
                connection.execute(
                    select(Message).where(Message.folder_id == folder_id, Message.uid.in_(uids))
                )
            ).all()
            changed = []
            for row in rows:
                current = set(row.flags.split())
                new = wanted if mode == "set" else (
                    current | wanted if mode == "add" else current - wanted
                )
                if new == current:
                    continue
                modseq, _, _ = self._bump(connection, folder_id, uidnext=False)
                text = " ".join(sorted(new))
                connection.execute(
                    update(Message)
                    .where(Message.id == row.id)
                    .values(flags=text, modseq=modseq)
                )
                changed.append(_with_flags(_message_info(row), new, modseq))
            return changed

        def announce(changed: list[MessageInfo]) -> None:
            if changed:
                self.changes.publish(
                    FolderChange(folder_id, "flags", tuple(m.uid for m in changed),
                                 max(m.modseq for m in changed))
                )

        result: list[MessageInfo] = await self._writer.submit(work, announce)
        return result

    async def expunge(self, folder_id: int, uids: Sequence[int]) -> list[int]:
        """Remove ``uids`` from the folder for good; returns the UIDs removed."""

        def work(connection: Connection) -> tuple[list[int], int]:
            present = (
                connection.execute(
                    select(Message.uid).where(
                        Message.folder_id == folder_id, Message.uid.in_(uids)
                    )
                )
            ).scalars().all()
            if not present:
                return [], 0
            modseq, _, _ = self._bump(connection, folder_id, uidnext=False)
            connection.execute(
                delete(Message).where(Message.folder_id == folder_id, Message.uid.in_(present))
            )
            return sorted(present), modseq

        def announce(result: tuple[list[int], int]) -> None:
            removed, modseq = result
            if removed:
                self.changes.publish(FolderChange(folder_id, "expunge", tuple(removed), modseq))

        removed, _ = await self._writer.submit(work, announce)
        return list(removed)

    async def ensure_folders(self, mailbox_id: int) -> None:
        """Create the default folders of a mailbox if they are missing."""

        def work(connection: Connection) -> None:
            self._folder_id(connection, mailbox_id, "INBOX")

        await self._writer.submit(work)

    # ---- reading -------------------------------------------------------------

    async def folders(self, mailbox_id: int) -> list[FolderInfo]:
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(Folder).where(Folder.mailbox_id == mailbox_id).order_by(Folder.name)
                )
            ).all()
        return [_folder_info(row) for row in rows]

    async def folder(self, mailbox_id: int, name: str) -> FolderInfo | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                )
            ).first()
        return _folder_info(row) if row is not None else None

    async def messages(self, folder_id: int, *, since_uid: int = 0) -> list[MessageInfo]:
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(Message)
                    .where(Message.folder_id == folder_id, Message.uid > since_uid)
                    .order_by(Message.uid)
                )
            ).all()
        return [_message_info(row) for row in rows]

    async def body(self, blob_sha256: str) -> bytes:
        async with self._engine.connect() as connection:
            data = (
                await connection.execute(select(Blob.data).where(Blob.sha256 == blob_sha256))
            ).scalar_one_or_none()
        if data is None:
            raise StoreError(f"message body {blob_sha256} is missing")
        return bytes(data)

    async def delivered_to(self, mailbox_id: int, message_id: str) -> bool:
        """Did this server store a message with ``message_id`` in this mailbox?"""
        async with self._engine.connect() as connection:
            found = (
                await connection.execute(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.mailbox_id == mailbox_id, Message.message_id == message_id)
                )
            ).scalar_one()
        return bool(found)

    async def find_thread(
        self, mailbox_id: int, in_reply_to: str | None, references: Sequence[str],
        *, participant: str | None = None,
    ) -> ThreadInfo | None:
        """The thread of the message being replied to, among the messages this
        server delivered to ``mailbox_id``: In-Reply-To first, else the last id of
        References found there. Ids never delivered to that mailbox count for
        nothing, whatever the client claims.

        With ``participant`` (a professional's address), messages of the threads
        that address takes part in count too: a professional follows up on what
        they sent, of which the server keeps no copy in their mailbox.
        """
        candidates = [c for c in (in_reply_to, *reversed(references)) if c][:100]
        if not candidates:
            return None
        mine = Message.mailbox_id == mailbox_id
        if participant is not None:
            mine = or_(mine, Message.thread_id.in_(
                select(ThreadParticipant.thread_id).where(
                    ThreadParticipant.address == participant
                )
            ))
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(Message.message_id, Message.thread_id).where(
                        mine, Message.message_id.in_(candidates)
                    )
                )
            ).all()
            found: dict[str, int | None] = {}
            for row in rows:  # a copy in a thread wins over a copy in none
                found[row.message_id] = found.get(row.message_id) or row.thread_id
            parent = next((c for c in candidates if c in found), None)
            thread_id = found.get(parent) if parent else None
            if thread_id is None:
                return None
            thread = (
                await connection.execute(select(Thread).where(Thread.id == thread_id))
            ).one()
            participants = (
                await connection.execute(
                    select(ThreadParticipant.address).where(
                        ThreadParticipant.thread_id == thread_id
                    )
                )
            ).scalars().all()
        return ThreadInfo(thread.id, thread.status, thread.opened_by, frozenset(participants))

    # ---- inside a write transaction -------------------------------------------

    def _insert(self, table: Any) -> Insert:
        if self._dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    def _apply_thread(self, connection: Connection, change: ThreadUpdate) -> int:
        now = dt.datetime.now(dt.UTC)
        if change.thread_id is None:
            thread_id = int(
                connection.execute(
                    insert(Thread).values(
                        root_message_id=change.root_message_id, status=change.status or "open",
                        opened_by=change.opened_by, closed_by=change.closed_by,
                        created_at=now, updated_at=now,
                    ).returning(Thread.id)
                ).scalar_one()
            )
        else:
            thread_id = change.thread_id
            if change.status is not None:
                connection.execute(
                    update(Thread).where(Thread.id == thread_id).values(
                        status=change.status, closed_by=change.closed_by, updated_at=now
                    )
                )
        if change.add_participants:
            connection.execute(
                self._insert(ThreadParticipant.__table__),
                [{"thread_id": thread_id, "address": a} for a in sorted(change.add_participants)],
            )
        return thread_id

    def _put_blob(self, connection: Connection, digest: str, raw: bytes) -> None:
        connection.execute(
            self._insert_blob, {"sha256": digest, "size": len(raw), "data": raw}
        )

    def _existing_folder_id(
        self, connection: Connection, mailbox_id: int, name: str
    ) -> int:
        if name.upper() == "INBOX":
            return self._folder_id(connection, mailbox_id, "INBOX")
        key = (mailbox_id, name)
        if key in self._folder_ids:
            return self._folder_ids[key]
        found = (
            connection.execute(
                select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
            )
        ).scalar_one_or_none()
        if found is None:
            raise StoreError(f"no folder {name!r}")
        self._folder_ids[key] = found
        return found

    def _folder_id(self, connection: Connection, mailbox_id: int, name: str) -> int:
        key = (mailbox_id, name)
        cached = self._folder_ids.get(key)
        if cached is not None:
            return cached
        found = (
            connection.execute(_FOLDER_ID, {"mailbox_id": mailbox_id, "name": name})
        ).scalar_one_or_none()
        if found is None:
            uidvalidity = _new_uidvalidity()
            connection.execute(
                self._insert_folders,
                [
                    {
                        "mailbox_id": mailbox_id,
                        "name": folder_name,
                        "special_use": special_use,
                        "uidvalidity": uidvalidity,
                        "uidnext": 1,
                        "highestmodseq": 1,
                        "subscribed": True,
                    }
                    for folder_name, special_use in DEFAULT_FOLDERS
                ],
            )
            found = (
                connection.execute(_FOLDER_ID, {"mailbox_id": mailbox_id, "name": name})
            ).scalar_one_or_none()
            if found is None:
                raise StoreError(f"no folder {name!r}")
        self._folder_ids[key] = found
        return found

    def _bump(
        self, connection: Connection, folder_id: int, *, uidnext: bool
    ) -> tuple[int, int, int]:
        """Take the folder's next MODSEQ (and UID when ``uidnext``), under its row lock.

        Returns (modseq, uid taken or uidnext, uidvalidity).
        """
        statement = _TAKE_UID_AND_MODSEQ if uidnext else _TAKE_MODSEQ
        row = (connection.execute(statement, {"folder_id": folder_id})).one()
        taken_uid = int(row.uidnext) - 1 if uidnext else int(row.uidnext)
        return int(row.highestmodseq), taken_uid, int(row.uidvalidity)

    def _insert_message(
        self,
        connection: Connection,
        mailbox_id: int,
        folder_id: int,
        digest: str,
        size: int,
        when: dt.datetime,
        flags: str,
        message_id: str | None,
        thread_id: int | None,
    ) -> Delivered:
        modseq, uid, uidvalidity = self._bump(connection, folder_id, uidnext=True)
        connection.execute(
            _INSERT_MESSAGE,
            {
                "folder_id": folder_id,
                "mailbox_id": mailbox_id,
                "uid": uid,
                "modseq": modseq,
                "internal_date": when,
                "size": size,
                "flags": flags,
                "message_id": message_id[:998] if message_id else None,
                "blob_sha256": digest,
                "thread_id": thread_id,
            },
        )
        return Delivered(mailbox_id, folder_id, uidvalidity, uid, modseq)

    def _announce_new(self, delivered: list[Delivered]) -> None:
        for item in delivered:
            self.changes.publish(FolderChange(item.folder_id, "exists", (item.uid,), item.modseq))


def _with_flags(info: MessageInfo, flags: set[str], modseq: int) -> MessageInfo:
    return MessageInfo(
        folder_id=info.folder_id,
        uid=info.uid,
        modseq=modseq,
        internal_date=info.internal_date,
        size=info.size,
        flags=frozenset(flags),
        message_id=info.message_id,
        blob_sha256=info.blob_sha256,
    )
