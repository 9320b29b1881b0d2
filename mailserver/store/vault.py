"""The store's keys: mailbox key pairs in the database, wrapped by the master key
kept outside it (``crypto.py`` has the primitives and the scheme).

Inside a write transaction the vault seals a body once and wraps its data key to
every recipient mailbox (creating a mailbox's key pair on its first message);
reading, it unwraps a mailbox's private key once per process and keeps it in
memory only.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailserver.settings import Settings
from mailserver.store import crypto
from mailserver.store.database import writer
from mailserver.store.models import MailboxKey


def master_key_id(master_key: bytes) -> str:
    """A short public fingerprint of a master key (which key wrapped a row)."""
    return hashlib.sha256(b"mss-master-key-id" + master_key).hexdigest()[:16]

_DATA_KEYS_KEPT = 4096
_PRIVATE_KEY = select(MailboxKey.wrapped_private_key, MailboxKey.master_key_id).where(
    MailboxKey.mailbox_id == bindparam("mailbox_id")
)


class Vault:
    def __init__(self, master_key: bytes, dialect: str,
                 previous_keys: Iterable[bytes] = (),
                 reload: Callable[[], list[bytes]] | None = None) -> None:
        self._master = master_key
        self.key_id = master_key_id(master_key)
        # During a rotation (mss keys rotate) rows may still be wrapped by the
        # key being replaced: each row names its key by id.
        self._masters = {master_key_id(k): k for k in (*previous_keys, master_key)}
        self._reload = reload
        self._dialect = dialect
        self._public: dict[int, bytes] = {}
        self._private: dict[int, X25519PrivateKey] = {}
        self._summary: dict[int, AESGCM] = {}
        # wrapped data key (unique: a fresh ephemeral key each) -> data key
        self._data_keys: dict[bytes, bytes] = {}

    def forget_public_keys(self) -> None:
        """After a rollback: a key pair created by the rolled-back write is gone;
        wrapping to its cached public key would make mail nobody can read (and
        sealing a summary with a key derived from it, a summary nobody can read)."""
        self._public.clear()
        self._private.clear()
        self._summary.clear()

    # ---- writing (synchronous, inside the group transaction) ---------------------

    def seal(
        self, connection: Connection, raw: bytes, mailbox_ids: Iterable[int]
    ) -> tuple[str, bytes, dict[int, bytes]]:
        """(random blob id, encrypted body, data key wrapped per mailbox)."""
        data_key = crypto.new_data_key()
        stored = crypto.encrypt_body(data_key, raw)
        wrapped = {
            mailbox_id: crypto.wrap_data_key(
                data_key, self._public_key(connection, mailbox_id), mailbox_id
            )
            for mailbox_id in dict.fromkeys(mailbox_ids)
        }
        # A random id, not the body's hash: equal messages must not be told apart
        # (nor confirmed) by looking at the database.
        return secrets.token_hex(32), stored, wrapped

    def _public_key(self, connection: Connection, mailbox_id: int) -> bytes:
        cached = self._public.get(mailbox_id)
        if cached is not None:
            return cached
        row = connection.execute(
            select(MailboxKey.public_key).where(MailboxKey.mailbox_id == mailbox_id)
        ).scalar_one_or_none()
        if row is None:
            keys = crypto.new_mailbox_keys(self._master, mailbox_id)
            connection.execute(self._insert_key().values(
                mailbox_id=mailbox_id, public_key=keys.public_key,
                wrapped_private_key=keys.wrapped_private_key, master_key_id=self.key_id,
            ))
            # Another node may have created it first: read back what is stored.
            row = connection.execute(
                select(MailboxKey.public_key).where(MailboxKey.mailbox_id == mailbox_id)
            ).scalar_one()
        self._public[mailbox_id] = bytes(row)
        return self._public[mailbox_id]

    def _insert_key(self) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(MailboxKey).on_conflict_do_nothing()
        return sqlite.insert(MailboxKey).on_conflict_do_nothing()

    # ---- reading ------------------------------------------------------------------

    async def private_key(self, connection: AsyncConnection, mailbox_id: int) -> X25519PrivateKey:
        cached = self._private.get(mailbox_id)
        if cached is not None:
            return cached
        row = (await connection.execute(_PRIVATE_KEY, {"mailbox_id": mailbox_id})).first()
        return self._unwrap(row, mailbox_id)

    def private_key_sync(self, connection: Connection, mailbox_id: int) -> X25519PrivateKey:
        """The same, on a synchronous connection (the writer, a reader thread)."""
        cached = self._private.get(mailbox_id)
        if cached is not None:
            return cached
        return self._unwrap(
            connection.execute(_PRIVATE_KEY, {"mailbox_id": mailbox_id}).first(), mailbox_id
        )

    def summary_key(self, connection: Connection, mailbox_id: int) -> AESGCM:
        """The mailbox's key for message summaries (crypto.summary_key)."""
        cached = self._summary.get(mailbox_id)
        if cached is not None:
            return cached
        key = crypto.summary_key(self.private_key_sync(connection, mailbox_id), mailbox_id)
        self._summary[mailbox_id] = key
        return key

    def summary_key_for_writing(self, connection: Connection, mailbox_id: int) -> AESGCM:
        """In a write transaction: the summary key, the mailbox's key pair made first
        if this is its first message."""
        cached = self._summary.get(mailbox_id)
        if cached is not None:
            return cached
        self._public_key(connection, mailbox_id)
        return self.summary_key(connection, mailbox_id)

    def _master_named(self, key_id: str, what: str) -> bytes:
        master = self._masters.get(key_id)
        if master is None and self._reload is not None:  # rotated since we started
            self._masters.update({master_key_id(k): k for k in self._reload()})
            master = self._masters.get(key_id)
        if master is None:
            raise crypto.CryptoError(
                f"{what} is wrapped by master key {key_id}, which this server does not have"
            )
        return master

    def _unwrap(self, row: Any, mailbox_id: int) -> X25519PrivateKey:
        if row is None:
            raise crypto.CryptoError(f"mailbox {mailbox_id} has no key")
        master = self._master_named(row.master_key_id, f"mailbox {mailbox_id}'s key")
        key = crypto.unwrap_mailbox_key(master, mailbox_id, bytes(row.wrapped_private_key))
        self._private[mailbox_id] = key
        return key

    def open(self, stored: bytes, wrapped: bytes | None, private: X25519PrivateKey | None,
             mailbox_id: int) -> bytes:
        """The plaintext of a stored body (bodies stored before encryption pass as is)."""
        if not crypto.is_encrypted_body(stored):
            return stored
        if wrapped is None or private is None:
            raise crypto.CryptoError("encrypted body without a key for this mailbox")
        # Clients read a message several times (headers, then parts): keep the last
        # data keys unwrapped (an X25519 exchange each), in memory only.
        data_key = self._data_keys.get(wrapped)
        if data_key is None:
            data_key = crypto.unwrap_data_key(wrapped, private, mailbox_id)
            if len(self._data_keys) >= _DATA_KEYS_KEPT:
                self._data_keys.clear()  # simple bound, safe from any reader thread
            self._data_keys[wrapped] = data_key
        return crypto.decrypt_body(data_key, stored)


    # ---- the outbound queue ---------------------------------------------------------

    def seal_queued(self, raw: bytes, queue_id: str) -> SealedQueued:
        """A message for the outbound queue, sealed under a fresh data key that the
        master key wraps (crypto.wrap_queue_data_key)."""
        data_key = crypto.new_data_key()
        return SealedQueued(
            data=crypto.encrypt_body(data_key, raw),
            data_key=crypto.wrap_queue_data_key(self._master, data_key, queue_id),
            master_key_id=self.key_id,
        )

    def open_queued(self, stored: bytes, wrapped: bytes | None, key_id: str | None,
                    queue_id: str) -> bytes:
        """The plaintext of a queued message (rows queued without a vault pass as is)."""
        if wrapped is None or key_id is None:
            if crypto.is_encrypted_body(stored):
                raise crypto.CryptoError(f"queued message {queue_id} has no data key")
            return stored
        master = self._master_named(key_id, f"queued message {queue_id}")
        data_key = crypto.unwrap_queue_data_key(master, wrapped, queue_id)
        return crypto.decrypt_body(data_key, stored)


@dataclass(frozen=True)
class SealedQueued:
    """What the outbound queue stores for one message when encryption at rest is on."""

    data: bytes
    data_key: bytes
    master_key_id: str


# Other rooms keep rows wrapped by the master key (the outbound queue): a rotation
# re-wraps them in its transaction, and the retired key is kept while one uses it.
# (connection, master keys by id, new key, new key id) -> rows re-wrapped
Rewrap = Callable[[AsyncConnection, dict[str, bytes], bytes, str], Awaitable[int]]
# (connection, key id) -> whether some row is still wrapped by that key
UsesKey = Callable[[AsyncConnection, str], Awaitable[bool]]


def pending_key_path(settings: Settings) -> Path:
    """Where a rotation writes the new master key until it has re-wrapped every row."""
    path = settings.path(settings.storage.master_key)
    return path.with_name(path.name + ".new")


def retired_key_path(settings: Settings) -> Path:
    """The key a rotation replaced, kept until no row is wrapped by it any more."""
    path = settings.path(settings.storage.master_key)
    return path.with_name(path.name + ".old")


def _side_keys(settings: Settings) -> list[bytes]:
    return [crypto.load_master_key(p)
            for p in (pending_key_path(settings), retired_key_path(settings)) if p.exists()]


def open_vault(settings: Settings, dialect: str) -> Vault | None:
    """The deployment's vault, or None when encryption at rest is turned off.

    A rotation interrupted after its commit left rows wrapped by ``master.key.new``:
    the vault knows both keys until the next rotation finishes the swap."""
    if not settings.storage.encrypt_at_rest:
        return None
    current = settings.path(settings.storage.master_key)
    # Reloading reads the current key file too: after a rotation it holds the new key,
    # which re-wrapped rows name.
    return Vault(crypto.load_master_key(current), dialect, _side_keys(settings),
                 reload=lambda: [crypto.load_master_key(current), *_side_keys(settings)])


async def rotate_master_key(settings: Settings, engine: AsyncEngine,
                            also: Sequence[Rewrap] = ()) -> tuple[str, str, int, int]:
    """Re-wrap every mailbox key under a new master key, and in the same transaction
    the rows of the rooms in ``also`` (the outbound queue); bodies are not touched.

    Crash-safe order: the new key is written to ``master.key.new`` first; the
    re-wrap commits in one transaction; then ``master.key.new`` atomically replaces
    ``master.key``. Interrupted anywhere, the vault still has every key it needs.
    Returns (old key id, new key id, mailboxes re-wrapped, rows of ``also`` re-wrapped).
    """
    current_path = settings.path(settings.storage.master_key)
    pending = pending_key_path(settings)
    retired = retired_key_path(settings)
    keys = {master_key_id(k): k
            for k in [crypto.load_master_key(current_path), *_side_keys(settings)]}
    if pending.exists():  # an earlier rotation stopped half-way: finish it
        new_key = crypto.load_master_key(pending)
    else:
        crypto.create_master_key(pending)
        new_key = crypto.load_master_key(pending)
    keys[master_key_id(new_key)] = new_key
    new_id = master_key_id(new_key)
    old_id = master_key_id(crypto.load_master_key(current_path))
    count = 0
    async with writer(engine).begin() as connection:
        rows = (await connection.execute(select(MailboxKey))).all()
        for row in rows:
            if row.master_key_id == new_id:
                continue
            old = keys.get(row.master_key_id)
            if old is None:
                raise crypto.CryptoError(
                    f"mailbox {row.mailbox_id}: wrapped by unknown master key {row.master_key_id}"
                )
            await connection.execute(
                update(MailboxKey).where(MailboxKey.mailbox_id == row.mailbox_id).values(
                    wrapped_private_key=crypto.rewrap_mailbox_key(
                        old, new_key, row.mailbox_id, bytes(row.wrapped_private_key)),
                    master_key_id=new_id,
                )
            )
            count += 1
        others = 0
        for rewrap in also:
            others += await rewrap(connection, keys, new_key, new_id)
    # Atomic swaps: the replaced key is kept as master.key.old, for rows a running
    # server may have wrapped with it meanwhile; the next rotation re-wraps them
    # and then destroys it.
    os.replace(current_path, retired)
    os.replace(pending, current_path)
    return old_id, new_id, count, others


async def destroy_retired_key(settings: Settings, engine: AsyncEngine,
                              also: Sequence[UsesKey] = ()) -> bool:
    """Delete master.key.old once no mailbox key, nor a row of the rooms in ``also``,
    is wrapped by it any more."""
    retired = retired_key_path(settings)
    if not retired.exists():
        return False
    retired_id = master_key_id(crypto.load_master_key(retired))
    async with engine.connect() as connection:
        still = (await connection.execute(
            select(MailboxKey.mailbox_id).where(MailboxKey.master_key_id == retired_id).limit(1)
        )).first()
        if still is None:
            for uses_key in also:
                if await uses_key(connection, retired_id):
                    return False
    if still is not None:
        return False
    retired.unlink()
    return True
