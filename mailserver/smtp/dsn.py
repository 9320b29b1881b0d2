"""The DSN extension's parameters (RFC 3461 §4), checked before they are kept."""

from __future__ import annotations

import re

# RFC 3461 §4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=".
_XTEXT = re.compile(r"^(?:[!-*,-<>-~]|\+[0-9A-F]{2})*$")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})
MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500  # RFC 3461 §4.2


def _bad(text: str) -> str:
    return f"501 5.5.4 {text}"


def check_mail_params(params: dict[str, str], extended: bool) -> str | None:
    if not params:
        return None
    if not extended:
        return _bad("DSN parameters need EHLO (RFC 3461)")
    if "DUPLICATE" in params:
        return _bad(f"{params['DUPLICATE']} given twice (RFC 3461 §4)")
    if "RET" in params and params["RET"].upper() not in ("FULL", "HDRS"):
        return _bad("RET must be FULL or HDRS (RFC 3461 §4.3)")
    envid = params.get("ENVID")
    if envid is not None and (len(envid) > MAX_ENVID or not _XTEXT.match(envid)):
        return _bad("ENVID must be xtext of at most 100 characters (RFC 3461 §4.4)")
    return None


def check_rcpt_params(params: dict[str, str], extended: bool) -> str | None:
    if not params:
        return None
    if not extended:
        return _bad("DSN parameters need EHLO (RFC 3461)")
    if "DUPLICATE" in params:
        return _bad(f"{params['DUPLICATE']} given twice (RFC 3461 §4)")
    notify = params.get("NOTIFY")
    if notify is not None:
        values = notify.upper().split(",")
        listed = set(values) <= _NOTIFY and len(set(values)) == len(values)
        if not (values == ["NEVER"] or listed):
            return _bad("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1)")
    orcpt = params.get("ORCPT")
    if orcpt is not None:
        kind, semicolon, address = orcpt.partition(";")
        if (not semicolon or not kind or len(orcpt) > MAX_ORCPT
                or not re.match(r"^[A-Za-z0-9-]+$", kind) or not _XTEXT.match(address)):
            return _bad("ORCPT must be addr-type;xtext (RFC 3461 §4.2)")
    return None
