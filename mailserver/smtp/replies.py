"""Enhanced status codes on every reply (RFC 2034 §3, RFC 3463).

Our own replies carry their code already. aiosmtpd's built-in replies
("503 Error: need MAIL command") do not: ``with_enhanced_code`` gives them the
RFC 3463 code their basic code implies.
"""

from __future__ import annotations

import re

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?:\s|$)")
_REPLY = re.compile(r"^(\d{3})([ -])(.*)$", re.DOTALL)

# Basic reply code -> enhanced code (RFC 3463 §3, RFC 4954 §6).
DEFAULT_ENHANCED = {
    "211": "2.0.0", "214": "2.0.0", "220": "2.0.0", "221": "2.0.0", "235": "2.7.0",
    "250": "2.0.0", "251": "2.1.5", "252": "2.0.0",
    "421": "4.3.0", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "534": "5.7.9", "535": "5.7.8", "538": "5.7.11",
    "550": "5.0.0", "551": "5.1.6", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}

# aiosmtpd texts that deserve a clearer reason.
REWORDED = {
    "552 Error: Too much mail data": "552 5.3.4 Message too big for this server",
    "500 Line too long (see RFC5321 4.5.3.1.6)":
        "500 5.5.2 Line too long: at most 998 characters per line (RFC 5321 §4.5.3.1.6)",
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Message size exceeds the fixed maximum message size",
}


def with_enhanced_code(reply: str) -> str:
    """``reply`` with an enhanced status code inserted when it has none."""
    if reply in REWORDED:
        return REWORDED[reply]
    if _HAS_ENHANCED.match(reply):
        return reply
    match = _REPLY.match(reply)
    if match is None:
        return reply
    code, separator, text = match.groups()
    enhanced = DEFAULT_ENHANCED.get(code)
    if enhanced is None:  # 334 / 354 intermediate replies carry none
        return reply
    return f"{code}{separator}{enhanced} {text}"
