"""Message Disposition Notifications (RFC 8098) sent by the receiving server,
as the Direct Project's implementation guide has the destination do:
``processed`` once the message is accepted for the recipient, ``dispatched``
when the sender also asked to hear of final delivery
(``Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=…``)
and the message reached the mailbox itself."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from email.message import Message
from email.utils import getaddresses

from mailserver.health.mdn import error_mdn
from mailserver.health.mssante import decoded
from mailserver.queue.dsn import headers_of
from policies.context import Finding, MessageContext
from policies.decision import Reject

log = logging.getLogger("mailserver.queue")

FINAL_DELIVERY_OPTION = "x-direct-final-destination-delivery"


def _clean(value: str) -> str:
    return re.sub(r"[\r\n\x00]", " ", value).encode("ascii", "replace").decode()[:990]


def requested_to(headers: Message, mail_from: str) -> str | None:
    """Where to send the MDN, or None. RFC 8098 §2.1, §6.2: only to the envelope
    sender, so that a forged Disposition-Notification-To turns no server into a
    reflector."""
    value = headers.get("Disposition-Notification-To")
    if value is None or not mail_from or mail_from == "<>":
        return None
    addresses = [a for _, a in getaddresses([str(value)]) if "@" in a]
    if len(addresses) != 1 or addresses[0].lower() != mail_from.lower():
        return None
    return mail_from


def wants_final_delivery(headers: Message) -> bool:
    """RFC 8098 §2.2 parameter ``importance=value[,value]``: "optional,true"."""
    options = str(headers.get("Disposition-Notification-Options", ""))
    for parameter in options.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == FINAL_DELIVERY_OPTION:
            return "true" in [v.strip().lower() for v in value.split(",")]
    return False


def build_mdn(
    *, reporting_ua: str, to: str, final_recipient: str, original: bytes,
    original_message_id: str | None, disposition: str,
) -> bytes:
    """multipart/report; report-type=disposition-notification (RFC 8098 §3)."""
    boundary = f"=_mdn_{uuid.uuid4().hex}"
    now = dt.datetime.now(dt.UTC)
    human = (
        f"The message sent to <{_clean(final_recipient)}> was {disposition} by "
        f"{reporting_ua}.\r\nLe message envoyé à <{_clean(final_recipient)}> a été "
        + ("pris en charge" if disposition == "processed" else "remis à sa boîte")
        + f" par {reporting_ua}.\r\n"
    )
    fields = [f"Reporting-UA: {reporting_ua}; MSS",
              f"Final-Recipient: rfc822; {_clean(final_recipient)}"]
    if original_message_id:
        fields.append(f"Original-Message-ID: {_clean(original_message_id)}")
    fields.append(f"Disposition: automatic-action/MDN-sent-automatically; {disposition}")
    head = (
        f"From: Mail System <MAILER-DAEMON@{reporting_ua}>\r\n"
        f"To: <{_clean(to)}>\r\n"
        f"Subject: Disposition notification ({disposition})\r\n"
        f"Date: {email.utils.format_datetime(now)}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{reporting_ua}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=disposition-notification;\r\n"
        f'\tboundary="{boundary}"\r\n\r\n'
    )
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{human}\r\n"
        f"--{boundary}\r\nContent-Type: message/disposition-notification\r\n\r\n"
        + "\r\n".join(fields) + "\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    )
    return (head + body).encode("utf-8") + headers_of(original) + f"\r\n--{boundary}--\r\n".encode()


def _auto_submitted(headers: Message) -> bool:
    # RFC 3834 §2 / RFC 8098 §2.1: never answer an automatic message with another.
    value = str(headers.get("Auto-Submitted", "no")).split(";")[0].strip().lower()
    return value != "no"


def refusal_notice(
    *, mail_from: str, headers: Message, final_recipients: Sequence[str],
    problems: Sequence[Finding], decision: Reject, reporting_host: str,
) -> tuple[str, bytes] | None:
    """A message from another operator refused after DATA, whose sender asked for a
    notification: ``(address, MDN processed/error)`` to send back through the queue
    (RFC 8098 §3.2.6 ``Error:`` fields, ``<code>^<label>`` as MSSanté software reads
    them: the structured message's problems, else the refusal's enhanced status and
    reason). Asked means a Disposition-Notification-To naming the envelope sender
    (§2.1, never a third party), or the Direct Project's final-delivery option, which
    answers the envelope sender. ``None`` when nothing is owed."""
    if not decision.permanent:
        return None  # 4xx: the sender's server tries again; nothing is final yet
    if not mail_from or mail_from == "<>" or _auto_submitted(headers):
        return None
    if headers.get("Disposition-Notification-To") is not None:
        to = requested_to(headers, mail_from)
    else:
        to = mail_from if wants_final_delivery(headers) else None
    if to is None:
        return None
    findings = list(problems) or [Finding(decision.status, decision.reason_en,
                                          decision.reason_fr)]
    message_id = str(headers.get("Message-ID", "")).strip() or None
    report = error_mdn(
        reporting_host=reporting_host, to=to, final_recipients=final_recipients,
        original_message_id=message_id, original_subject=decoded(str(headers.get("Subject", ""))),
        problems=findings,
    )
    return to, report


async def send_refusal_notice(
    send: Callable[[str, bytes], Awaitable[None]], mail_from: str,
    rcpt_tos: Sequence[str], headers: Message, context: MessageContext, decision: Reject,
    reporting_host: str,
) -> None:
    """``refusal_notice`` sent with ``send`` (the pipeline's ``send_report``: queued to
    the sender's operator, DKIM-signed); best effort, never an error for the session."""
    structured = context.content.structured if context.content is not None else None
    try:
        notice = refusal_notice(
            mail_from=mail_from, headers=headers, final_recipients=rcpt_tos,
            problems=structured.problems if structured is not None else (),
            decision=decision, reporting_host=reporting_host,
        )
        if notice is not None:
            await send(*notice)
            log.info("mdn processed/error to=<%s> (refused from another operator)", notice[0])
    except Exception:
        log.exception("MDN processed/error to <%s> failed", mail_from)
