"""The MDN that tells a sender its structured message was refused (RFC 8098):
a multipart/report (RFC 6522) in the form of the ANS "Transmission au LPS de
documents CDA provenant d'un courriel MSSanté" guide (§ Structure du MDN):

- Subject ``[KO Intégration système ! ] <original subject>``;
- ``Disposition: automatic-action/MDN-sent-automatically; processed/Error:
  <code>^<label>``, the code from the guide's tables: 903 when the documents carry
  no INS, else 207 "Application error" (HL7 table messageErrorCondition, the
  detail in the label, which starts with our own problem code);
- one RFC 8098 §3.2.7 ``Error:`` field per problem, ``<our code>^<label>``."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from email.header import Header
from email.utils import formatdate

from policies.context import Finding


def _clean(text: str) -> str:
    """One ASCII header line (RFC 8098 §3.1.1): no CR/LF, accents dropped, no ``^``
    inside a label."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(ascii_text.replace("^", " ").split())[:400]


def error_field(finding: Finding) -> str:
    return f"{_clean(finding.code)}^{_clean(finding.fr)}"


# The guide's application error 903 "INS non présent dans le document"; any other
# refusal is 207 "Application error", detailed in the label.
_NO_INS = frozenset({"XDM-PATIENT", "CDA-PATIENT"})


def disposition_error(finding: Finding) -> str:
    """``<code>^<label>`` for the Disposition field, in the guide's codes."""
    code = "903" if finding.code in _NO_INS else "207"
    return f"{code}^{_clean(finding.code)} {_clean(finding.fr)}"


def error_mdn(
    *, reporting_host: str, to: str, final_recipients: Sequence[str],
    original_message_id: str | None, original_subject: str, problems: Sequence[Finding],
) -> bytes:
    """The whole MDN message, CRLF line ends."""
    boundary = f"mdn-{uuid.uuid4().hex}"
    lines = "\r\n".join(f"- {p.code} : {p.fr} / {p.en}" for p in problems)
    human = ("Votre message structuré a été refusé / Your structured message was refused:\r\n"
             f"{lines}\r\n")
    fields = [f"Reporting-UA: {_clean(reporting_host)}; mss-server"]
    fields += [f"Final-Recipient: rfc822;{_clean(r)}" for r in final_recipients[:100]]
    if original_message_id:
        fields.append(f"Original-Message-ID: {_clean(original_message_id)}")
    fields.append("Disposition: automatic-action/MDN-sent-automatically; processed/Error: "
                  + disposition_error(problems[0]) if problems else
                  "Disposition: automatic-action/MDN-sent-automatically; processed/error")
    fields += [f"Error: {error_field(p)}" for p in problems[:20]]
    subject = str(Header(f"[KO Intégration système ! ] {original_subject}"[:300],
                         "utf-8").encode())
    head = [
        f"From: MAILER-DAEMON@{reporting_host}", f"To: {_clean(to)}", f"Subject: {subject}",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: <{uuid.uuid4().hex}@{reporting_host}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5: never answered in turn
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=disposition-notification;"
        f' boundary="{boundary}"',
    ]
    body = [
        f"--{boundary}", "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit", "", human,
        f"--{boundary}", "Content-Type: message/disposition-notification", "",
        "\r\n".join(fields), "", f"--{boundary}--", "",
    ]
    return "\r\n".join([*head, "", *body]).encode("utf-8")
