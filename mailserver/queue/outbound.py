"""The queue's tables, behind an API: enqueue (inside the caller's unit of work),
claim due recipients under a lease, record what happened, administer.

Claims take a lease (``lease_until``) so that a worker that dies between claim
and record loses nothing: when the lease has passed, another worker claims the
row again. On PostgreSQL the claim also skips rows another node is claiming at
that very moment (``FOR UPDATE SKIP LOCKED``), so several processes share one
queue without delivering a message twice.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mailserver.queue.models import HELD, QUEUED, QueuedMessage, QueuedRecipient
from mailserver.store import Store
from mailserver.store.crypto import CryptoError, plaintext_size, rewrap_queue_data_key
from mailserver.store.vault import Vault


class QueueError(Exception):
    """A queue operation cannot be done; the message says why."""


@dataclass(frozen=True)
class OutboundRecipient:
    address: str
    notify: str | None = None  # RFC 3461 NOTIFY, e.g. "FAILURE,DELAY" or "NEVER"
    orcpt: str | None = None  # RFC 3461 ORCPT, "rfc822;addr" (xtext)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower().rstrip(".")


@dataclass(frozen=True)
class Claimed:
    """One recipient of one message, claimed by a worker for one attempt."""

    id: int
    message_pk: int
    queue_id: str
    mail_from: str
    envid: str | None
    ret: str | None
    created_at: float
    recipient: str
    domain: str
    notify: str | None
    orcpt: str | None
    attempts: int
    delay_notified: bool
    data: bytes | None = field(default=None, repr=False)  # the message, read with the claim


@dataclass(frozen=True)
class Result:
    """What became of a claimed recipient."""

    id: int
    outcome: str  # "delivered", "deferred", "failed"
    reply: str = ""
    next_attempt_at: float = 0.0
    delay_notified: bool = False


@dataclass(frozen=True)
class QueueEntry:
    id: int
    queue_id: str
    mail_from: str
    recipient: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    last_reply: str
    size: int


def new_owner() -> str:
    return uuid.uuid4().hex


class OutboundQueue:
    def __init__(self, store: Store, dialect: str) -> None:
        self._store = store
        self._postgres = dialect == "postgresql"
        # Encryption at rest covers the queue too: a message for another operator is
        # health data on our disk as much as a delivered one (issue 6).
        self._vault: Vault | None = store.vault

    def _sealed_columns(self, queue_id: str, data: bytes) -> dict[str, Any]:
        if self._vault is None:
            return {"data": data, "data_key": None, "master_key_id": None}
        sealed = self._vault.seal_queued(data, queue_id)
        return {"data": sealed.data, "data_key": sealed.data_key,
                "master_key_id": sealed.master_key_id}

    def _opened(self, row: Any) -> bytes:
        """The plaintext of a ``queue_messages`` row read with its key columns."""
        stored = bytes(row.data)
        wrapped = None if row.data_key is None else bytes(row.data_key)
        if self._vault is None:
            if wrapped is not None:
                raise QueueError(
                    f"queued message {row.queue_id} is encrypted: this command needs the "
                    "deployment's master key (storage.encrypt_at_rest)")
            return stored
        return self._vault.open_queued(stored, wrapped, row.master_key_id, row.queue_id)

    # ---- enqueue --------------------------------------------------------------

    def enqueue_work(
        self, *, queue_id: str, mail_from: str, data: bytes,
        recipients: Sequence[OutboundRecipient], message_id: str | None = None,
        envid: str | None = None, ret: str | None = None,
    ) -> Callable[[Connection], object]:
        """A unit of work that queues ``data`` for ``recipients``; the pipeline runs
        it in the same transaction as the local copies (``Store.deliver(also=)``)."""
        now = time.time()
        stored = self._sealed_columns(queue_id, data)

        def work(connection: Connection) -> int:
            pk = int(connection.execute(
                insert(QueuedMessage).values(
                    queue_id=queue_id, created_at=now, mail_from=mail_from, envid=envid,
                    ret=ret, message_id=message_id[:998] if message_id else None, **stored,
                ).returning(QueuedMessage.id)
            ).scalar_one())
            connection.execute(insert(QueuedRecipient), [
                {
                    "message_id": pk, "recipient": r.address, "domain": r.domain,
                    "notify": r.notify, "orcpt": r.orcpt, "status": QUEUED, "attempts": 0,
                    "next_attempt_at": now, "lease_until": None, "lease_owner": None,
                    "last_reply": "", "delay_notified": False,
                }
                for r in recipients
            ])
            return pk

        return work

    # ---- workers --------------------------------------------------------------

    @staticmethod
    def _due(now: float) -> Any:
        return (
            (QueuedRecipient.status == QUEUED)
            & (QueuedRecipient.next_attempt_at <= now)
            & or_(QueuedRecipient.lease_until.is_(None), QueuedRecipient.lease_until < now)
        )

    async def any_due(self) -> bool:
        """A cheap read, so that idle workers do not take the write lock to find nothing."""
        now = time.time()

        def work(connection: Connection) -> bool:
            return connection.execute(
                select(QueuedRecipient.id).where(self._due(now)).limit(1)
            ).first() is not None

        return await self._store.read(work)

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        """Take up to ``limit`` due recipients for ``lease_seconds``."""
        now = time.time()

        def work(connection: Connection) -> list[Claimed]:
            due = (
                select(QueuedRecipient.id)
                .where(self._due(now))
                .order_by(QueuedRecipient.next_attempt_at, QueuedRecipient.id)
                .limit(limit)
            )
            if self._postgres:
                due = due.with_for_update(skip_locked=True)
            ids = list(connection.execute(
                update(QueuedRecipient)
                .where(QueuedRecipient.id.in_(due.scalar_subquery()))
                .values(lease_until=now + lease_seconds, lease_owner=owner)
                .returning(QueuedRecipient.id)
            ).scalars())
            if not ids:
                return []
            rows = connection.execute(
                select(
                    *QueuedRecipient.__table__.c, QueuedMessage.queue_id, QueuedMessage.mail_from,
                    QueuedMessage.envid, QueuedMessage.ret, QueuedMessage.created_at,
                )
                .join(QueuedMessage, QueuedMessage.id == QueuedRecipient.message_id)
                .where(QueuedRecipient.id.in_(ids))
            ).all()
            bodies: dict[int, bytes] = {}
            for message in connection.execute(
                select(*_SEALED, QueuedMessage.id).where(
                    QueuedMessage.id.in_({row.message_id for row in rows}))
            ):
                # A row that cannot be opened (damaged, or its master key missing) must
                # not hold the others: the worker reads it again and defers it with why.
                with contextlib.suppress(CryptoError):
                    bodies[message.id] = self._opened(message)
            return [
                Claimed(
                    id=row.id, message_pk=row.message_id,
                    queue_id=row.queue_id, mail_from=row.mail_from, envid=row.envid,
                    ret=row.ret, created_at=row.created_at,
                    recipient=row.recipient, domain=row.domain,
                    notify=row.notify, orcpt=row.orcpt,
                    attempts=row.attempts,
                    delay_notified=row.delay_notified,
                    data=bodies.get(row.message_id),
                )
                for row in rows
            ]

        return await self._store.write(work)

    async def renew(self, owner: str, ids: Sequence[int], lease_seconds: float) -> None:
        """Extend ``owner``'s lease on rows still being delivered (a slow peer must
        not let another worker claim them meanwhile and deliver twice)."""
        until = time.time() + lease_seconds

        def work(connection: Connection) -> None:
            connection.execute(
                update(QueuedRecipient)
                .where(QueuedRecipient.id.in_(ids), QueuedRecipient.lease_owner == owner)
                .values(lease_until=until)
            )

        await self._store.write(work)

    async def data(self, message_pk: int) -> bytes:
        def work(connection: Connection) -> bytes:
            row = connection.execute(
                select(*_SEALED).where(QueuedMessage.id == message_pk)
            ).first()
            if row is None:
                raise QueueError(f"queued message {message_pk} is gone")
            return self._opened(row)

        return await self._store.read(work)

    async def record(self, owner: str, results: Sequence[Result]) -> None:
        """Record the outcome of claimed rows still leased by ``owner``; finished
        recipients leave the queue, and a message without recipients with them."""

        def work(connection: Connection) -> None:
            # Rows still leased by ``owner`` (a lease lost to another worker: its record
            # wins), in one statement per chunk rather than one per row.
            ids = [result.id for result in results]
            owned: dict[int, int] = {}
            for chunk in _chunks(ids):
                rows = connection.execute(
                    select(QueuedRecipient.id, QueuedRecipient.message_id).where(
                        QueuedRecipient.id.in_(chunk), QueuedRecipient.lease_owner == owner)
                ).all()
                owned.update((row_id, pk) for row_id, pk in rows)
            finished: list[int] = []
            for result in results:
                if result.id not in owned:
                    continue
                if result.outcome == "deferred":
                    mine = ((QueuedRecipient.id == result.id)
                            & (QueuedRecipient.lease_owner == owner))
                    connection.execute(
                        update(QueuedRecipient).where(mine).values(
                            attempts=QueuedRecipient.attempts + 1,
                            next_attempt_at=result.next_attempt_at, last_reply=result.reply,
                            lease_until=None, lease_owner=None,
                            delay_notified=result.delay_notified,
                        )
                    )
                else:
                    finished.append(result.id)
            for chunk in _chunks(finished):
                connection.execute(delete(QueuedRecipient).where(
                    QueuedRecipient.id.in_(chunk), QueuedRecipient.lease_owner == owner))
            _drop_finished(connection, {owned[i] for i in finished})

        await self._store.write(work)

    # ---- administration (`mss queue`) -----------------------------------------------

    async def entries(self) -> list[QueueEntry]:
        def work(connection: Connection) -> list[QueueEntry]:
            rows = connection.execute(
                select(
                    *QueuedRecipient.__table__.c, QueuedMessage.queue_id, QueuedMessage.mail_from,
                    QueuedMessage.created_at, QueuedMessage.data,
                )
                .join(QueuedMessage, QueuedMessage.id == QueuedRecipient.message_id)
                .order_by(QueuedRecipient.id)
            ).all()
            return [
                QueueEntry(
                    id=row.id, queue_id=row.queue_id, mail_from=row.mail_from,
                    recipient=row.recipient, status=row.status,
                    attempts=row.attempts, created_at=row.created_at,
                    next_attempt_at=row.next_attempt_at,
                    last_reply=row.last_reply, size=plaintext_size(bytes(row.data)),
                )
                for row in rows
            ]

        return await self._store.read(work)

    async def entry(self, entry_id: int) -> tuple[QueueEntry, bytes]:
        for found in await self.entries():
            if found.id == entry_id:
                def work(connection: Connection) -> bytes:
                    return self._opened(connection.execute(
                        select(*_SEALED).join(
                            QueuedRecipient, QueuedRecipient.message_id == QueuedMessage.id
                        ).where(QueuedRecipient.id == entry_id)
                    ).one())
                return found, await self._store.read(work)
        raise QueueError(f"no queue entry {entry_id} (see `mss queue list`)")

    async def retry(self, entry_id: int) -> None:
        """Release a held entry or bring a deferred one forward: try it now."""
        await self._change(entry_id, status=QUEUED, next_attempt_at=time.time(),
                           lease_until=None, lease_owner=None)

    async def hold(self, entry_id: int) -> None:
        await self._change(entry_id, status=HELD)

    async def delete(self, entry_id: int) -> None:
        def work(connection: Connection) -> int:
            pk = connection.execute(
                select(QueuedRecipient.message_id).where(QueuedRecipient.id == entry_id)
            ).scalar_one_or_none()
            if pk is None:
                return 0
            connection.execute(delete(QueuedRecipient).where(QueuedRecipient.id == entry_id))
            _drop_finished(connection, {pk})
            return 1

        if not await self._store.write(work):
            raise QueueError(f"no queue entry {entry_id} (see `mss queue list`)")

    async def _change(self, entry_id: int, **values: object) -> None:
        def work(connection: Connection) -> int:
            return int(connection.execute(
                update(QueuedRecipient).where(QueuedRecipient.id == entry_id).values(**values)
            ).rowcount)

        if not await self._store.write(work):
            raise QueueError(f"no queue entry {entry_id} (see `mss queue list`)")


_SEALED = (QueuedMessage.queue_id, QueuedMessage.data, QueuedMessage.data_key,
           QueuedMessage.master_key_id)


# ---- master key rotation (store/vault.py calls these in its transaction) ----------------


async def rewrap_queued_keys(connection: AsyncConnection, keys: dict[str, bytes],
                             new_key: bytes, new_id: str) -> int:
    """Re-wrap the data key of every sealed queued message under ``new_key``."""
    rows = (await connection.execute(
        select(QueuedMessage.id, QueuedMessage.queue_id, QueuedMessage.data_key,
               QueuedMessage.master_key_id).where(
            QueuedMessage.master_key_id.is_not(None), QueuedMessage.master_key_id != new_id)
    )).all()
    for row in rows:
        old = keys.get(row.master_key_id)
        if old is None:
            raise CryptoError(f"queued message {row.queue_id}: wrapped by unknown master key "
                              f"{row.master_key_id}")
        await connection.execute(
            update(QueuedMessage).where(QueuedMessage.id == row.id).values(
                data_key=rewrap_queue_data_key(old, new_key, bytes(row.data_key), row.queue_id),
                master_key_id=new_id,
            )
        )
    return len(rows)


async def queue_uses_key(connection: AsyncConnection, key_id: str) -> bool:
    return (await connection.execute(
        select(QueuedMessage.id).where(QueuedMessage.master_key_id == key_id).limit(1)
    )).first() is not None


def _chunks(values: Sequence[int], size: int = 500) -> list[Sequence[int]]:
    """Bounded IN lists (SQLite's variable limit)."""
    return [values[i:i + size] for i in range(0, len(values), size)]


def _drop_finished(connection: Connection, message_pks: set[int]) -> None:
    """Messages none of whose recipients is left, in one statement per chunk."""
    for chunk in _chunks(sorted(message_pks)):
        connection.execute(delete(QueuedMessage).where(
            QueuedMessage.id.in_(chunk),
            ~exists().where(QueuedRecipient.message_id == QueuedMessage.id),
        ))
