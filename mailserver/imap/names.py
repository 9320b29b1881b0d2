"""Mailbox names: validation, INBOX, LIST patterns (RFC 9051 §5.1, §6.3.9).

Folders are rows keyed by (mailbox id, name): a name never reaches a file path,
and every look-up is scoped to the logged-in mailbox, so no name can reach
another account. Names are still held to a strict shape so that clients and
tools see a sane tree.
"""

from __future__ import annotations

import re

DELIMITER = "/"
MAX_NAME_BYTES = 512
MAX_PART_BYTES = 200
MAX_DEPTH = 16


class BadName(ValueError):
    """A mailbox name we refuse; the message says why."""


def canonical(name: str) -> str:
    """INBOX is case-insensitive (RFC 9051 §5.1), also as a parent."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX" + DELIMITER:
        return "INBOX" + name[5:]
    return name


def check(name: str) -> str:
    """The canonical name, or BadName."""
    if not name:
        raise BadName("empty mailbox name")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise BadName(f"mailbox name longer than {MAX_NAME_BYTES} bytes")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise BadName("control characters in mailbox name")
    if "%" in name or "*" in name:
        raise BadName("'%' and '*' are wildcards, not allowed in mailbox names")
    if name.startswith(("#", "~")):
        raise BadName("mailbox names cannot start with '#' or '~'")
    parts = name.split(DELIMITER)
    if len(parts) > MAX_DEPTH:
        raise BadName(f"more than {MAX_DEPTH} hierarchy levels")
    for part in parts:
        if not part:
            raise BadName("empty hierarchy level (leading, trailing or double '/')")
        if part in (".", ".."):
            raise BadName("'.' and '..' are not mailbox names")
        if part != part.strip():
            raise BadName("hierarchy levels cannot start or end with spaces")
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise BadName(f"hierarchy level longer than {MAX_PART_BYTES} bytes")
    return canonical(name)


def parents(name: str) -> list[str]:
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: ``*`` matches anything, ``%`` anything but the delimiter."""
    full = reference + pattern if reference else pattern
    if full[:5].upper() == "INBOX":  # "inbox*" matches INBOX: its name is case-blind
        full = "INBOX" + full[5:]
    out = []
    for char in full:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.S)
