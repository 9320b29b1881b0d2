"""Directory tables. They share the store's metadata (one database, one history)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

# The enumerations live in kinds.py (no SQLAlchemy: the parsing process imports
# them); every module still finds them here.
from directory.kinds import CertificateUsage as CertificateUsage
from directory.kinds import MailboxStatus as MailboxStatus
from directory.kinds import MailboxType as MailboxType
from directory.kinds import PatientStatus as PatientStatus
from directory.kinds import Source as Source
from mailserver.store.database import Base


class Practitioner(Base):
    """A health professional of the national directory (RPPS or ADELI)."""

    __tablename__ = "practitioners"

    id: Mapped[int] = mapped_column(primary_key=True)
    id_type: Mapped[str] = mapped_column(String(2))  # 8 = RPPS, 0 = ADELI
    identifier: Mapped[str] = mapped_column(String(32))
    # Type digit + identifier, e.g. 810001045367: the key used by every file.
    national_id: Mapped[str] = mapped_column(String(40), unique=True)
    civility: Mapped[str] = mapped_column(String(32), default="")
    family_name: Mapped[str] = mapped_column(String(200), default="")
    given_name: Mapped[str] = mapped_column(String(200), default="")
    category_code: Mapped[str] = mapped_column(String(8), default="")
    category_label: Mapped[str] = mapped_column(String(200), default="")
    profession_code: Mapped[str] = mapped_column(String(8), default="")
    profession_label: Mapped[str] = mapped_column(String(200), default="")
    specialty_code: Mapped[str] = mapped_column(String(16), default="")
    specialty_label: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str | None] = mapped_column(String(16), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Organisation(Base):
    """A health organisation (FINESS / SIRET / …), as the extraction describes it."""

    __tablename__ = "organisations"
    __table_args__ = (UniqueConstraint("id_type", "identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    id_type: Mapped[str] = mapped_column(String(4))
    identifier: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300), default="")
    trade_name: Mapped[str] = mapped_column(String(300), default="")
    # Postal lines L2–L5 (AFNOR NF Z10-011), one per line, and L6 (postcode + city).
    address_lines: Mapped[str] = mapped_column(Text, default="")
    locality: Mapped[str] = mapped_column(String(200), default="")
    postal_code: Mapped[str] = mapped_column(String(16), default="")
    department: Mapped[str] = mapped_column(String(8), default="")
    country: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str | None] = mapped_column(String(16), default=None)


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
    practitioner_id: Mapped[int | None] = mapped_column(
        ForeignKey("practitioners.id", ondelete="SET NULL"), default=None
    )
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="SET NULL"), default=None
    )
    service: Mapped[str] = mapped_column(String(300), default="", server_default="")
    # Red list: the owner refused publication; never returned by a public search.
    red_list: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The owner accepts dematerialised documents (the extraction's "Dématérialisation").
    dematerialisation: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # None for mailboxes created here; Source.MSSANTE for imported ones.
    source: Mapped[str | None] = mapped_column(String(16), default=None)
    # Digest of the national file's row last imported (importers/load.py): an unchanged
    # row is recognised without reading its practitioner, organisation or document.
    import_digest: Mapped[str | None] = mapped_column(String(32), default=None)


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
    # Personal address (outside the secure space) told that a message is waiting.
    notification_address: Mapped[str | None] = mapped_column(String(320), default=None)


class Certificate(Base):
    """An X.509 certificate bound to one mailbox address or to a whole domain."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("sha256", "bound_to", "usage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Lower-cased address (local@domain) or domain name (no "@").
    bound_to: Mapped[str] = mapped_column(String(320))
    usage: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(1000))
    issuer: Mapped[str] = mapped_column(String(1000))
    serial: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes] = mapped_column(LargeBinary)


class SearchDocument(Base):
    """One normalised text per publicly searchable mailbox (ASCII lower-case words).

    Only active, non-red-listed mailboxes have one. The word index over it is
    backend-specific and lives in the migration: an FTS5 table on SQLite, a GIN
    index on ``to_tsvector('simple', document)`` on PostgreSQL.
    """

    __tablename__ = "directory_search"

    mailbox_id: Mapped[int] = mapped_column(
        ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
    )
    document: Mapped[str] = mapped_column(Text)


Index("ix_mailboxes_type", Mailbox.type)
Index("ix_mailboxes_practitioner_id", Mailbox.practitioner_id)
Index("ix_mailboxes_organisation_id", Mailbox.organisation_id)
Index("ix_certificates_bound_to", Certificate.bound_to, Certificate.usage)
