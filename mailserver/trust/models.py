"""The trust list as imported: one row per operator domain."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailserver.store.database import Base


class TrustDomain(Base):
    __tablename__ = "trust_domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    operator_dn: Mapped[str] = mapped_column(Text)
    responsible_contact: Mapped[str] = mapped_column(Text, default="")
    support_contact: Mapped[str] = mapped_column(Text, default="")
    updated: Mapped[str] = mapped_column(String(64), default="")
    list_generated: Mapped[str] = mapped_column(String(64), default="")
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
