"""Store tables: folders, messages, bodies, threads.

Bodies are kept verbatim in the database (table ``blobs``, content-addressed by
SHA-256) rather than in files: the body and its index rows then commit in one
transaction, with one fsync, so a ``250`` can never point at a missing file and a
crash never leaves orphans; several nodes on one PostgreSQL need no shared
filesystem; and encryption at rest wraps one column.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailserver.store.database import Base

# Folders every mailbox has, with their RFC 6154 special-use attribute.
DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
    ("Junk", "\\Junk"),
)


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1000))
    special_use: Mapped[str | None] = mapped_column(String(32), default=None)
    # RFC 9051 §2.3.1.1: UIDs strictly ascend and never repeat for one UIDVALIDITY.
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uidnext: Mapped[int] = mapped_column(BigInteger, default=1)
    # RFC 7162 §3.1.1: every change to the folder gets a higher MODSEQ.
    highestmodseq: Mapped[int] = mapped_column(BigInteger, default=1)
    # RFC 3501 §2.3.2: messages from this UID on are \Recent for the next session
    # told about them (Store.claim_recent), and for no session after it.
    first_recent_uid: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Blob(Base):
    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MailboxKey(Base):
    """A mailbox's X25519 key pair; the private key wrapped by the master key."""

    __tablename__ = "mailbox_keys"

    mailbox_id: Mapped[int] = mapped_column(
        ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
    )
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))


class BlobKey(Base):
    """An encrypted body's data key, wrapped to one mailbox's public key."""

    __tablename__ = "blob_keys"

    blob_sha256: Mapped[str] = mapped_column(
        ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True
    )
    mailbox_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)


class Thread(Base):
    """A conversation a professional opened with one or more patients."""

    __tablename__ = "threads"

    id: Mapped[int] = mapped_column(primary_key=True)
    root_message_id: Mapped[str | None] = mapped_column(String(998), default=None)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    opened_by: Mapped[str | None] = mapped_column(String(320), default=None)
    closed_by: Mapped[str | None] = mapped_column(String(320), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ThreadParticipant(Base):
    """Every address that took part in a thread (senders and recipients)."""

    __tablename__ = "thread_participants"

    thread_id: Mapped[int] = mapped_column(
        ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(320), primary_key=True)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("folder_id", "uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    # Denormalised so that "did this server deliver Message-ID X to mailbox M?"
    # is one index look-up (the thread rules ask it).
    mailbox_id: Mapped[int] = mapped_column(Integer)
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)
    internal_date: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    size: Mapped[int] = mapped_column(BigInteger)
    # System flags and keywords, space-separated, as IMAP names them.
    flags: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str | None] = mapped_column(String(998), default=None)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"), default=None)
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))


Index("ix_messages_folder_modseq", Message.folder_id, Message.modseq)
Index("ix_thread_participants_address", ThreadParticipant.address)
Index("ix_messages_mailbox_message_id", Message.mailbox_id, Message.message_id)
# "Does any message still use this body?", asked when messages go (blob collection).
Index("ix_messages_blob_sha256", Message.blob_sha256)


class MessageSummary(Base):
    """What FETCH ENVELOPE/BODYSTRUCTURE, SEARCH on header keys, SORT and THREAD need of
    a message (``mime/summary.py``), sealed with its mailbox's summary key
    (``crypto.seal_summary``): answering them for a large folder then opens small
    blobs with one key instead of every body with its own. Goes with its message."""

    __tablename__ = "message_summaries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["folder_id", "uid"], ["messages.folder_id", "messages.uid"], ondelete="CASCADE"
        ),
    )

    folder_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    head: Mapped[bytes] = mapped_column(LargeBinary)
    render: Mapped[bytes] = mapped_column(LargeBinary)


class ExpungedUid(Base):
    """UIDs removed from a folder, with the MODSEQ of their removal.

    RFC 7162 §3.2.5.2 / §3.2.10: QRESYNC's VANISHED (EARLIER) answers "which UIDs
    went away since MODSEQ m" from this record.
    """

    __tablename__ = "expunged_uids"

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)


Index("ix_expunged_uids_folder_modseq", ExpungedUid.folder_id, ExpungedUid.modseq)
