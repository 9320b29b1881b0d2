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
    trusted: bool = False  # REMOTE: its domain is in the operators' trust space

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def is_local(self) -> bool:
        return self.kind in (PartyKind.PROFESSIONAL, PartyKind.PATIENT)


@dataclass(frozen=True)
class PeerTrust:
    """On the relay door: what the peer's TLS client certificate proves."""

    required: bool  # port 25 takes mail from the trust space only
    certificate: bool  # TLS with a client certificate chaining to our anchors
    sender_listed: bool  # the sending domain is in the trust list (null sender: True)
    dn_matches: bool  # the certificate DN is the sending domain's operator DN
    subject: str = ""  # the certificate's DN, for the refusal text


@dataclass(frozen=True)
class SenderContext:
    """MAIL FROM: who logged in (if anyone) and the envelope sender."""

    door: Door
    authenticated: Party | None
    mail_from: str  # "" for the null reverse-path
    sender: Party | None  # None for the null reverse-path
    peer: PeerTrust | None = None  # relay door only


@dataclass(frozen=True)
class RecipientContext:
    """RCPT TO: one recipient, decided on the envelope alone."""

    sender: SenderContext
    recipient: Party


@dataclass(frozen=True)
class ThreadState:
    """A conversation as this server recorded it (never as a client claims it)."""

    id: int
    open: bool
    opened_by: str | None
    participants: frozenset[str]


@dataclass(frozen=True)
class Finding:
    """A problem the pipeline found in the content: a code and labels in both languages."""

    code: str
    en: str
    fr: str


@dataclass(frozen=True)
class AttachmentFacts:
    """One attachment, as its bytes show it (not as the sender declared it)."""

    filename: str
    declared_type: str
    kind: str  # "pdf", "jpeg", "xdm", ... "executable", "script", "office-macro", "unknown"
    size: int
    dangerous: str = ""  # why it could run on the reader's machine; "" when it cannot
    problem: Finding | None = None  # it could not be checked (zip bomb, unreadable)


@dataclass(frozen=True)
class AttachmentPolicy:
    """The operator's choices (``[attachments]`` of mss.toml), handed to the rules."""

    allowed: frozenset[str]
    max_size: int
    max_count: int


@dataclass(frozen=True)
class StructuredFacts:
    """A structured health message (XDM package, MSSanté headers): what it declares
    and sends, and where the two disagree."""

    type_codes: tuple[str, ...]
    patient: str | None  # "extension^^^&root&ISO" of the one patient, when one
    problems: tuple[Finding, ...]


@dataclass(frozen=True)
class ContentFacts:
    """The body, looked at once by the pipeline (only for messages with attachments
    or MSSanté headers)."""

    attachments: tuple[AttachmentFacts, ...] = ()
    structured: StructuredFacts | None = None
    problem: Finding | None = None  # the MIME structure itself is refused (depth, parts)
    policy: AttachmentPolicy | None = None


@dataclass(frozen=True)
class MessageContext:
    """After DATA: the whole envelope and the headers that rules may read.

    ``thread`` is the thread of the message this one replies to, found by the
    pipeline among the messages this server delivered to the author's mailbox
    (In-Reply-To first, else the last such id of References); None when the
    message replies to nothing the author received, or to a message in no thread.
    """

    sender: SenderContext
    recipients: tuple[Party, ...]
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    header_recipients: tuple[Party, ...] = ()  # To and Cc, resolved
    has_bcc: bool = False
    thread: ThreadState | None = None
    content: ContentFacts | None = None  # None: plain mail, body not parsed

    @property
    def author(self) -> Party | None:
        """Who writes: the login on submission, else the envelope sender."""
        return self.sender.authenticated or self.sender.sender

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None
