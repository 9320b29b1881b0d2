"""RFC 5322 §3.4 address lists, parsed leniently into IMAP address structures.

An `Address` is the quadruple of RFC 9051 §7.5.2 (addr-name, addr-adl, addr-mailbox,
addr-host). Group syntax yields a start marker (NIL NIL "group" NIL) and an end marker
(NIL NIL NIL NIL). Values stay raw bytes: RFC 2047 encoded-words are kept encoded, quoted
strings lose their quotes and escapes. A missing local part or domain gets UW/Dovecot's
placeholders rather than NIL, since a NIL host means "group marker" to the client.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["MISSING_HOST", "MISSING_MAILBOX", "Address", "parse_address_list"]

MISSING_HOST = b".MISSING-HOST-NAME."
MISSING_MAILBOX = b"MISSING_MAILBOX"
_MAX_ADDRESSES = 10_000


class Address(NamedTuple):
    name: bytes | None
    adl: bytes | None
    mailbox: bytes | None
    host: bytes | None

    @property
    def is_group_marker(self) -> bool:
        return self.host is None


GROUP_END = Address(None, None, None, None)

# Token kinds
_ATOM, _QS, _COMMENT, _SPECIAL, _DLIT = range(5)

_TOKEN = re.compile(
    rb'[ \t\r\n]+|"((?:[^"\\]|\\.)*)"?|(\[[^\]]*\]?)|([<>@,;:.])|([^ \t\r\n"()<>@,;:.\[\]]+)|(\()|(.)',
    re.DOTALL,
)
_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def _comment_end(value: bytes, pos: int) -> int:
    """Index after the comment opened at `pos` (nested, RFC 5322 §3.2.2), or len(value)."""
    depth = 0
    i = pos
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x5C:  # backslash: quoted-pair
            i += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _tokenize(value: bytes) -> list[tuple[int, bytes]]:
    toks: list[tuple[int, bytes]] = []
    pos = 0
    n = len(value)
    while pos < n:
        m = _TOKEN.match(value, pos)
        if m is None:  # pragma: no cover - the last alternative matches any byte
            break
        if m.group(5) is not None:  # comment
            end = _comment_end(value, pos)
            inner = value[pos + 1 : end - 1] if value[end - 1 : end] == b")" else value[pos + 1 :]
            toks.append((_COMMENT, _UNESCAPE.sub(rb"\1", inner).strip()))
            pos = end
            continue
        if m.group(1) is not None:
            toks.append((_QS, _UNESCAPE.sub(rb"\1", m.group(1))))
        elif m.group(2) is not None:
            toks.append((_DLIT, m.group(2)))
        elif m.group(3) is not None:
            toks.append((_SPECIAL, m.group(3)))
        elif m.group(4) is not None:
            toks.append((_ATOM, m.group(4)))
        elif m.group(6) is not None:
            toks.append((_ATOM, m.group(6)))
        pos = m.end()
    return toks


def _phrase(words: list[tuple[int, bytes]]) -> bytes:
    """Display name / group name: words joined by single spaces (obs-phrase dots kept)."""
    out = b""
    for kind, val in words:
        if kind == _SPECIAL and val == b".":
            out += b"."
        elif out:
            out += b" " + val
        else:
            out = val
    return out


def _addr_spec(words: list[tuple[int, bytes]]) -> tuple[bytes, bytes] | None:
    """local-part "@" domain from the tokens of an addr-spec (comments removed)."""
    words = [w for w in words if w[0] != _COMMENT]
    if not words:
        return None
    at = -1
    for i in range(len(words) - 1, -1, -1):
        if words[i] == (_SPECIAL, b"@"):
            at = i
            break
    if at < 0:
        local = b"".join(v for _, v in words)
        return (local or MISSING_MAILBOX, MISSING_HOST)
    local = b"".join(v for _, v in words[:at])
    domain = b"".join(v for _, v in words[at + 1 :])
    return (local or MISSING_MAILBOX, domain or MISSING_HOST)


def parse_address_list(value: bytes) -> list[Address]:
    """Parse an (unfolded) address-list header value. Never raises; bounded output."""
    toks = _tokenize(value)
    out: list[Address] = []
    in_group = False
    words: list[tuple[int, bytes]] = []
    comment: bytes | None = None
    angle: tuple[bytes | None, bytes, bytes] | None = None

    def flush() -> None:
        nonlocal words, comment, angle
        if angle is not None:
            phrase = _phrase([w for w in words if w[0] != _COMMENT])
            name = phrase or comment or None
            out.append(Address(name, angle[0], angle[1], angle[2]))
        else:
            spec = _addr_spec(words)
            if spec is not None:
                out.append(Address(comment or None, None, spec[0], spec[1]))
        words, comment, angle = [], None, None

    i = 0
    n = len(toks)
    while i < n and len(out) < _MAX_ADDRESSES:
        kind, val = toks[i]
        i += 1
        if kind == _COMMENT:
            comment = val or comment
        elif kind != _SPECIAL:
            if angle is None:
                words.append((kind, val))
        elif val == b"<":
            inner: list[tuple[int, bytes]] = []
            while i < n and toks[i] != (_SPECIAL, b">"):
                if toks[i][0] != _COMMENT:
                    inner.append(toks[i])
                i += 1
            i += 1  # the ">"
            route: bytes | None = None
            if inner and inner[0] == (_SPECIAL, b"@"):  # obs-route (RFC 5322 §4.4)
                for j, tok in enumerate(inner):
                    if tok == (_SPECIAL, b":"):
                        route = b"".join(v for _, v in inner[:j])
                        inner = inner[j + 1 :]
                        break
            spec = _addr_spec(inner)
            if spec is not None:
                angle = (route, spec[0], spec[1])
            else:  # "<>" (e.g. a null return path): keep a recognisable empty address
                angle = (route, MISSING_MAILBOX, MISSING_HOST)
        elif val == b":" and not in_group and angle is None:
            out.append(Address(None, None, _phrase([w for w in words if w[0] != _COMMENT]), None))
            in_group = True
            words, comment = [], None
        elif val == b";" and in_group:
            flush()
            out.append(GROUP_END)
            in_group = False
        elif val == b",":
            flush()
        elif angle is None:
            words.append((kind, val))
    flush()
    if in_group:
        out.append(GROUP_END)
    return out
