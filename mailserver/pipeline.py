"""The one door for every message (DESIGN.md): SMTP submission, SMTP relay intake,
and later the webmail and the practice-software API all call this.

1. parse once (headers only; the bytes are kept verbatim),
2. identify sender and recipients through the directory,
3. ``policies.decide_*`` → Accept | Reject,
4. local recipients → ``store.deliver`` (one transaction for all of them);
   remote recipients → ``protect_outgoing`` → DKIM-sign → queued in that same
   transaction,
5. only then the caller may answer ``250``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.utils
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses

from cryptography import x509
from sqlalchemy import Connection

import policies
from directory.service import Directory, MailboxRecord
from mailserver.dkim.authres import result_header, strip_ours
from mailserver.dkim.reports import sign_report
from mailserver.dkim.signer import DkimSigner
from mailserver.health.content import analyse, needs_content_check
from mailserver.health.mdn import error_mdn
from mailserver.health.mssante import decoded
from mailserver.mime.header_block import addresses as header_addresses
from mailserver.mime.header_block import parse_header_block
from mailserver.queue import mdn
from mailserver.queue.dsn import RecipientReport, build_dsn, wants
from mailserver.queue.outbound import OutboundQueue, OutboundRecipient
from mailserver.queue.protect import Copy, OutboundProtector, Refusal
from mailserver.settings import Settings
from mailserver.smime import mime as smime_mime
from mailserver.smime.intake import IncomingKeys, Refused, refusal
from mailserver.smime.protect import unprotect
from mailserver.store import Delivered, Store, ThreadUpdate
from mailserver.trust.service import TrustSpace
from policies import Decision, Reject
from policies.context import (
    Door,
    MessageContext,
    Party,
    PartyKind,
    PeerTrust,
    RecipientContext,
    SenderContext,
    ThreadState,
)
from policies.threads import thread_effect

log = logging.getLogger(__name__)

# Headers the message rules may read; parsing stops at the header/body boundary.
RULE_HEADERS = ("from", "to", "cc", "bcc", "message-id", "in-reply-to", "references",
                "x-mss-mes", "subject", "date", "x-mss-codecda", "x-mss-ins", "x-mss-nil")
# Bodies larger than this are analysed off the event loop.
INLINE_ANALYSIS_SIZE = 64 * 1024

_UNSAFE_IN_HEADER = re.compile(r"[^\x21-\x7e]")
MAX_HEADER_RECIPIENTS = 1000


@dataclass(frozen=True)
class TlsPeer:
    """The SMTP client as TLS saw it (relay door)."""

    tls: bool
    subject: x509.Name | None  # the verified client certificate's subject DN


@dataclass(frozen=True)
class RecipientDsn:
    """RFC 3461 §4.1, §4.2: what the client asked about one recipient."""

    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True)
class Submission:
    """A message as it arrived, before any decision."""

    door: Door
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    authenticated: MailboxRecord | None = None
    peer_ip: str = ""
    helo: str = ""
    tls: str | None = None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
    protocol: str = "ESMTP"  # RFC 3848 "with" keyword
    # Parties already looked up during this SMTP transaction (MAIL / RCPT), by address.
    resolved: dict[str, Party] = field(default_factory=dict)
    peer: TlsPeer | None = None
    ret: str | None = None  # RFC 3461 §4.3
    envid: str | None = None  # RFC 3461 §4.4 (xtext, as received)
    rcpt_dsn: dict[str, RecipientDsn] = field(default_factory=dict)


@dataclass
class Outcome:
    decision: Decision
    delivered: list[Delivered] = field(default_factory=list)
    queue_id: str = ""

    @property
    def accepted(self) -> bool:
        return not isinstance(self.decision, Reject)


def party_from_record(address: str, record: MailboxRecord | None, local: bool) -> Party:
    if record is None:
        return Party(address, PartyKind.LOCAL_UNKNOWN if local else PartyKind.REMOTE)
    return Party(
        record.address,
        PartyKind.PATIENT if record.is_patient else PartyKind.PROFESSIONAL,
        mailbox_id=record.id,
        mailbox_type=record.type.value,
        active=record.can_receive,
        patient_status=record.patient_status.value if record.patient_status else None,
    )


class Pipeline:
    def __init__(
        self, settings: Settings, directory: Directory, store: Store, *,
        trust: TrustSpace | None = None, queue: OutboundQueue | None = None,
        dkim: DkimSigner | None = None, protector: OutboundProtector | None = None,
        incoming: IncomingKeys | None = None,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._store = store
        self._trust = trust
        self._queue = queue
        self._dkim = dkim
        self._protector = protector
        self._incoming = incoming
        self.authserv_id = settings.dkim.authserv_id or settings.server.hostname
        # Called after a commit that queued mail (wakes this process's delivery worker).
        self.on_queued: Callable[[], None] | None = None
        self._local_domains = settings.local_domains
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- identify -------------------------------------------------------------

    def is_local_domain(self, address: str) -> bool:
        domain = address.rpartition("@")[2].lower().rstrip(".")
        return domain in self._local_domains

    async def resolve(self, address: str, memo: dict[str, Party] | None = None) -> Party:
        """Who is behind ``address``; ``memo`` spares a second look-up in one transaction."""
        if memo is not None and address in memo:
            return memo[address]
        local = self.is_local_domain(address)
        record = await self._directory.lookup(address) if local else None
        party = party_from_record(address.lower() if not record else record.address, record, local)
        if party.kind is PartyKind.REMOTE and self._trust is not None:
            if await self._trust.is_trusted(party.domain):
                party = dataclasses.replace(party, trusted=True)
        if memo is not None:
            memo[address] = party
        return party

    def login_party(self, mailbox: MailboxRecord | None) -> Party | None:
        return party_from_record(mailbox.address, mailbox, True) if mailbox else None

    # ---- decide (envelope) ------------------------------------------------------

    async def sender_context(
        self, door: Door, authenticated: MailboxRecord | None, mail_from: str,
        memo: dict[str, Party] | None = None, peer: TlsPeer | None = None,
    ) -> SenderContext:
        sender = await self.resolve(mail_from, memo) if mail_from else None
        trust = await self._peer_trust(door, mail_from, peer)
        return SenderContext(door, self.login_party(authenticated), mail_from, sender, trust)

    async def _peer_trust(
        self, door: Door, mail_from: str, peer: TlsPeer | None
    ) -> PeerTrust | None:
        """What the relay client's certificate proves about the sending domain."""
        if door is not Door.RELAY or peer is None or self._trust is None:
            return None
        required = self._settings.smtp.require_trust_space and await self._trust.exists()
        if not required:
            return PeerTrust(False, False, False, False)
        subject = peer.subject
        if not peer.tls or subject is None:
            return PeerTrust(True, False, False, False)
        domain = mail_from.rpartition("@")[2].lower()
        if mail_from in ("", "<>"):  # a bounce: any operator of the trust space may send it
            return PeerTrust(True, True, True, await self._trust.any_dn_matches(subject),
                             subject.rfc4514_string())
        listed = await self._trust.is_trusted(domain)
        matches = listed and await self._trust.dn_matches(domain, subject)
        return PeerTrust(True, True, listed, matches, subject.rfc4514_string())

    async def check_sender(
        self, door: Door, authenticated: MailboxRecord | None, mail_from: str,
        memo: dict[str, Party] | None = None, peer: TlsPeer | None = None,
    ) -> Decision:
        context = await self.sender_context(door, authenticated, mail_from, memo, peer)
        return self._logged(policies.decide_sender(context), door, mail_from, "")

    async def check_recipient(
        self, door: Door, authenticated: MailboxRecord | None, mail_from: str, rcpt: str,
        memo: dict[str, Party] | None = None,
    ) -> Decision:
        context = RecipientContext(
            await self.sender_context(door, authenticated, mail_from, memo),
            await self.resolve(rcpt, memo),
        )
        decision = policies.decide_recipient(context)
        if (not isinstance(decision, Reject) and context.recipient.kind is PartyKind.REMOTE
                and self._protector is not None):
            # [smime] when = "always": known from the envelope, so answered at RCPT.
            refused = await self._protector.refusal_for(context.recipient.address)
            if refused is not None:
                decision = Reject(refused.code, refused.status, refused.reason,
                                  refused.reason_fr, "smime_protection_required")
        return self._logged(decision, door, mail_from, rcpt)

    # ---- the door -------------------------------------------------------------

    async def submit(self, submission: Submission) -> Outcome:
        """Decide on the whole message, then deliver it atomically or refuse it whole."""
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._submit(submission)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def drain(self, grace: float) -> bool:
        """Wait until no submission is in flight (shutdown); False after ``grace`` s."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            return False
        return True

    async def _submit(self, submission: Submission) -> Outcome:
        queue_id = uuid.uuid4().hex[:16].upper()
        auth_results: str | None = None
        if submission.door is Door.RELAY:
            opened = await self._open_incoming(submission)
            if isinstance(opened, Reject):
                self._logged(opened, submission.door, submission.mail_from, ",".join(
                    submission.rcpt_tos), queue_id)
                return Outcome(opened, queue_id=queue_id)
            if isinstance(opened, bytes):  # decrypted / verified; results inside
                submission = dataclasses.replace(submission, raw=opened)
            else:
                auth_results = opened
        headers = parse_headers(submission.raw)
        memo = dict(submission.resolved)
        sender = await self.sender_context(
            submission.door, submission.authenticated, submission.mail_from, memo,
            submission.peer,
        )
        decision = policies.decide_sender(sender)
        recipients: list[Party] = []
        for rcpt in dict.fromkeys(submission.rcpt_tos):
            if isinstance(decision, Reject):
                break
            party = await self.resolve(rcpt, memo)
            recipients.append(party)
            decision = policies.decide_recipient(RecipientContext(sender, party))
        context: MessageContext | None = None
        if not isinstance(decision, Reject):
            context, decision = await self._message_context(
                sender, recipients, headers, memo, submission.raw
            )
        if context is not None and not isinstance(decision, Reject):
            decision = policies.decide_message(context)
        if isinstance(decision, Reject):
            self._logged(decision, submission.door, submission.mail_from, ",".join(
                submission.rcpt_tos), queue_id)
            if context is not None and decision.rule == "structured_message_is_consistent":
                await self._error_mdn(context, headers)
            if submission.door is Door.RELAY and context is not None:  # RFC 8098 §3.2.6
                await mdn.send_refusal_notice(
                    self.send_report, submission.mail_from, submission.rcpt_tos, headers,
                    context, decision, self._settings.server.hostname)
            return Outcome(decision, queue_id=queue_id)

        raw, message_id = self._stamp(submission, headers, queue_id, auth_results)
        mailbox_ids = [p.mailbox_id for p in recipients if p.mailbox_id is not None]
        remote = [p for p in recipients if p.kind is PartyKind.REMOTE]
        queued = await self._queue_work(submission, remote, raw, queue_id, message_id)
        if isinstance(queued, Reject):
            self._logged(queued, submission.door, submission.mail_from, ",".join(
                submission.rcpt_tos), queue_id)
            return Outcome(queued, queue_id=queue_id)
        effect = thread_effect(context) if context is not None else None
        thread = None
        if effect is not None:
            thread = ThreadUpdate(
                thread_id=effect.thread_id, opened_by=effect.opened_by,
                root_message_id=message_id, add_participants=effect.add_participants,
                status=effect.status, closed_by=effect.closed_by,
            )
        delivered = await self._store.deliver(
            mailbox_ids, raw, message_id=message_id, thread=thread, also=queued
        )
        if queued is not None and self.on_queued is not None:
            self.on_queued()
        await self._success_reports(submission, recipients, raw)
        await self._dispositions(submission, headers, recipients, raw, message_id)
        log.info(
            "delivered id=%s door=%s from=<%s> rcpts=%d queued=%d size=%d",
            queue_id, submission.door.value, submission.mail_from, len(delivered),
            len(remote), len(raw),
        )
        return Outcome(policies.ACCEPT, delivered, queue_id)

    async def _queue_work(
        self, submission: Submission, remote: list[Party], raw: bytes, queue_id: str,
        message_id: str | None,
    ) -> Callable[[Connection], object] | Reject | None:
        """Remote recipients: protect (S/MIME), DKIM-sign, then the queue's unit of
        work, committed with the local copies so that ``250`` covers both."""
        if not remote:
            return None
        if self._queue is None:
            raise RuntimeError("remote recipients accepted without an outbound queue")
        addresses = [p.address for p in remote]
        copies = ([Copy(tuple(addresses), raw, False)] if self._protector is None else
                  await self._protector.protect_outgoing(raw, submission.mail_from, addresses))
        if isinstance(copies, Refusal):
            return Reject(copies.code, copies.status, copies.reason, copies.reason_fr,
                          "smime_protection_required")
        by_address = {a.lower(): d for a, d in submission.rcpt_dsn.items()}
        works = []
        for copy in copies:
            data = copy.data
            if self._dkim is not None and submission.mail_from:
                data = self._dkim.sign(data, submission.mail_from.rpartition("@")[2])
            recipients = [
                OutboundRecipient(
                    address, by_address.get(address, RecipientDsn()).notify,
                    by_address.get(address, RecipientDsn()).orcpt,
                )
                for address in copy.recipients
            ]
            works.append(self._queue.enqueue_work(
                queue_id=queue_id, mail_from=submission.mail_from, data=data,
                recipients=recipients, message_id=message_id, envid=submission.envid,
                ret=submission.ret,
            ))
        if len(works) == 1:
            return works[0]

        def work(connection: Connection) -> None:
            for one in works:
                one(connection)

        return work

    async def _success_reports(
        self, submission: Submission, recipients: list[Party], raw: bytes
    ) -> None:
        """RFC 3461 §5.2.2: a "delivered" DSN for local recipients that asked
        NOTIFY=SUCCESS, to the sender, here or at its operator (null sender)."""
        if submission.mail_from in ("", "<>") or not submission.rcpt_dsn:
            return
        asked = {a.lower(): d for a, d in submission.rcpt_dsn.items()
                 if wants(d.notify, "SUCCESS")}
        reports = [
            RecipientReport(p.address, asked[p.address].orcpt, "delivered",
                            "250 2.0.0 delivered to the mailbox")
            for p in recipients if p.is_local and p.address in asked
        ]
        if not reports:
            return
        report = build_dsn(
            reporting_mta=self._settings.server.hostname, sender=submission.mail_from,
            reports=reports, original=raw, ret=submission.ret, envid=submission.envid,
            arrival=time.time(),
        )
        try:
            await self.send_report(submission.mail_from, report)
        except Exception:  # the message itself is delivered; its report is best effort
            log.exception("success DSN to <%s> failed", submission.mail_from)

    async def _dispositions(
        self, submission: Submission, headers: Message, recipients: list[Party], raw: bytes,
        message_id: str | None,
    ) -> None:
        """RFC 8098 MDNs from the destination, as the Direct Project has it."""
        to = mdn.requested_to(headers, submission.mail_from)
        if to is None:
            return
        final = mdn.wants_final_delivery(headers)
        for party in recipients:
            if not party.is_local:
                continue
            for disposition in ("processed", "dispatched") if final else ("processed",):
                report = mdn.build_mdn(
                    reporting_ua=self._settings.server.hostname, to=to,
                    final_recipient=party.address, original=raw,
                    original_message_id=message_id, disposition=disposition,
                )
                try:
                    await self.send_report(to, report)
                except Exception:  # delivered already; the notification is best effort
                    log.exception("MDN to <%s> failed", to)

    async def send_report(self, address: str, report: bytes) -> None:
        """A report (DSN, MDN) from this server, null reverse-path (RFC 3464 §4):
        stored if ``address`` is local, else queued to its trusted operator."""
        if await self.deliver_report(address, report):
            return
        sender = await self.resolve(address)
        if sender.kind is not PartyKind.REMOTE or not sender.trusted or self._queue is None:
            log.info("report to <%s> dropped: neither local nor in the trust space", address)
            return
        queue_id = uuid.uuid4().hex[:16].upper()
        report = sign_report(self._dkim, report, self._settings.server.hostname,
                             self._settings.server.domains)
        await self._store.deliver([], b"", also=self._queue.enqueue_work(
            queue_id=queue_id, mail_from="", data=report,
            recipients=[OutboundRecipient(sender.address)],
        ))
        if self.on_queued is not None:
            self.on_queued()

    async def deliver_report(self, address: str, raw: bytes) -> bool:
        """Store a report (DSN) this server wrote into a local mailbox's INBOX."""
        if not self.is_local_domain(address):
            return False
        record = await self._directory.lookup(address)
        if record is None:
            return False
        await self._store.deliver([record.id], raw)
        return True

    # ---- helpers --------------------------------------------------------------

    async def _message_context(
        self, sender: SenderContext, recipients: list[Party], headers: Message,
        memo: dict[str, Party], raw: bytes = b"",
    ) -> tuple[MessageContext | None, Decision]:
        """Resolve what the message rules read: To/Cc parties, the thread the
        message replies to (looked up in the author's own mailbox only) and, for
        messages with attachments or MSSanté headers, the content facts."""
        addresses = [
            address for _, address in header_addresses(
                [str(v) for name in ("to", "cc") for v in headers.get_all(name, [])]
            ) if "@" in address
        ]
        if len(addresses) > MAX_HEADER_RECIPIENTS:
            return None, Reject(
                550, "5.5.3", f"Too many addresses in To/Cc (more than {MAX_HEADER_RECIPIENTS})",
                f"Trop d'adresses dans To/Cc (plus de {MAX_HEADER_RECIPIENTS})",
                "header_recipients_bounded",
            )
        author = sender.authenticated or sender.sender
        thread = None
        if author is not None and author.mailbox_id is not None:
            in_reply_to = _message_ids(str(headers.get("In-Reply-To", "")))
            found = await self._store.find_thread(
                author.mailbox_id, in_reply_to[0] if in_reply_to else None,
                _message_ids(" ".join(str(v) for v in headers.get_all("References", []))),
                participant=author.address if author.kind is PartyKind.PROFESSIONAL else None,
            )
            if found is not None:
                thread = ThreadState(found.id, found.status == "open", found.opened_by,
                                     found.participants)
        # To/Cc matter to the rules only where a patient or a thread is involved;
        # plain professional mail skips their look-ups.
        patient_involved = (author is not None and author.kind is PartyKind.PATIENT) or any(
            p.kind is PartyKind.PATIENT for p in recipients
        )
        header_parties = []
        if patient_involved or thread is not None:
            header_parties = [await self.resolve(a, memo) for a in dict.fromkeys(addresses)]
        rule_headers = _rule_headers(headers)
        content = None
        if raw and needs_content_check(headers):
            limits = self._settings.attachments
            if len(raw) <= INLINE_ANALYSIS_SIZE:
                content = analyse(raw, limits, rule_headers)
            else:
                content = await asyncio.to_thread(analyse, raw, limits, rule_headers)
        context = MessageContext(
            sender, tuple(recipients), rule_headers, tuple(header_parties),
            has_bcc=headers.get("Bcc") is not None, thread=thread, content=content,
        )
        return context, policies.ACCEPT

    async def _error_mdn(self, context: MessageContext, headers: Message) -> None:
        """A refused structured message whose sender asked for a notification
        (Disposition-Notification-To, RFC 8098 §2.1) gets an MDN ``processed/error``
        in its own mailbox, besides the SMTP refusal: practice software reads the
        outcome there. Only to the author's own local address (§2.1: never to a
        third party named by the message)."""
        author = context.author
        content = context.content
        asked = getaddresses([str(v) for v in headers.get_all("Disposition-Notification-To", [])])
        if (author is None or author.mailbox_id is None or content is None
                or content.structured is None or not asked):
            return
        if [address.lower() for _, address in asked] != [author.address.lower()]:
            return
        report = error_mdn(
            reporting_host=self._settings.server.hostname, to=author.address,
            final_recipients=[p.address for p in context.recipients],
            original_message_id=_clean_message_id(headers.get("Message-ID")),
            original_subject=decoded(str(headers.get("Subject", ""))),
            problems=content.structured.problems,
        )
        message_id = _clean_message_id(email.message_from_bytes(report).get("Message-ID"))
        await self._store.deliver([author.mailbox_id], report, message_id=message_id)
        log.info("mdn processed/error to=<%s>", author.address)
    async def _dkim_result(self, submission: Submission) -> str | None:
        """Intake from other servers: DKIM verified (RFC 6376 §6) on the bytes as
        received, for Authentication-Results (RFC 8601)."""
        if self._dkim is None:
            return None
        end = submission.raw.find(b"\r\n\r\n")
        head = submission.raw[:end] if end >= 0 else submission.raw
        if b"dkim-signature:" in head.lower():  # a signature to check: off the loop
            return await asyncio.to_thread(self._dkim.verify, submission.raw)
        return "dkim=none"  # nothing to verify: no thread hop

    async def _open_incoming(self, submission: Submission) -> bytes | str | Reject | None:
        """Relay door: DKIM, then S/MIME (decrypt with our operator key, verify, unwrap
        the Direct message/rfc822). Returns the message to deliver with its
        Authentication-Results (dkim and smime, RFC 8601 / RFC 7281) already in it, or
        only that field when there are no S/MIME keys, or why it is refused."""
        dkim = await self._dkim_result(submission)
        if self._incoming is None:
            return result_header(self.authserv_id, [dkim]) if dkim else None
        incoming = self._incoming
        trust = incoming.trust()
        others = [dkim] if dkim else []

        def open_() -> bytes | Refused:
            try:
                head, _ = smime_mime.split(smime_mime.canonical_head(submission.raw))
                kind, _ = smime_mime.content_type(head)
            except Exception:  # hostile framing: unprotect reports it
                kind = ""
            result = unprotect(submission.raw, incoming.identities, trust,
                               authserv_id=self.authserv_id, others=others)
            return refusal(result, kind) or result.message

        # Verification may fetch a CRL from a distribution point (blocking, bounded by
        # pki.crl_timeout): then never on the event loop.
        if len(submission.raw) <= INLINE_ANALYSIS_SIZE and not self._settings.pki.crl_fetch:
            opened = open_()
        else:
            opened = await asyncio.to_thread(open_)
        if isinstance(opened, Refused):
            return Reject(opened.code, opened.status, opened.reason,
                          "S/MIME : message chiffré illisible", "smime_readable")
        return opened

    def _stamp(
        self, submission: Submission, headers: Message, queue_id: str,
        auth_results: str | None = None,
    ) -> tuple[bytes, str | None]:
        """Prepend Received: (RFC 5321 §4.4) and, on submission, Message-ID:/Date:
        when missing (RFC 6409 §8.2, §8.3). The client's bytes stay verbatim."""
        added: list[str] = []
        body = submission.raw
        if submission.door is not Door.RELAY or self._incoming is None:
            # RFC 8601 §5 (on the relay door with S/MIME keys, unprotect did it)
            body = strip_ours(body, self.authserv_id)
        if auth_results:
            added.append(auth_results)
        message_id = headers.get("Message-ID")
        if submission.door is Door.SUBMISSION:
            if message_id is None:
                message_id = f"<{uuid.uuid4().hex}@{self._settings.server.hostname}>"
                added.append(f"Message-ID: {message_id}")
            if headers.get("Date") is None:
                added.append(f"Date: {email.utils.format_datetime(dt.datetime.now(dt.UTC))}")
        added.insert(0, self._received(submission, queue_id))
        prefix = "".join(line + "\r\n" for line in added).encode("utf-8")
        return prefix + body, _clean_message_id(message_id)

    def _received(self, submission: Submission, queue_id: str) -> str:
        helo = _UNSAFE_IN_HEADER.sub("?", submission.helo)[:255] or "unknown"
        tls = ""
        if submission.tls:
            tls = f"\r\n\t(using {_UNSAFE_IN_HEADER.sub('_', submission.tls)})"
        single = ""
        if len(submission.rcpt_tos) == 1:
            single = f"\r\n\tfor <{_UNSAFE_IN_HEADER.sub('?', submission.rcpt_tos[0])}>"
        when = email.utils.format_datetime(dt.datetime.now(dt.UTC))
        return (
            f"Received: from {helo} ([{submission.peer_ip}]){tls}\r\n"
            f"\tby {self._settings.server.hostname} with {submission.protocol} id {queue_id}"
            f"{single}; {when}"
        )

    def _logged(
        self, decision: Decision, door: Door, mail_from: str, rcpt: str, queue_id: str = ""
    ) -> Decision:
        if isinstance(decision, Reject):
            log.info(
                "refused %srule=%s door=%s from=<%s> to=<%s> reply=%d %s",
                f"id={queue_id} " if queue_id else "", decision.rule, door.value,
                mail_from, rcpt, decision.code, decision.status,
            )
        return decision


def parse_headers(raw: bytes) -> Message:
    """The header block only (RFC 5322 §2.1: it ends at the first empty line): the
    body is not handed to the parser at all. Read as the email package's compat32
    parser reads it (``mime.header_block``)."""
    return parse_header_block(raw)


_RULE_HEADER_NAMES = frozenset(RULE_HEADERS)


def _rule_headers(headers: Message) -> dict[str, tuple[str, ...]]:
    """The values of each rule header present, in RULE_HEADERS order: what
    ``get_all`` gives for each name, read in one pass over the fields instead of
    thirteen (tests/test_content_fast.py)."""
    found: dict[str, list[str]] = {}
    for name, value in headers.items():  # values as get_all returns them
        key = name.lower()
        if key in _RULE_HEADER_NAMES:
            found.setdefault(key, []).append(str(value))
    return {name: tuple(found[name]) for name in RULE_HEADERS if name in found}


_MESSAGE_ID = re.compile(r"<[^<>\s]{1,990}>")


def _message_ids(text: str) -> list[str]:
    """The ``<id>`` tokens of In-Reply-To / References (RFC 5322 §3.6.4), bounded."""
    return _MESSAGE_ID.findall(text)[:200]


def _clean_message_id(value: str | None) -> str | None:
    """The ``<id>`` of a Message-ID header, as replies will quote it."""
    if value is None:
        return None
    ids = _message_ids(str(value))
    if ids:
        return ids[0]
    value = " ".join(str(value).split())
    return value[:998] or None
