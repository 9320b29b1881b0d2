"""Message summaries in the database (table ``message_summaries``).

Written in the same unit of work as their message, sealed with the mailbox's summary
key (``crypto.seal_summary``); read many at a time, opened with one key. A message
stored before summaries existed, or whose summary does not open, has none here: the
Store computes it from the body on first use and writes it back (lazy backfill).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, bindparam, delete, insert, select

from mailserver.mime.summary import Summary
from mailserver.store import crypto
from mailserver.store.models import Message, MessageSummary
from mailserver.store.vault import Vault

HEAD = b"head"
RENDER = b"render"
_CHUNK = 500

_INSERT = insert(MessageSummary)
_HEADS_OF_FOLDER = (
    select(MessageSummary.uid, MessageSummary.head)
    .where(MessageSummary.folder_id == bindparam("folder_id"))
)


def sealed(
    vault: Vault | None, connection: Connection, mailbox_id: int, summary: Summary
) -> dict[str, bytes]:
    """The stored form of a summary (columns head, render), inside a write."""
    key = vault.summary_key_for_writing(connection, mailbox_id) if vault else None
    return {
        "head": crypto.seal_summary(key, mailbox_id, HEAD, summary.head),
        "render": crypto.seal_summary(key, mailbox_id, RENDER, summary.render),
    }


def insert_one(connection: Connection, folder_id: int, uid: int, columns: dict[str, bytes]) -> None:
    connection.execute(_INSERT, {"folder_id": folder_id, "uid": uid, **columns})


def copy(connection: Connection, source_folder: int, dest_folder: int,
         pairs: Sequence[tuple[int, int]]) -> None:
    """COPY / MOVE within one mailbox: the sealed summaries go as they are."""
    new_uid = dict(pairs)
    for start in range(0, len(pairs), _CHUNK):
        rows = connection.execute(
            select(MessageSummary.uid, MessageSummary.head, MessageSummary.render).where(
                MessageSummary.folder_id == source_folder,
                MessageSummary.uid.in_([p[0] for p in pairs[start:start + _CHUNK]]),
            )
        ).all()
        if rows:
            connection.execute(_INSERT, [
                {"folder_id": dest_folder, "uid": new_uid[int(r.uid)], "head": r.head,
                 "render": r.render}
                for r in rows
            ])


def replace(connection: Connection, folder_id: int, columns: dict[int, dict[str, bytes]]) -> None:
    """Store summaries computed afterwards (backfill), for the messages still there."""
    uids = list(columns)
    for start in range(0, len(uids), _CHUNK):
        chunk = uids[start:start + _CHUNK]
        present = connection.execute(
            select(Message.uid).where(Message.folder_id == folder_id, Message.uid.in_(chunk))
        ).scalars().all()
        if not present:
            continue
        connection.execute(delete(MessageSummary).where(
            MessageSummary.folder_id == folder_id, MessageSummary.uid.in_(present)))
        connection.execute(_INSERT, [
            {"folder_id": folder_id, "uid": int(uid), **columns[int(uid)]} for uid in present
        ])


def read_key(vault: Vault | None, connection: Connection, mailbox_id: int) -> AESGCM | None:
    return vault.summary_key(connection, mailbox_id) if vault is not None else None


def opened(key: AESGCM | None, mailbox_id: int, part: bytes,
           rows: Iterable[tuple[int, bytes]]) -> tuple[dict[int, bytes], list[int]]:
    """Plaintexts by UID, and the UIDs whose summary does not open (to recompute)."""
    found: dict[int, bytes] = {}
    damaged: list[int] = []
    opener = crypto.summary_opener(key, mailbox_id, part)
    for uid, stored in rows:
        try:
            found[uid] = opener(stored)
        except crypto.CryptoError:
            damaged.append(uid)
    return found, damaged


def heads(vault: Vault | None, connection: Connection, folder_id: int, mailbox_id: int,
          uids: Sequence[int] | None) -> tuple[dict[int, bytes], list[int]]:
    """Opened ``head`` parts of ``uids`` (None: the whole folder), and damaged UIDs."""
    key = read_key(vault, connection, mailbox_id)
    if uids is None:
        rows: Iterable[tuple[int, bytes]]
        if connection.dialect.driver == "pysqlite":  # plain tuples: 100,000 rows count
            rows = connection.connection.driver_connection.execute(  # type: ignore[union-attr]
                "SELECT uid, head FROM message_summaries WHERE folder_id = ?", (folder_id,))
        else:
            rows = connection.execute(_HEADS_OF_FOLDER, {"folder_id": folder_id}).all()
        return opened(key, mailbox_id, HEAD, rows)
    return _by_uid(connection, key, folder_id, mailbox_id, uids, HEAD)


def renders(vault: Vault | None, connection: Connection, folder_id: int, mailbox_id: int,
            uids: Sequence[int]) -> tuple[dict[int, bytes], list[int]]:
    key = read_key(vault, connection, mailbox_id)
    return _by_uid(connection, key, folder_id, mailbox_id, uids, RENDER)


def _statements(column: Any) -> tuple[Any, Any]:
    """(UIDs in a range, UIDs in a list) of one column, built once."""
    chosen = select(MessageSummary.uid, column).where(
        MessageSummary.folder_id == bindparam("folder_id"))
    return (chosen.where(MessageSummary.uid.between(bindparam("low"), bindparam("high"))),
            chosen.where(MessageSummary.uid.in_(bindparam("uids", expanding=True))))


_BY_UID = {HEAD: _statements(MessageSummary.head), RENDER: _statements(MessageSummary.render)}


def _by_uid(connection: Connection, key: AESGCM | None, folder_id: int, mailbox_id: int,
            uids: Sequence[int], part: bytes) -> tuple[dict[int, bytes], list[int]]:
    found: dict[int, bytes] = {}
    damaged: list[int] = []
    ordered = sorted(uids)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        # A dense run of UIDs (1:1000) reads best as a range, a sparse set as a list.
        in_range, in_list = _BY_UID[part]
        rows_read = connection.execute(in_range, {
            "folder_id": folder_id, "low": chunk[0], "high": chunk[-1]}) \
            if chunk[-1] - chunk[0] < 2 * len(chunk) else connection.execute(in_list, {
                "folder_id": folder_id, "uids": chunk})
        wanted = set(chunk)
        rows = [(int(u), bytes(d)) for u, d in rows_read if u in wanted]
        more, bad = opened(key, mailbox_id, part, rows)
        found.update(more)
        damaged.extend(bad)
    return found, damaged
