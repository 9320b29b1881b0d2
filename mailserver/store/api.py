"""The Store API: the only way protocol code reaches mail data.

Writes go through the group-commit writer (``batch.py``); every method that
returns after a write returns after the COMMIT.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Insert, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailserver.store.batch import WriteBatcher
from mailserver.store.models import DEFAULT_FOLDERS, Blob, ExpungedUid, Folder, Message
from mailserver.store.notify import ChangeBus, FolderChange

FlagMode = Literal["set", "add", "remove"]


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
class FolderStats:
    messages: int
    unseen: int
    size: int
    deleted: int


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


def _new_uidvalidity() -> int:
    # RFC 9051 §2.3.1.1: a non-zero 32-bit value that changes if UIDs could repeat.
    return max(1, int(time.time()) & 0xFFFFFFFF)


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._writer = WriteBatcher(engine)
        self.changes = ChangeBus()
        # (mailbox_id, folder name) -> folder id; folders are never re-numbered.
        self._folder_ids: dict[tuple[int, str], int] = {}
        # folder_delta(): many IDLE sessions on one folder ask the same question after
        # each change; one query answers them all. Dropped on every change.
        self._deltas: dict[tuple[int, int], asyncio.Future[FolderDelta]] = {}
        self._generation: dict[int, int] = {}
        self.changes.listeners.append(self._forget_deltas)

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
    ) -> list[Delivered]:
        """Store ``raw`` in ``folder`` of every mailbox, atomically: all or none."""
        if not mailbox_ids:
            return []
        when = internal_date or dt.datetime.now(dt.UTC)
        digest = hashlib.sha256(raw).hexdigest()

        async def work(connection: AsyncConnection) -> list[Delivered]:
            await self._put_blob(connection, digest, raw)
            delivered = []
            for mailbox_id in dict.fromkeys(mailbox_ids):  # once per mailbox
                folder_id = await self._folder_id(connection, mailbox_id, folder)
                delivered.append(
                    await self._insert_message(
                        connection, mailbox_id, folder_id, digest, len(raw),
                        when, "", message_id,
                    )
                )
            return delivered

        result: list[Delivered] = await self._writer.submit(work, self._announce_new)
        return result

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

        async def work(connection: AsyncConnection) -> list[Delivered]:
            folder_id = await self._existing_folder_id(connection, mailbox_id, folder)
            await self._put_blob(connection, digest, raw)
            return [
                await self._insert_message(
                    connection, mailbox_id, folder_id, digest, len(raw),
                    when, flag_text, message_id,
                )
            ]

        result: list[Delivered] = await self._writer.submit(work, self._announce_new)
        return result[0]

    async def set_flags(
        self, folder_id: int, uids: Sequence[int], flags: Iterable[str], mode: FlagMode
    ) -> list[MessageInfo]:
        """Change the flags of ``uids``; each changed message gets a new MODSEQ."""
        wanted = set(flags)

        async def work(connection: AsyncConnection) -> list[MessageInfo]:
            rows = (
                await connection.execute(
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
                modseq, _, _ = await self._bump(connection, folder_id, uidnext=False)
                text = " ".join(sorted(new))
                await connection.execute(
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

        async def work(connection: AsyncConnection) -> tuple[list[int], int]:
            present = (
                await connection.execute(
                    select(Message.uid).where(
                        Message.folder_id == folder_id, Message.uid.in_(uids)
                    )
                )
            ).scalars().all()
            if not present:
                return [], 0
            modseq, _, _ = await self._bump(connection, folder_id, uidnext=False)
            await connection.execute(
                delete(Message).where(Message.folder_id == folder_id, Message.uid.in_(present))
            )
            await self._record_vanished(connection, folder_id, present, modseq)
            return sorted(present), modseq

        def announce(result: tuple[list[int], int]) -> None:
            removed, modseq = result
            if removed:
                self.changes.publish(FolderChange(folder_id, "expunge", tuple(removed), modseq))

        removed, _ = await self._writer.submit(work, announce)
        return list(removed)

    async def ensure_folders(self, mailbox_id: int) -> None:
        """Create the default folders of a mailbox if they are missing."""

        async def work(connection: AsyncConnection) -> None:
            await self._folder_id(connection, mailbox_id, "INBOX")

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

    # ---- folders, copies and flags for IMAP ---------------------------------------

    async def folder_by_id(self, folder_id: int) -> FolderInfo | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(select(Folder).where(Folder.id == folder_id))
            ).first()
        return _folder_info(row) if row is not None else None

    async def create_folder(
        self, mailbox_id: int, name: str, *, special_use: str | None = None
    ) -> FolderInfo:
        """A new, empty folder; StoreError if the name is taken."""

        async def work(connection: AsyncConnection) -> FolderInfo:
            taken = (
                await connection.execute(
                    select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                )
            ).scalar_one_or_none()
            if taken is not None:
                raise StoreError(f"folder {name!r} already exists")
            # RFC 9051 §2.3.1.1: a folder re-created under an old name must not reuse
            # the old UIDVALIDITY, so take one above every value this mailbox has had.
            highest = (
                await connection.execute(
                    select(func.max(Folder.uidvalidity)).where(Folder.mailbox_id == mailbox_id)
                )
            ).scalar_one_or_none()
            uidvalidity = max(_new_uidvalidity(), int(highest or 0) + 1) & 0xFFFFFFFF or 1
            await connection.execute(
                insert(Folder).values(
                    mailbox_id=mailbox_id, name=name, special_use=special_use,
                    uidvalidity=uidvalidity, uidnext=1, highestmodseq=1, subscribed=True,
                )
            )
            row = (
                await connection.execute(
                    select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                )
            ).one()
            return _folder_info(row)

        result: FolderInfo = await self._writer.submit(work)
        return result

    async def delete_folder(self, mailbox_id: int, name: str) -> None:
        """Delete the folder and its messages (children are left alone)."""

        async def work(connection: AsyncConnection) -> int:
            folder_id = (
                await connection.execute(
                    select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                )
            ).scalar_one_or_none()
            if folder_id is None:
                raise StoreError(f"no folder {name!r}")
            await connection.execute(delete(Message).where(Message.folder_id == folder_id))
            await connection.execute(
                delete(ExpungedUid).where(ExpungedUid.folder_id == folder_id)
            )
            await connection.execute(delete(Folder).where(Folder.id == folder_id))
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

        async def work(connection: AsyncConnection) -> None:
            names = (
                await connection.execute(
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
                    await connection.execute(
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
        async def work(connection: AsyncConnection) -> None:
            result = await connection.execute(
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
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(Message.size), 0),
                        func.count().filter(~seen),
                        func.count().filter(deleted),
                    ).where(Message.folder_id == folder_id)
                )
            ).one()
        return FolderStats(int(row[0]), int(row[2]), int(row[1]), int(row[3]))

    async def messages_by_uid(self, folder_id: int, uids: Sequence[int]) -> list[MessageInfo]:
        found: list[MessageInfo] = []
        async with self._engine.connect() as connection:
            for start in range(0, len(uids), 500):
                chunk = list(uids[start:start + 500])
                rows = (
                    await connection.execute(
                        select(Message)
                        .where(Message.folder_id == folder_id, Message.uid.in_(chunk))
                        .order_by(Message.uid)
                    )
                ).all()
                found.extend(_message_info(row) for row in rows)
        return found

    async def bodies(
        self, digests: Sequence[str], *, prefix: int | None = None
    ) -> dict[str, bytes]:
        """Several bodies in few queries; with ``prefix``, only their first bytes
        (enough for the header block, for SEARCH on headers)."""
        wanted = list(dict.fromkeys(digests))
        found: dict[str, bytes] = {}
        column: Any = Blob.data if prefix is None else func.substr(Blob.data, 1, prefix)
        async with self._engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                rows = (
                    await connection.execute(
                        select(Blob.sha256, column).where(
                            Blob.sha256.in_(wanted[start:start + 500])
                        )
                    )
                ).all()
                found.update((str(row[0]), bytes(row[1])) for row in rows)
        missing = [d for d in wanted if d not in found]
        if missing:
            raise StoreError(f"message body {missing[0]} is missing")
        return found

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
        try:
            async with self._engine.connect() as connection:
                row = (
                    await connection.execute(select(Folder).where(Folder.id == folder_id))
                ).first()
                changed = (
                    await connection.execute(
                        select(Message)
                        .where(Message.folder_id == folder_id, Message.modseq > since)
                        .order_by(Message.uid)
                    )
                ).all()
                vanished = (
                    await connection.execute(
                        select(ExpungedUid.uid).where(
                            ExpungedUid.folder_id == folder_id, ExpungedUid.modseq > since
                        )
                    )
                ).scalars().all()
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
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(Message)
                    .where(Message.folder_id == folder_id, Message.modseq > modseq)
                    .order_by(Message.uid)
                )
            ).all()
        return [_message_info(row) for row in rows]

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

        async def work(connection: AsyncConnection) -> FlagResult:
            changed: list[MessageInfo] = []
            modified: list[int] = []
            for start in range(0, len(uids), 500):
                rows = (
                    await connection.execute(
                        select(Message).where(
                            Message.folder_id == folder_id,
                            Message.uid.in_(list(uids[start:start + 500])),
                        ).order_by(Message.uid)
                    )
                ).all()
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
                    modseq, _, _ = await self._bump(connection, folder_id, uidnext=False)
                    await connection.execute(
                        update(Message)
                        .where(Message.id == row.id)
                        .values(flags=" ".join(sorted(new)), modseq=modseq)
                    )
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

        async def work(
            connection: AsyncConnection,
        ) -> tuple[CopyResult, list[Delivered], list[int], int]:
            rows: list[Any] = []
            for start in range(0, len(uids), 500):
                rows.extend(
                    (
                        await connection.execute(
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
                item = await self._insert_message(
                    connection, row.mailbox_id, dest_folder_id, row.blob_sha256, row.size,
                    row.internal_date, flags, row.message_id,
                )
                uidvalidity = item.uidvalidity
                pairs.append((int(row.uid), item.uid))
                delivered.append(item)
            if not uidvalidity:
                folder = (
                    await connection.execute(
                        select(Folder.uidvalidity).where(Folder.id == dest_folder_id)
                    )
                ).scalar_one()
                uidvalidity = int(folder)
            removed: list[int] = []
            modseq = 0
            if move and rows:
                removed = [int(r.uid) for r in rows]
                modseq, _, _ = await self._bump(connection, folder_id, uidnext=False)
                await connection.execute(
                    delete(Message).where(
                        Message.id.in_([r.id for r in rows])
                    )
                )
                await self._record_vanished(connection, folder_id, removed, modseq)
            return CopyResult(uidvalidity, pairs), delivered, removed, modseq

        def announce(result: tuple[CopyResult, list[Delivered], list[int], int]) -> None:
            _, delivered, removed, modseq = result
            self._announce_new(delivered)
            if removed:
                self.changes.publish(FolderChange(folder_id, "expunge", tuple(removed), modseq))

        outcome = await self._writer.submit(work, announce)
        copied: CopyResult = outcome[0]
        return copied

    async def _record_vanished(
        self, connection: AsyncConnection, folder_id: int, uids: Sequence[int], modseq: int
    ) -> None:
        if uids:
            await connection.execute(
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

    async def _put_blob(self, connection: AsyncConnection, digest: str, raw: bytes) -> None:
        await connection.execute(
            self._insert(Blob.__table__).values(sha256=digest, size=len(raw), data=raw)
        )

    async def _existing_folder_id(
        self, connection: AsyncConnection, mailbox_id: int, name: str
    ) -> int:
        if name.upper() == "INBOX":
            return await self._folder_id(connection, mailbox_id, "INBOX")
        key = (mailbox_id, name)
        if key in self._folder_ids:
            return self._folder_ids[key]
        found = (
            await connection.execute(
                select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
            )
        ).scalar_one_or_none()
        if found is None:
            raise StoreError(f"no folder {name!r}")
        self._folder_ids[key] = found
        return found

    async def _folder_id(self, connection: AsyncConnection, mailbox_id: int, name: str) -> int:
        key = (mailbox_id, name)
        cached = self._folder_ids.get(key)
        if cached is not None:
            return cached
        found = (
            await connection.execute(
                select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
            )
        ).scalar_one_or_none()
        if found is None:
            uidvalidity = _new_uidvalidity()
            await connection.execute(
                self._insert(Folder.__table__),
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
                await connection.execute(
                    select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                )
            ).scalar_one_or_none()
            if found is None:
                raise StoreError(f"no folder {name!r}")
        self._folder_ids[key] = found
        return found

    async def _bump(
        self, connection: AsyncConnection, folder_id: int, *, uidnext: bool
    ) -> tuple[int, int, int]:
        """Take the folder's next MODSEQ (and UID when ``uidnext``), under its row lock.

        Returns (modseq, uid taken or uidnext, uidvalidity).
        """
        values: dict[str, Any] = {"highestmodseq": Folder.highestmodseq + 1}
        if uidnext:
            values["uidnext"] = Folder.uidnext + 1
        row = (
            await connection.execute(
                update(Folder)
                .where(Folder.id == folder_id)
                .values(**values)
                .returning(Folder.highestmodseq, Folder.uidnext, Folder.uidvalidity)
            )
        ).one()
        taken_uid = int(row.uidnext) - 1 if uidnext else int(row.uidnext)
        return int(row.highestmodseq), taken_uid, int(row.uidvalidity)

    async def _insert_message(
        self,
        connection: AsyncConnection,
        mailbox_id: int,
        folder_id: int,
        digest: str,
        size: int,
        when: dt.datetime,
        flags: str,
        message_id: str | None,
    ) -> Delivered:
        modseq, uid, uidvalidity = await self._bump(connection, folder_id, uidnext=True)
        await connection.execute(
            insert(Message).values(
                folder_id=folder_id,
                mailbox_id=mailbox_id,
                uid=uid,
                modseq=modseq,
                internal_date=when,
                size=size,
                flags=flags,
                message_id=message_id[:998] if message_id else None,
                blob_sha256=digest,
            )
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
