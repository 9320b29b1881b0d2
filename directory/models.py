"""Directory tables. They share the store's metadata (one database, one history)."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Date, DateTime, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from mailserver.store.database import Base


class MailboxType(enum.StrEnum):
    """MSSanté mailbox types, plus PAT for a patient's mailbox."""

    PER = "PER"  # personal mailbox of a practitioner
    ORG = "ORG"  # organisational mailbox (a service, a department)
    APP = "APP"  # application mailbox (practice software)
    CAB = "CAB"  # practice (cabinet) mailbox
    PAT = "PAT"  # patient mailbox, <INS>@<patient domain>

    @property
    def is_professional(self) -> bool:
        return self is not MailboxType.PAT


class MailboxStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # cannot log in nor receive; may be enabled again
    RETIRED = "retired"  # gone for good; the address is never reused


class PatientStatus(enum.StrEnum):
    OPEN = "open"
    OPPOSED = "opposed"
    CLOSED = "closed"


class Mailbox(Base):
    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased: lookups are case-insensitive (RFC 5321 §2.4 allows it
    # for our own domains).
    address: Mapped[str] = mapped_column(String(320), unique=True)
    type: Mapped[str] = mapped_column(String(3))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # National identifier of the owner (RPPS / FINESS), filled by the directory import.
    owner: Mapped[str | None] = mapped_column(String(64), default=None)
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(16), default=MailboxStatus.ACTIVE.value)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    ins: Mapped[str] = mapped_column(String(15), unique=True)
    # OID of the INS matricule: NIR (1.2.250.1.213.1.4.8) or NIA (…4.9).
    ins_oid: Mapped[str] = mapped_column(String(64))
    family_name: Mapped[str] = mapped_column(String(200))
    given_names: Mapped[str] = mapped_column(String(200))
    birthdate: Mapped[dt.date] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(1), default=None)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=PatientStatus.OPEN.value)


Index("ix_mailboxes_type", Mailbox.type)
