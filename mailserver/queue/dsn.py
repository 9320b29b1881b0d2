"""Delivery Status Notifications (RFC 3464), and the DSN parameters of the
SMTP extension (RFC 3461) they honour."""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
import re
import uuid
from dataclasses import dataclass

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
MAX_ORIGINAL_IN_DSN = 1024 * 1024  # a bigger original is returned as headers only


@dataclass(frozen=True)
class RecipientReport:
    recipient: str
    orcpt: str | None
    action: str  # "failed", "delayed" or "delivered" (RFC 3464 §2.3.3)
    reply: str  # the last SMTP reply, "550 5.1.1 No such user"
    remote_mta: str = ""

    @property
    def status(self) -> str:
        """RFC 3464 §2.3.4 / RFC 3463: the enhanced code of the reply, or the class."""
        code, _, text = self.reply.partition(" ")
        found = _ENHANCED.match(text)
        if found:
            return found.group(0)
        fallback = "5.0.0" if self.action == "failed" else "4.0.0"
        return f"{code[0]}.0.0" if code[:1] in ("4", "5") else fallback


def wants(notify: str | None, kind: str) -> bool:
    """RFC 3461 §4.1: without NOTIFY, failures are reported, and so are delays."""
    if notify is None:
        return kind in ("FAILURE", "DELAY")
    return kind in notify.upper().split(",")


def _xtext_decode(value: str) -> str:
    # RFC 3461 §4: "+" followed by two upper-case hex digits.
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def _clean(value: str) -> str:
    """One line of US-ASCII (message/delivery-status is ASCII, RFC 3464 §2.1.2)."""
    return re.sub(r"[\r\n\x00]", " ", value).encode("ascii", "replace").decode()[:990]


def headers_of(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 2]


def build_dsn(
    *, reporting_mta: str, sender: str, reports: list[RecipientReport], original: bytes,
    ret: str | None, envid: str | None, arrival: float, will_retry_until: float | None = None,
) -> bytes:
    """A multipart/report; report-type=delivery-status message (RFC 3464 §2)."""
    now = dt.datetime.now(dt.UTC)
    delayed = all(r.action == "delayed" for r in reports)
    delivered = all(r.action == "delivered" for r in reports)
    boundary = f"=_dsn_{uuid.uuid4().hex}"
    if delivered:
        subject = "Successful Mail Delivery Report / Accusé de remise"
        human = (
            "This is the mail system at {mta}.\r\n\r\nYour message was delivered to the"
            " recipients below, as you asked (RFC 3461 NOTIFY=SUCCESS).\r\n\r\n"
            "Votre message a été remis aux destinataires ci-dessous.\r\n\r\n"
        )
    elif delayed:
        subject = "Delayed Mail (still being retried) / Message retardé"
        human = (
            "This is the mail system at {mta}.\r\n\r\nYour message could not be delivered yet"
            " to the recipients below; delivery is still being attempted.\r\n\r\n"
            "Votre message n'a pas encore pu être remis ; de nouvelles tentatives auront"
            " lieu.\r\n\r\n"
        )
    else:
        subject = "Undelivered Mail Returned to Sender / Message non remis"
        human = (
            "This is the mail system at {mta}.\r\n\r\nYour message could not be delivered"
            " to the recipients below.\r\n\r\nVotre message n'a pas pu être remis aux"
            " destinataires ci-dessous.\r\n\r\n"
        )
    human = human.format(mta=reporting_mta) + "".join(
        f"<{r.recipient}>: {' '.join(r.reply.split())}\r\n" for r in reports
    )
    per_message = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:  # RFC 3464 §2.2.1, decoded from the xtext of RFC 3461 §4.4
        per_message.append(f"Original-Envelope-Id: {_clean(_xtext_decode(envid))}")
    per_message.append(
        "Arrival-Date: " + email.utils.format_datetime(dt.datetime.fromtimestamp(arrival, dt.UTC))
    )
    blocks = ["\r\n".join(per_message)]
    for report in reports:
        lines = []
        if report.orcpt:
            kind, _, address = report.orcpt.partition(";")
            lines.append(f"Original-Recipient: {_clean(kind)};{_clean(_xtext_decode(address))}")
        lines += [
            f"Final-Recipient: rfc822; {_clean(report.recipient)}",
            f"Action: {report.action}",
            f"Status: {report.status}",
        ]
        if report.remote_mta:
            lines.append(f"Remote-MTA: dns; {_clean(report.remote_mta)}")
        if report.reply:
            lines.append(f"Diagnostic-Code: smtp; {_clean(report.reply)}")
        lines.append(f"Last-Attempt-Date: {email.utils.format_datetime(now)}")
        if will_retry_until is not None and report.action == "delayed":
            lines.append("Will-Retry-Until: " + email.utils.format_datetime(
                dt.datetime.fromtimestamp(will_retry_until, dt.UTC)))
        blocks.append("\r\n".join(lines))
    full = ((ret or "").upper() == "FULL" and not delayed and not delivered
            and len(original) <= MAX_ORIGINAL_IN_DSN)
    returned_type = "message/rfc822" if full else "text/rfc822-headers"
    returned = original if full else headers_of(original)
    head = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: <{_clean(sender)}>\r\n"
        f"Subject: {email.header.Header(subject, 'utf-8').encode()}\r\n"
        f"Date: {email.utils.format_datetime(now)}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834 §5
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"'
        "\r\n\r\n"
    )
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{human}\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        + "\r\n\r\n".join(blocks) + "\r\n\r\n"
        f"--{boundary}\r\nContent-Type: {returned_type}\r\n\r\n"
    )
    return (head + body).encode("utf-8") + returned + f"\r\n--{boundary}--\r\n".encode()


