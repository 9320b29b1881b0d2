"""The store's keys: mailbox key pairs in the database, wrapped by the master key
kept outside it (``crypto.py`` has the primitives and the scheme).

Inside a write transaction the vault seals a body once and wraps its data key to
every recipient mailbox (creating a mailbox's key pair on its first message);
reading, it unwraps a mailbox's private key once per process and keeps it in
memory only.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mailserver.settings import Settings
from mailserver.store import crypto
from mailserver.store.models import MailboxKey


def master_key_id(master_key: bytes) -> str:
    """A short public fingerprint of a master key (which key wrapped a row)."""
    return hashlib.sha256(b"mss-master-key-id" + master_key).hexdigest()[:16]


class Vault:
    def __init__(self, master_key: bytes, dialect: str) -> None:
        self._master = master_key
        self.key_id = master_key_id(master_key)
        self._dialect = dialect
        self._public: dict[int, bytes] = {}
        self._private: dict[int, X25519PrivateKey] = {}

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
        row = (
            await connection.execute(
                select(MailboxKey.wrapped_private_key).where(MailboxKey.mailbox_id == mailbox_id)
            )
        ).scalar_one_or_none()
        if row is None:
            raise crypto.CryptoError(f"mailbox {mailbox_id} has no key")
        key = crypto.unwrap_mailbox_key(self._master, mailbox_id, bytes(row))
        self._private[mailbox_id] = key
        return key

    def open(self, stored: bytes, wrapped: bytes | None, private: X25519PrivateKey | None,
             mailbox_id: int) -> bytes:
        """The plaintext of a stored body (bodies stored before encryption pass as is)."""
        if not crypto.is_encrypted_body(stored):
            return stored
        if wrapped is None or private is None:
            raise crypto.CryptoError("encrypted body without a key for this mailbox")
        return crypto.decrypt_body(crypto.unwrap_data_key(wrapped, private, mailbox_id), stored)


def open_vault(settings: Settings, dialect: str) -> Vault | None:
    """The deployment's vault, or None when encryption at rest is turned off."""
    if not settings.storage.encrypt_at_rest:
        return None
    return Vault(crypto.load_master_key(settings.path(settings.storage.master_key)), dialect)
