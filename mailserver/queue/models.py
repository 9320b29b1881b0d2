"""The durable outbound queue: a message (bytes as signed, sealed at rest) and one row per
remote recipient, each with its own state, so that one refused recipient never
holds the others. Times are UNIX seconds (floats), the same on every backend."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailserver.store.database import Base

QUEUED = "queued"  # waiting for its next attempt
HELD = "held"  # kept, never tried until released (`mss queue retry`)


class QueuedMessage(Base):
    __tablename__ = "queue_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)
    mail_from: Mapped[str] = mapped_column(String(998))
    envid: Mapped[str | None] = mapped_column(String(100), default=None)  # RFC 3461 §4.4
    ret: Mapped[str | None] = mapped_column(String(4), default=None)  # FULL / HDRS, §4.3
    message_id: Mapped[str | None] = mapped_column(String(998), default=None)
    # With encryption at rest, ``data`` is sealed (store/crypto.py) under a data key
    # wrapped by the master key ``master_key_id``; both NULL: stored as is.
    data: Mapped[bytes] = mapped_column(LargeBinary)
    data_key: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    master_key_id: Mapped[str | None] = mapped_column(String(32), default=None)


class QueuedRecipient(Base):
    __tablename__ = "queue_recipients"
    __table_args__ = (Index("ix_queue_recipients_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("queue_messages.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(998))
    domain: Mapped[str] = mapped_column(String(253))
    notify: Mapped[str | None] = mapped_column(String(40), default=None)  # RFC 3461 §4.1
    orcpt: Mapped[str | None] = mapped_column(Text, default=None)  # RFC 3461 §4.2
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    lease_until: Mapped[float | None] = mapped_column(Float, default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    last_reply: Mapped[str] = mapped_column(Text, default="")
    delay_notified: Mapped[bool] = mapped_column(Boolean, default=False)
