"""The Store API: the only way protocol code reaches mail data.

Writes go through the group-commit writer (``batch.py``); every method that
returns after a write returns after the COMMIT.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
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

from mailserver.mime.summary import Rendered, Summary, decode_render, summarize
from mailserver.store import summaries
from mailserver.store.batch import WriteBatcher
from mailserver.store.crypto import CryptoError
from mailserver.store.database import Reader
from mailserver.store.models import (
    DEFAULT_FOLDERS,
    Blob,
    BlobKey,
    ExpungedUid,
    Folder,
    Message,
    Thread,
    ThreadParticipant,
)
from mailserver.store.notify import ChangeBus, FolderChange
from mailserver.store.vault import Vault

log = logging.getLogger(__name__)
FlagMode = Literal["set", "add", "remove"]
T = TypeVar("T")


class StoreError(Exception):
    """A store operation cannot be done; the message says why."""


class BodyMissing(StoreError):
    """A body asked for is gone: its message was expunged meanwhile (by another
    session), and the body with it."""


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
    first_recent_uid: int = 1  # RFC 3501 §2.3.2 (Store.claim_recent)


@dataclass(frozen=True)
class Delivered:
    mailbox_id: int
    folder_id: int
    uidvalidity: int
    uid: int
    modseq: int


@dataclass(frozen=True)
class Appended:
    """One message of an APPEND / MULTIAPPEND."""

    raw: bytes
    flags: frozenset[str] = frozenset()
    internal_date: dt.datetime | None = None
    message_id: str | None = None


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
class FolderStats:
    messages: int
    unseen: int
    size: int
    deleted: int
    recent: int = 0  # RFC 3501 §6.3.10: no session told about them yet


@dataclass(frozen=True)
class FolderDelta:
    """What changed in a folder since a MODSEQ: its row now, changed messages (new
    ones included), expunged UIDs."""

    folder: FolderInfo | None
    changed: list[MessageInfo]
    vanished: list[int]


@dataclass(frozen=True)
class CopyResult:
    """RFC 4315 COPYUID: the destination's UIDVALIDITY and (source, new) UID pairs."""

    uidvalidity: int
    pairs: list[tuple[int, int]]


@dataclass(frozen=True)
class FlagResult:
    changed: list[MessageInfo]
    # RFC 7162 §3.1.3: UIDs not changed because their MODSEQ exceeds UNCHANGEDSINCE.
    modified: list[int]


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
        first_recent_uid=row.first_recent_uid,
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
# Statements IMAP runs on every command, built once: SQLAlchemy then finds their
# compiled form by a cache key memoised on the statement, not rebuilt per call.
_UIDS: Any = bindparam("uids", expanding=True)
_MESSAGES_BY_UID = (
    select(Message)
    .where(Message.folder_id == bindparam("folder_id"), Message.uid.in_(_UIDS))
    .order_by(Message.uid)
)
_PRESENT_UIDS = select(Message.uid, Message.blob_sha256).where(
    Message.folder_id == bindparam("folder_id"), Message.uid.in_(_UIDS)
)
_DELETE_UIDS = delete(Message).where(
    Message.folder_id == bindparam("folder_id"), Message.uid.in_(_UIDS)
)
_SET_FLAGS = (
    update(Message)
    .where(Message.id == bindparam("message_row"))
    .values(flags=bindparam("new_flags"), modseq=bindparam("new_modseq"))
)
_INSERT_BLOB_KEY = insert(BlobKey)
_FOLDER_BY_ID = select(Folder).where(Folder.id == bindparam("folder_id"))
_FOLDER_BY_NAME = select(Folder).where(
    Folder.mailbox_id == bindparam("mailbox_id"), Folder.name == bindparam("name")
)
_CHANGED_SINCE = (
    select(Message)
    .where(Message.folder_id == bindparam("folder_id"), Message.modseq > bindparam("since"))
    .order_by(Message.uid)
)
_VANISHED_SINCE = select(ExpungedUid.uid).where(
    ExpungedUid.folder_id == bindparam("folder_id"), ExpungedUid.modseq > bindparam("since")
)
_VIEW = (
    select(Message.uid, Message.flags)
    .where(Message.folder_id == bindparam("folder_id"))
    .order_by(Message.uid)
)
# find_thread(): the replied-to ids among what the mailbox received (and, for a
# professional, among the threads they take part in), then the thread and its members.
_PARENTS = select(Message.message_id, Message.thread_id).where(
    Message.mailbox_id == bindparam("mailbox_id"),
    Message.message_id.in_(bindparam("candidates", expanding=True)),
)
_PARENTS_OR_PARTICIPANT = select(Message.message_id, Message.thread_id).where(
    or_(
        Message.mailbox_id == bindparam("mailbox_id"),
        Message.thread_id.in_(
            select(ThreadParticipant.thread_id).where(
                ThreadParticipant.address == bindparam("participant")
            )
        ),
    ),
    Message.message_id.in_(bindparam("candidates", expanding=True)),
)
_THREAD_WITH_MEMBERS = (
    select(Thread.id, Thread.status, Thread.opened_by, ThreadParticipant.address)
    .outerjoin(ThreadParticipant, ThreadParticipant.thread_id == Thread.id)
    .where(Thread.id == bindparam("thread_id"))
)


def _summary_of(raw: bytes) -> Summary | None:
    """The message's summary; None (answers then come from the body, as before
    summaries) if rendering it fails: that must never refuse a delivery."""
    try:
        return summarize(raw)
    except Exception:
        log.exception("store: cannot summarise a message; IMAP will read its body")
        return None


def _new_uidvalidity() -> int:
    # RFC 9051 §2.3.1.1: a non-zero 32-bit value that changes if UIDs could repeat.
    return max(1, int(time.time()) & 0xFFFFFFFF)


class Store:
    def __init__(
        self, engine: AsyncEngine, vault: Vault | None = None, reader: Reader | None = None
    ) -> None:
        self._engine = engine
        self._reader = reader
        # With a vault, bodies are stored encrypted (encryption at rest, vault.py).
        self._vault = vault
        self._dialect = engine.dialect.name
        self.changes = ChangeBus()
        # (mailbox_id, folder name) -> folder id; folders are never re-numbered.
        self._folder_ids: dict[tuple[int, str], int] = {}
        self._writer = WriteBatcher(engine)
        # A failed group transaction may have cached ids of folders it created.
        self._writer.on_failure = self._forget_uncommitted
        self._insert_blob = self._insert(Blob.__table__)
        self._insert_folders = self._insert(Folder.__table__)
        # folder_delta(): many IDLE sessions on one folder ask the same question after
        # each change; one query answers them all. Dropped on every change.
        self._deltas: dict[tuple[int, int], asyncio.Future[FolderDelta]] = {}
        self._bodies_queries: dict[tuple[bool, bool], Any] = {}
        self._generation: dict[int, int] = {}
        # folder id -> first UID not yet claimed \Recent by a session of this process.
        self._recent_taken: dict[int, int] = {}
        self.changes.listeners.append(self._forget_deltas)
        self.changes.prepare = self.folder_delta


    @property
    def vault(self) -> Vault | None:
        """The keys of encryption at rest (None when it is off)."""
        return self._vault

    def _forget_uncommitted(self) -> None:
        """A rolled-back write may have cached ids of folders, or mailbox keys, it
        created: forget them all (they are read again from the database)."""
        self._folder_ids.clear()
        if self._vault is not None:
            self._vault.forget_public_keys()

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
        summary = _summary_of(raw) if mailbox_ids else None

        def work(connection: Connection) -> list[Delivered]:
            if also is not None:
                also(connection)
            if not mailbox_ids:
                return []
            blob_id = self._store_body(connection, digest, raw, mailbox_ids)
            thread_id = self._apply_thread(connection, thread) if thread else None
            delivered = []
            for mailbox_id in dict.fromkeys(mailbox_ids):  # once per mailbox
                folder_id = self._folder_id(connection, mailbox_id, folder)
                delivered.append(
                    self._insert_message(
                        connection, mailbox_id, folder_id, blob_id, len(raw),
                        when, "", message_id, thread_id, summary,
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
        stored = await self.append_many(
            mailbox_id, folder, [Appended(raw, frozenset(flags), internal_date, message_id)]
        )
        return stored[0]

    async def append_many(
        self, mailbox_id: int, folder: str, messages: Sequence[Appended]
    ) -> list[Delivered]:
        """IMAP MULTIAPPEND: every message stored in one transaction, or none
        (RFC 3502 §6.3.11: "all or none of the messages are appended")."""
        now = dt.datetime.now(dt.UTC)
        prepared = [
            (m, hashlib.sha256(m.raw).hexdigest(), " ".join(sorted(set(m.flags))),
             _summary_of(m.raw))
            for m in messages
        ]

        def work(connection: Connection) -> list[Delivered]:
            folder_id = self._existing_folder_id(connection, mailbox_id, folder)
            stored = []
            for message, digest, flag_text, summary in prepared:
                blob_id = self._store_body(connection, digest, message.raw, [mailbox_id])
                stored.append(self._insert_message(
                    connection, mailbox_id, folder_id, blob_id, len(message.raw),
                    message.internal_date or now, flag_text, message.message_id, None,
                    summary,
                ))
            return stored

        result: list[Delivered] = await self._writer.submit(work, self._announce_new)
        return result

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
            rows = connection.execute(
                _PRESENT_UIDS, {"folder_id": folder_id, "uids": list(uids)}
            ).all()
            if not rows:
                return [], 0
            present = [int(row.uid) for row in rows]
            modseq, _, _ = self._bump(connection, folder_id, uidnext=False)
            connection.execute(_DELETE_UIDS, {"folder_id": folder_id, "uids": list(present)})
            self._record_vanished(connection, folder_id, present, modseq)
            self._drop_unused_bodies(connection, {row.blob_sha256 for row in rows})
            return sorted(present), modseq

        def announce(result: tuple[list[int], int]) -> None:
            removed, modseq = result
            if removed:
                self.changes.publish(FolderChange(folder_id, "expunge", tuple(removed), modseq))

        removed, _ = await self._writer.submit(work, announce)
        return list(removed)

    async def ensure_folders(self, mailbox_id: int) -> None:
        """Create the default folders of a mailbox if they are missing."""

        if (mailbox_id, "INBOX") in self._folder_ids:
            return  # made or seen by this process already: no write (every LOGIN asks)

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
        def read(connection: Connection) -> FolderInfo | None:
            row = connection.execute(
                _FOLDER_BY_NAME, {"mailbox_id": mailbox_id, "name": name}).first()
            return _folder_info(row) if row is not None else None

        return await self._point(read)

    async def messages(self, folder_id: int, *, since_uid: int = 0) -> list[MessageInfo]:
        return await self._messages_where(folder_id, Message.uid > since_uid)

    async def _messages_where(self, folder_id: int, condition: Any) -> list[MessageInfo]:
        """The folder's messages meeting ``condition``, by UID."""

        def read(connection: Connection) -> list[MessageInfo]:
            rows = connection.execute(
                select(Message).where(Message.folder_id == folder_id, condition)
                .order_by(Message.uid)
            ).all()
            return [_message_info(row) for row in rows]

        return await self._read(read)

    async def body(self, blob_sha256: str, *, mailbox_id: int | None = None) -> bytes:
        """One body, decrypted for ``mailbox_id`` when stored encrypted."""
        return (await self.bodies([blob_sha256], mailbox_id=mailbox_id))[blob_sha256]

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
        query = _PARENTS if participant is None else _PARENTS_OR_PARTICIPANT
        params = {"mailbox_id": mailbox_id, "candidates": candidates, "participant": participant}

        def read(connection: Connection) -> ThreadInfo | None:
            rows = connection.execute(query, params).all()
            found: dict[str, int | None] = {}
            for row in rows:  # a copy in a thread wins over a copy in none
                found[row.message_id] = found.get(row.message_id) or row.thread_id
            parent = next((c for c in candidates if c in found), None)
            thread_id = found.get(parent) if parent else None
            if thread_id is None:
                return None
            members = connection.execute(_THREAD_WITH_MEMBERS, {"thread_id": thread_id}).all()
            if not members:
                return None
            first = members[0]
            return ThreadInfo(first.id, first.status, first.opened_by,
                              frozenset(m.address for m in members if m.address is not None))

        if self._reader is not None:  # index look-ups only: a point read
            return await self._reader.point(read)
        return await self._read(read)

    async def _point(self, fn: Callable[[Connection], T]) -> T:
        """A read by key or a short index range: Reader.point (SQLite: on the event
        loop's own connection, no thread hop), else one hop."""
        if self._reader is not None:
            return await self._reader.point(fn)
        return await self._read(fn)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        """Run a synchronous read in one hop: through the server's Reader (SQLite:
        a thread with its own connection), else ``run_sync`` on the async engine."""
        if self._reader is not None:
            return await self._reader.run(fn)
        async with self._engine.connect() as connection:
            return await connection.run_sync(fn)

    # ---- folders, copies and flags for IMAP ---------------------------------------

    async def folder_by_id(self, folder_id: int) -> FolderInfo | None:
        def read(connection: Connection) -> FolderInfo | None:
            row = connection.execute(_FOLDER_BY_ID, {"folder_id": folder_id}).first()
            return _folder_info(row) if row is not None else None

        return await self._point(read)

    async def create_folder(
        self, mailbox_id: int, name: str, *, special_use: str | None = None
    ) -> FolderInfo:
        """A new, empty folder; StoreError if the name is taken."""

        def work(connection: Connection) -> FolderInfo:
            taken = (
                connection.execute(
                    select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                )
            ).scalar_one_or_none()
            if taken is not None:
                raise StoreError(f"folder {name!r} already exists")
            # RFC 9051 §2.3.1.1: a folder re-created under an old name must not reuse
            # the old UIDVALIDITY, so take one above every value this mailbox has had.
            highest = (
                connection.execute(
                    select(func.max(Folder.uidvalidity)).where(Folder.mailbox_id == mailbox_id)
                )
            ).scalar_one_or_none()
            uidvalidity = max(_new_uidvalidity(), int(highest or 0) + 1) & 0xFFFFFFFF or 1
            connection.execute(
                insert(Folder).values(
                    mailbox_id=mailbox_id, name=name, special_use=special_use,
                    uidvalidity=uidvalidity, uidnext=1, highestmodseq=1, subscribed=True,
                )
            )
            row = (
                connection.execute(
                    select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                )
            ).one()
            return _folder_info(row)

        result: FolderInfo = await self._writer.submit(work)
        return result

    async def delete_folder(self, mailbox_id: int, name: str) -> None:
        """Delete the folder and its messages (children are left alone)."""

        def work(connection: Connection) -> int:
            folder_id = (
                connection.execute(
                    select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                )
            ).scalar_one_or_none()
            if folder_id is None:
                raise StoreError(f"no folder {name!r}")
            bodies = set(connection.execute(
                select(Message.blob_sha256).where(Message.folder_id == folder_id)
            ).scalars())
            connection.execute(delete(Message).where(Message.folder_id == folder_id))
            self._drop_unused_bodies(connection, bodies)
            connection.execute(
                delete(ExpungedUid).where(ExpungedUid.folder_id == folder_id)
            )
            connection.execute(delete(Folder).where(Folder.id == folder_id))
            return int(folder_id)

        self._forget_folder(mailbox_id, name)
        folder_id: int = await self._writer.submit(work)
        self._forget_folder(mailbox_id, name)
        self.changes.publish(FolderChange(folder_id, "expunge", (), 0))

    async def rename_folder(self, mailbox_id: int, old: str, new: str, delimiter: str) -> None:
        """Rename ``old`` and its children under ``new``.

        RFC 9051 §6.3.6: renaming INBOX moves its messages to a new folder ``new`` and
        leaves INBOX empty; INBOX's children are not renamed.
        """

        def work(connection: Connection) -> None:
            names = (
                connection.execute(
                    select(Folder.name).where(Folder.mailbox_id == mailbox_id)
                )
            ).scalars().all()
            if old not in names:
                raise StoreError(f"no folder {old!r}")
            if new in names:
                raise StoreError(f"folder {new!r} already exists")
            if old == "INBOX":
                return None
            prefix = old + delimiter
            for name in names:
                if name == old or name.startswith(prefix):
                    target = new + name[len(old):]
                    if target in names:
                        raise StoreError(f"folder {target!r} already exists")
                    connection.execute(
                        update(Folder)
                        .where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                        .values(name=target)
                    )
            return None

        if old == "INBOX":
            await self._writer.submit(work)
            created = await self.create_folder(mailbox_id, new)
            inbox = await self.folder(mailbox_id, "INBOX")
            if inbox is not None:
                uids = [m.uid for m in await self.messages(inbox.id)]
                if uids:
                    await self.copy_messages(inbox.id, uids, created.id, move=True)
            return
        self._folder_ids.clear()
        await self._writer.submit(work)
        self._folder_ids.clear()

    async def set_subscribed(self, mailbox_id: int, name: str, subscribed: bool) -> None:
        def work(connection: Connection) -> None:
            result = connection.execute(
                update(Folder)
                .where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                .values(subscribed=subscribed)
            )
            if not result.rowcount:
                raise StoreError(f"no folder {name!r}")

        await self._writer.submit(work)

    async def folder_stats(self, folder_id: int) -> FolderStats:
        """Counts for STATUS (RFC 9051 §6.3.11), in one query."""
        seen = Message.flags.like("%\\Seen%")
        deleted = Message.flags.like("%\\Deleted%")
        first_recent = (
            select(Folder.first_recent_uid).where(Folder.id == folder_id).scalar_subquery()
        )
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(Message.size), 0),
                        func.count().filter(~seen),
                        func.count().filter(deleted),
                        func.count().filter(Message.uid >= first_recent),
                    ).where(Message.folder_id == folder_id)
                )
            ).one()
        return FolderStats(int(row[0]), int(row[2]), int(row[1]), int(row[3]), int(row[4]))

    async def claim_recent(self, folder_id: int, up_to_uid: int) -> int:
        """RFC 3501 §2.3.2: the messages up to ``up_to_uid`` that no session was told
        about become \\Recent for the caller, and for no session after it. Returns
        the first UID of the caller's share: its \\Recent messages are those from it
        to ``up_to_uid`` (none when it is above).

        A share taken in this process is remembered before it is written, so that
        of 10,000 IDLE sessions told about one delivery one writes, the others
        return at once; the row decides between processes."""
        if self._recent_taken.get(folder_id, 1) > up_to_uid:
            return up_to_uid + 1
        self._recent_taken[folder_id] = up_to_uid + 1
        if len(self._recent_taken) > 100_000:
            self._recent_taken.clear()  # a bound; forgetting only costs a query

        def work(connection: Connection) -> int:
            # The no-op update takes the row lock, then the value is ours to move.
            first = connection.execute(
                update(Folder).where(Folder.id == folder_id)
                .values(first_recent_uid=Folder.first_recent_uid)
                .returning(Folder.first_recent_uid)
            ).scalar_one_or_none()
            if first is None:
                return up_to_uid + 1
            if int(first) <= up_to_uid:
                connection.execute(update(Folder).where(Folder.id == folder_id)
                                   .values(first_recent_uid=up_to_uid + 1))
            return int(first)

        taken: int = await self._writer.submit(work)
        return taken

    async def messages_by_uid(self, folder_id: int, uids: Sequence[int]) -> list[MessageInfo]:
        def read(connection: Connection) -> list[MessageInfo]:
            found: list[MessageInfo] = []
            for start in range(0, len(uids), 500):
                rows = connection.execute(_MESSAGES_BY_UID, {
                    "folder_id": folder_id, "uids": list(uids[start:start + 500])}).all()
                found.extend(_message_info(row) for row in rows)
            return found

        return await (self._point(read) if len(uids) <= 50 else self._read(read))

    async def bodies(
        self, digests: Sequence[str], *, mailbox_id: int | None = None,
        prefix: int | None = None,
    ) -> dict[str, bytes]:
        """Several bodies in few queries, decrypted for ``mailbox_id`` when stored
        encrypted; with ``prefix``, only their first bytes (enough for the header
        block, for SEARCH on headers)."""
        wanted = list(dict.fromkeys(digests))
        found: dict[str, bytes] = {}
        query = self._bodies_query(prefix is not None)
        vault = self._vault

        def read(connection: Connection) -> None:
            private = None
            if vault is not None and mailbox_id is not None:
                private = vault.private_key_sync(connection, mailbox_id)
            for start in range(0, len(wanted), 500):
                rows = connection.execute(query, {
                    "digests": wanted[start:start + 500], "prefix": prefix or 0,
                    "reader": mailbox_id if mailbox_id is not None else -1}).all()
                for row in rows:
                    data = bytes(row[1])
                    if vault is not None:
                        try:
                            data = vault.open(
                                data, bytes(row[2]) if row[2] is not None else None,
                                private, mailbox_id if mailbox_id is not None else -1,
                            )
                        except CryptoError as error:
                            raise StoreError(f"message body {row[0]}: {error}") from error
                        if prefix is not None:
                            data = data[:prefix]
                    found[str(row[0])] = data

        # A few bodies (a client reading its mail) right here; many in a reader thread.
        await (self._point(read) if len(wanted) <= 5 else self._read(read))
        missing = [d for d in wanted if d not in found]
        if missing:
            raise BodyMissing(f"message body {missing[0]} is missing")
        return found

    def _bodies_query(self, prefixed: bool) -> Any:
        """bodies()' statement, built once for each shape."""
        key = (self._vault is not None, prefixed)
        query = self._bodies_queries.get(key)
        if query is None:
            encrypted = self._vault is not None
            column: Any = Blob.data if not prefixed or encrypted else func.substr(
                Blob.data, 1, bindparam("prefix"))
            query = select(Blob.sha256, column)
            if encrypted:
                query = query.add_columns(BlobKey.wrapped_key).outerjoin(
                    BlobKey, (BlobKey.blob_sha256 == Blob.sha256)
                    & (BlobKey.mailbox_id == bindparam("reader")),
                )
            query = query.where(Blob.sha256.in_(bindparam("digests", expanding=True)))
            self._bodies_queries[key] = query
        return query

    async def folder_delta(self, folder_id: int, since: int) -> FolderDelta:
        """The folder's row, messages with MODSEQ above ``since`` and UIDs expunged
        after it (RFC 7162), shared between the sessions that ask at once."""
        key = (folder_id, since)
        pending = self._deltas.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        generation = self._generation.get(folder_id, 0)
        if len(self._deltas) > 10_000:  # bound the memo; answers are cheap to redo
            self._deltas = {k: f for k, f in self._deltas.items() if not f.done()}
        future: asyncio.Future[FolderDelta] = asyncio.get_running_loop().create_future()
        self._deltas[key] = future
        def read(
            connection: Connection, most: int | None = None
        ) -> tuple[Any, Sequence[Any], Sequence[Any]] | None:
            row = connection.execute(_FOLDER_BY_ID, {"folder_id": folder_id}).first()
            # Each changed message took its own MODSEQ: the gap bounds their number.
            if most is not None and row is not None and row.highestmodseq - since > most:
                return None
            changed = connection.execute(
                _CHANGED_SINCE, {"folder_id": folder_id, "since": since}).all()
            vanished = connection.execute(
                _VANISHED_SINCE, {"folder_id": folder_id, "since": since}).scalars().all()
            return row, changed, vanished

        try:
            # A few changes (the usual case) are read right on the loop (SQLite), many
            # in a reader thread.
            found = await self._point(lambda connection: read(connection, 1000))
            if found is None:
                found = await self._read(read)
            assert found is not None
            row, changed, vanished = found
            delta = FolderDelta(
                _folder_info(row) if row is not None else None,
                [_message_info(r) for r in changed],
                sorted({int(u) for u in vanished}),
            )
        except BaseException as error:
            self._deltas.pop(key, None)
            future.set_exception(error)
            future.exception()  # consumed: the caller gets it raised here
            raise
        future.set_result(delta)
        if self._generation.get(folder_id, 0) != generation:
            self._deltas.pop(key, None)  # a change landed meanwhile: do not keep it
        return delta

    def _forget_deltas(self, change: FolderChange) -> None:
        folder_id = change.folder_id
        self._generation[folder_id] = self._generation.get(folder_id, 0) + 1
        for key in [k for k in self._deltas if k[0] == folder_id]:
            del self._deltas[key]  # callers already waiting still get their answer

    async def view(self, folder_id: int) -> tuple[list[int], list[str]]:
        """UIDs and flag texts of every message, by UID: what SELECT needs. On SQLite
        through the driver's own cursor: 100,000 rows as plain tuples; a small folder
        is read right on the loop (``_point``), a large one in a reader thread."""

        def read(connection: Connection, limit: int = -1) -> tuple[list[int], list[str]]:
            rows: Sequence[Any]
            if connection.dialect.driver == "pysqlite":
                cursor = connection.connection.driver_connection.execute(  # type: ignore[union-attr]
                    "SELECT uid, flags FROM messages WHERE folder_id = ? ORDER BY uid LIMIT ?",
                    (folder_id, limit),
                )
                rows = cursor.fetchall()
            else:
                rows = connection.execute(
                    _VIEW.limit(limit if limit >= 0 else None), {"folder_id": folder_id}
                ).all()
            return [row[0] for row in rows], [row[1] for row in rows]

        small = 1000
        first = await self._point(lambda connection: read(connection, small + 1))
        if len(first[0]) <= small:
            return first
        return await self._read(read)

    async def uid_flags(self, folder_id: int) -> list[tuple[int, str, int]]:
        """(UID, flags, MODSEQ) of every message, by UID: what SELECT needs, cheaply."""
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(Message.uid, Message.flags, Message.modseq)
                    .where(Message.folder_id == folder_id)
                    .order_by(Message.uid)
                )
            ).all()
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def changed_since(self, folder_id: int, modseq: int) -> list[MessageInfo]:
        """Messages whose MODSEQ is above ``modseq`` (RFC 7162 CHANGEDSINCE)."""
        return await self._messages_where(folder_id, Message.modseq > modseq)

    async def vanished_since(self, folder_id: int, modseq: int) -> list[int]:
        """UIDs expunged after ``modseq`` (RFC 7162 §3.2.10 VANISHED)."""
        async with self._engine.connect() as connection:
            uids = (
                await connection.execute(
                    select(ExpungedUid.uid)
                    .where(ExpungedUid.folder_id == folder_id, ExpungedUid.modseq > modseq)
                    .order_by(ExpungedUid.uid)
                )
            ).scalars().all()
        return sorted(set(int(u) for u in uids))

    # ---- message summaries (FETCH ENVELOPE/BODYSTRUCTURE, SEARCH, SORT, THREAD) ----------

    async def summary_heads(
        self, folder_id: int, mailbox_id: int, uids: Sequence[int]
    ) -> dict[int, bytes]:
        """The summary header block (``mime.summary.HEAD_FIELDS``) of each message of
        ``uids``, opened with ``mailbox_id``'s key."""
        whole = len(uids) > 2000  # most of a large folder: one scan beats lists of UIDs
        found, missing = await self._read(
            lambda c: summaries.heads(self._vault, c, folder_id, mailbox_id,
                                      None if whole else uids))
        missing = sorted(set(missing) | {u for u in uids if u not in found})
        if missing:
            filled = await self._backfill(folder_id, mailbox_id, missing)
            found.update((uid, summary.head) for uid, summary in filled.items())
        return found

    async def rendered(
        self, folder_id: int, mailbox_id: int, uids: Sequence[int]
    ) -> dict[int, Rendered]:
        """Pre-rendered ENVELOPE / BODYSTRUCTURE / BODY of each message of ``uids``."""
        found, missing = await self._read(
            lambda c: summaries.renders(self._vault, c, folder_id, mailbox_id, uids))
        out: dict[int, Rendered] = {}
        for uid, data in found.items():
            try:
                out[uid] = decode_render(data)
            except ValueError:
                missing.append(uid)
        missing = sorted(set(missing) | {u for u in uids if u not in found})
        if missing:
            filled = await self._backfill(folder_id, mailbox_id, missing)
            out.update((uid, decode_render(s.render)) for uid, s in filled.items())
        return out

    async def _backfill(
        self, folder_id: int, mailbox_id: int, uids: Sequence[int]
    ) -> dict[int, Summary]:
        """Summaries of messages that have none (stored before summaries existed, or
        damaged), computed from their bodies and stored for next time."""
        made: dict[int, Summary] = {}
        # By small chunks, each an await: a large folder stored before summaries
        # existed is filled without holding the event loop for long.
        for start in range(0, len(uids), 100):
            infos = await self.messages_by_uid(folder_id, uids[start:start + 100])
            raws = await self.bodies([m.blob_sha256 for m in infos], mailbox_id=mailbox_id)
            for info in infos:
                summary = _summary_of(raws[info.blob_sha256])
                if summary is not None:
                    made[info.uid] = summary
        if made:
            def work(connection: Connection) -> None:
                summaries.replace(connection, folder_id, {
                    uid: summaries.sealed(self._vault, connection, mailbox_id, summary)
                    for uid, summary in made.items()
                })

            await self._writer.submit(work)
        return made

    async def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        flags: Iterable[str],
        mode: FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> FlagResult:
        """STORE: like ``set_flags``, with RFC 7162 UNCHANGEDSINCE."""
        wanted = set(flags)

        def work(connection: Connection) -> FlagResult:
            changed: list[MessageInfo] = []
            modified: list[int] = []
            for start in range(0, len(uids), 500):
                rows = connection.execute(_MESSAGES_BY_UID, {
                    "folder_id": folder_id, "uids": list(uids[start:start + 500])}).all()
                for row in rows:
                    if unchanged_since is not None and row.modseq > unchanged_since:
                        modified.append(int(row.uid))
                        continue
                    current = set(row.flags.split())
                    new = wanted if mode == "set" else (
                        current | wanted if mode == "add" else current - wanted
                    )
                    if new == current:
                        continue
                    modseq, _, _ = self._bump(connection, folder_id, uidnext=False)
                    connection.execute(_SET_FLAGS, {
                        "message_row": row.id, "new_flags": " ".join(sorted(new)),
                        "new_modseq": modseq})
                    changed.append(_with_flags(_message_info(row), new, modseq))
            return FlagResult(changed, modified)

        def announce(result: FlagResult) -> None:
            if result.changed:
                self.changes.publish(
                    FolderChange(folder_id, "flags", tuple(m.uid for m in result.changed),
                                 max(m.modseq for m in result.changed))
                )

        outcome: FlagResult = await self._writer.submit(work, announce)
        return outcome

    async def copy_messages(
        self, folder_id: int, uids: Sequence[int], dest_folder_id: int, *, move: bool = False
    ) -> CopyResult:
        """COPY / MOVE (RFC 6851): new UIDs in the destination, in UID order, atomically."""

        def work(
            connection: Connection,
        ) -> tuple[CopyResult, list[Delivered], list[int], int]:
            rows: list[Any] = []
            for start in range(0, len(uids), 500):
                rows.extend(
                    (
                        connection.execute(
                            select(Message).where(
                                Message.folder_id == folder_id,
                                Message.uid.in_(list(uids[start:start + 500])),
                            )
                        )
                    ).all()
                )
            rows.sort(key=lambda r: r.uid)
            pairs: list[tuple[int, int]] = []
            delivered: list[Delivered] = []
            uidvalidity = 0
            for row in rows:
                flags = " ".join(sorted(set(row.flags.split()) - {"\\Recent"}))
                item = self._insert_message(
                    connection, row.mailbox_id, dest_folder_id, row.blob_sha256, row.size,
                    row.internal_date, flags, row.message_id, row.thread_id,
                )
                uidvalidity = item.uidvalidity
                pairs.append((int(row.uid), item.uid))
                delivered.append(item)
            summaries.copy(connection, folder_id, dest_folder_id, pairs)
            if not uidvalidity:
                folder = (
                    connection.execute(
                        select(Folder.uidvalidity).where(Folder.id == dest_folder_id)
                    )
                ).scalar_one()
                uidvalidity = int(folder)
            removed: list[int] = []
            modseq = 0
            if move and rows:
                removed = [int(r.uid) for r in rows]
                modseq, _, _ = self._bump(connection, folder_id, uidnext=False)
                connection.execute(
                    delete(Message).where(
                        Message.id.in_([r.id for r in rows])
                    )
                )
                self._record_vanished(connection, folder_id, removed, modseq)
                # MOVE keeps every body (the copies use them); nothing to collect.
            return CopyResult(uidvalidity, pairs), delivered, removed, modseq

        def announce(result: tuple[CopyResult, list[Delivered], list[int], int]) -> None:
            _, delivered, removed, modseq = result
            self._announce_new(delivered)
            if removed:
                self.changes.publish(FolderChange(folder_id, "expunge", tuple(removed), modseq))

        outcome = await self._writer.submit(work, announce)
        copied: CopyResult = outcome[0]
        return copied

    def _drop_unused_bodies(self, connection: Connection, candidates: set[str]) -> None:
        """Delete the bodies (and their wrapped keys) that no message uses any more,
        in the transaction that removed the messages: an expunged message leaves no
        ciphertext behind. On PostgreSQL the candidate rows are locked first, so a
        COPY committing a new reference in another process either is seen by the
        NOT EXISTS that follows or waits and then fails its foreign key (the message
        it copies was expunged); SQLite writers hold the database lock already."""
        if not candidates:
            return
        ids = sorted(candidates)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            if self._engine.dialect.name == "postgresql":
                connection.execute(
                    select(Blob.sha256).where(Blob.sha256.in_(chunk)).with_for_update()
                )
            used = select(Message.id).where(Message.blob_sha256 == Blob.sha256).exists()
            unused = [
                digest for digest in connection.execute(
                    select(Blob.sha256).where(Blob.sha256.in_(chunk), ~used)
                ).scalars()
            ]
            if unused:
                connection.execute(delete(BlobKey).where(BlobKey.blob_sha256.in_(unused)))
                connection.execute(delete(Blob).where(Blob.sha256.in_(unused)))

    def _record_vanished(
        self, connection: Connection, folder_id: int, uids: Sequence[int], modseq: int
    ) -> None:
        if uids:
            connection.execute(
                insert(ExpungedUid),
                [{"folder_id": folder_id, "uid": uid, "modseq": modseq} for uid in uids],
            )

    def _forget_folder(self, mailbox_id: int, name: str) -> None:
        self._folder_ids.pop((mailbox_id, name), None)

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

    def _store_body(
        self, connection: Connection, digest: str, raw: bytes, mailbox_ids: Sequence[int]
    ) -> str:
        """Store a body once; its id. Encrypted (random id, data key wrapped to
        each mailbox) when the store has a vault, else content-addressed."""
        if self._vault is None:
            self._put_blob(connection, digest, raw)
            return digest
        blob_id, stored, wrapped = self._vault.seal(connection, raw, mailbox_ids)
        self._put_blob(connection, blob_id, stored)
        connection.execute(
            _INSERT_BLOB_KEY,
            [{"blob_sha256": blob_id, "mailbox_id": m, "wrapped_key": k}
             for m, k in wrapped.items()],
        )
        return blob_id

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
        summary: Summary | None = None,
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
        if summary is not None:
            summaries.insert_one(connection, folder_id, uid,
                                 summaries.sealed(self._vault, connection, mailbox_id, summary))
        return Delivered(mailbox_id, folder_id, uidvalidity, uid, modseq)

    def _announce_new(self, delivered: list[Delivered]) -> None:
        by_folder: dict[int, list[Delivered]] = {}
        for item in delivered:
            by_folder.setdefault(item.folder_id, []).append(item)
        for folder_id, items in by_folder.items():  # one change per folder (MULTIAPPEND)
            self.changes.publish(FolderChange(folder_id, "exists", tuple(i.uid for i in items),
                                              max(i.modseq for i in items)))


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
