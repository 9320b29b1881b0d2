"""What the pipeline tells the rules: plain data, already looked up. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Door(enum.StrEnum):
    """The way a message came in. Every door goes through the same pipeline."""

    SUBMISSION = "submission"  # 587 / 465, authenticated professionals and patients
    RELAY = "relay"  # 25, other servers
    WEBMAIL = "webmail"
    API = "api"


class PartyKind(enum.StrEnum):
    PROFESSIONAL = "professional"  # a local PER / ORG / APP / CAB mailbox
    PATIENT = "patient"  # a local patient mailbox
    LOCAL_UNKNOWN = "local-unknown"  # our domain, no such mailbox
    REMOTE = "remote"  # a domain this server does not serve


@dataclass(frozen=True)
class Party:
    """An address and who is behind it, as the directory says."""

    address: str
    kind: PartyKind
    mailbox_id: int | None = None
    mailbox_type: str | None = None
    active: bool = False
    patient_status: str | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def is_local(self) -> bool:
        return self.kind in (PartyKind.PROFESSIONAL, PartyKind.PATIENT)


@dataclass(frozen=True)
class SenderContext:
    """MAIL FROM: who logged in (if anyone) and the envelope sender."""

    door: Door
    authenticated: Party | None
    mail_from: str  # "" for the null reverse-path
    sender: Party | None  # None for the null reverse-path


@dataclass(frozen=True)
class RecipientContext:
    """RCPT TO: one recipient, decided on the envelope alone."""

    sender: SenderContext
    recipient: Party


@dataclass(frozen=True)
class MessageContext:
    """After DATA: the whole envelope and the headers that rules may read."""

    sender: SenderContext
    recipients: tuple[Party, ...]
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
