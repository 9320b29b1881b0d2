"""aiosmtpd hooks: the SMTP session's questions, answered by the pipeline.

Policy stays out of here (DESIGN.md): this module turns envelope events into
pipeline calls and pipeline decisions into SMTP replies.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography import x509

from mailserver.pipeline import Pipeline, RecipientDsn, Submission, TlsPeer
from mailserver.settings import SmtpSettings
from mailserver.smtp.dsn import check_mail_params, check_rcpt_params
from policies import Reject
from policies.context import Door

log = logging.getLogger("mailserver.smtp")

# RFC 5321 §2.3.8: lines end with CRLF only. A bare LF or bare CR inside DATA is
# how SMTP smuggling hides a second message (CVE-2023-51764 family): refuse it.

REPLY_BARE_LINE_END = (
    "550 5.6.0 Message refused: bare CR or LF in DATA; lines must end with CRLF "
    "(RFC 5321 §2.3.8)"
)
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients (RFC 5321 §4.5.3.1.8)"
REPLY_INTERNAL = "451 4.3.0 Temporary server error, please try again later"


def has_bare_line_end(data: bytes) -> bool:
    # Every LF preceded by CR and every CR followed by LF <=> the three counts agree
    # (C-speed counting rather than a look-behind regular expression).
    pairs = data.count(b"\r\n")
    return data.count(b"\n") != pairs or data.count(b"\r") != pairs


class SmtpHandler:
    def __init__(self, pipeline: Pipeline, settings: SmtpSettings, door: Door) -> None:
        self._pipeline = pipeline
        self._settings = settings
        self.door = door

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        keywords = [line[4:] for line in responses[1:]]
        if self.door is Door.RELAY:
            keywords = [k for k in keywords if not k.startswith("AUTH")]  # no AUTH on an MX
        keywords = [k for k in keywords if k != "HELP"]
        keywords += ["PIPELINING", "ENHANCEDSTATUSCODES", "DSN"]  # RFC 2920, 2034, 3461
        lines = [responses[0][4:], *keywords]
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.resolved = {}  # parties looked up in this transaction, reused after DATA
        params = dict(getattr(server, "dsn_params", {}))
        refusal = check_mail_params(params, session.extended_smtp)
        if refusal:
            return refusal
        peer = self._peer(server)
        decision = await self._pipeline.check_sender(
            self.door, session.auth_data, address, envelope.resolved, peer
        )
        if isinstance(decision, Reject):
            return decision.smtp_reply()
        envelope.peer = peer
        envelope.dsn_ret = params.get("RET", "").upper() or None
        envelope.dsn_envid = params.get("ENVID") or None
        envelope.rcpt_dsn = {}
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self._settings.max_recipients:
            return REPLY_TOO_MANY_RECIPIENTS
        params = dict(getattr(server, "dsn_params", {}))
        refusal = check_rcpt_params(params, session.extended_smtp)
        if refusal:
            return refusal
        decision = await self._pipeline.check_recipient(
            self.door, session.auth_data, envelope.mail_from, address, envelope.resolved
        )
        if isinstance(decision, Reject):
            return decision.smtp_reply()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        if params:
            envelope.rcpt_dsn[address] = RecipientDsn(
                params.get("NOTIFY", "").upper() or None, params.get("ORCPT") or None
            )
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content
        if has_bare_line_end(raw):
            log.warning("smtp %s refused: bare CR/LF in DATA", server.peer_ip)
            return REPLY_BARE_LINE_END
        # RFC 3848 / RFC 6531 §3.7.4 "with" keywords: ESMTP, ESMTPS, ESMTPSA, UTF8SMTPSA…
        if envelope.smtp_utf8:
            protocol = "UTF8SMTP"
        else:
            protocol = "ESMTP" if session.extended_smtp else "SMTP"
        protocol += ("S" if server.in_tls else "") + ("A" if session.authenticated else "")
        submission = Submission(
            door=self.door,
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            authenticated=session.auth_data if session.authenticated else None,
            peer_ip=server.peer_ip,
            helo=session.host_name or "",
            tls=server.tls_description(),
            protocol=protocol,
            resolved=getattr(envelope, "resolved", {}),
            peer=getattr(envelope, "peer", None),
            ret=getattr(envelope, "dsn_ret", None),
            envid=getattr(envelope, "dsn_envid", None),
            rcpt_dsn=getattr(envelope, "rcpt_dsn", {}),
        )
        outcome = await self._pipeline.submit(submission)
        if isinstance(outcome.decision, Reject):
            return outcome.decision.smtp_reply()
        return f"250 2.0.0 Ok: queued as {outcome.queue_id}"

    def _peer(self, server: Any) -> TlsPeer | None:
        """The relay client's TLS identity (port 25 only)."""
        if self.door is not Door.RELAY:
            return None
        der = server.peer_certificate_der()
        subject = None
        if der:
            try:
                subject = x509.load_der_x509_certificate(der).subject
            except ValueError:
                subject = None
        return TlsPeer(bool(server.in_tls), subject)

    async def handle_exception(self, error: Exception) -> str:
        log.exception("smtp session error: %s", type(error).__name__)
        return REPLY_INTERNAL
