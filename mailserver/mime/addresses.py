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
    rb'[ \t\r\n]+|"((?:[^"\\]|\\.)*)"?|(\[[^\]]*\]?)|([<>@,;:.])'
    rb'|([^ \t\r\n"()<>@,;:.\[\]]+)|(\()|(.)',
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


class _Tok(NamedTuple):
    kind: int
    val: bytes
    spaced: bool  # whitespace came before it (phrase words keep the sender's spacing)


def _tokenize(value: bytes) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(value)
    spaced = False
    while pos < n:
        m = _TOKEN.match(value, pos)
        if m is None:  # pragma: no cover - the last alternative matches any byte
            break
        if m.lastindex is None:  # whitespace
            spaced = True
            pos = m.end()
            continue
        if m.group(5) is not None:  # comment
            end = _comment_end(value, pos)
            inner = value[pos + 1 : end - 1] if value[end - 1 : end] == b")" else value[pos + 1 :]
            toks.append(_Tok(_COMMENT, _UNESCAPE.sub(rb"\1", inner).strip(), spaced))
            pos = end
            spaced = False
            continue
        if m.group(1) is not None:
            toks.append(_Tok(_QS, _UNESCAPE.sub(rb"\1", m.group(1)), spaced))
        elif m.group(2) is not None:
            toks.append(_Tok(_DLIT, m.group(2), spaced))
        elif m.group(3) is not None:
            toks.append(_Tok(_SPECIAL, m.group(3), spaced))
        elif m.group(4) is not None:
            toks.append(_Tok(_ATOM, m.group(4), spaced))
        elif m.group(6) is not None:
            toks.append(_Tok(_ATOM, m.group(6), spaced))
        pos = m.end()
        spaced = False
    return toks


def _is(tok: _Tok, special: bytes) -> bool:
    return tok.kind == _SPECIAL and tok.val == special


def _phrase(words: list[_Tok]) -> bytes:
    """Display name / group name: words joined by one space where the sender put whitespace."""
    out = b""
    for tok in words:
        if tok.kind == _COMMENT:
            continue
        if out and tok.spaced:
            out += b" " + tok.val
        else:
            out += tok.val
    return out


def _addr_spec(words: list[_Tok]) -> tuple[bytes, bytes] | None:
    """local-part "@" domain from the tokens of an addr-spec (comments removed)."""
    words = [w for w in words if w.kind != _COMMENT]
    if not words:
        return None
    at = -1
    for i in range(len(words) - 1, -1, -1):
        if _is(words[i], b"@"):
            at = i
            break
    if at < 0:
        local = b"".join(w.val for w in words)
        return (local or MISSING_MAILBOX, MISSING_HOST)
    local = b"".join(w.val for w in words[:at])
    domain = b"".join(w.val for w in words[at + 1 :])
    return (local or MISSING_MAILBOX, domain or MISSING_HOST)


# Fast path for the everyday forms `a@b`, `Name <a@b>`, `"Quoted, Name" <a@b>`: one regex
# per address. Anything else (groups, comments, routes, odd quoting) takes the full parser,
# which gives the same result for these forms. Greedy classes only: linear matching.
_ADDR_CHARS = rb'[^<>@\s"(),;:\[\]\\]+'
_FAST = re.compile(
    rb'[ \t]*(?:"((?:[^"\\\r\n]|\\.)*)"[ \t]*|([^"<>,;:@()\[\]\\]*))<(' + _ADDR_CHARS
    + rb")@(" + _ADDR_CHARS + rb")>[ \t]*(?:,|\Z)"
    + rb"|[ \t]*(" + _ADDR_CHARS + rb")@(" + _ADDR_CHARS + rb")[ \t]*(?:,|\Z)"
)
_SPACES = re.compile(rb"[ \t]+")


def _fast_parse(value: bytes) -> list[Address] | None:
    out: list[Address] = []
    pos, n = 0, len(value)
    while pos < n:
        m = _FAST.match(value, pos)
        if m is None or m.end() == pos:
            return None
        quoted, phrase, local, domain, local2, domain2 = m.groups()
        if local2 is not None:
            out.append(Address(None, None, local2, domain2))
        else:
            if quoted is not None:
                name: bytes | None = _UNESCAPE.sub(rb"\1", quoted)
            else:
                name = phrase.strip(b" \t")
                if b"  " in name or b"\t" in name:
                    name = _SPACES.sub(b" ", name)
                name = name or None
            out.append(Address(name, None, local, domain))
        pos = m.end()
        if len(out) >= _MAX_ADDRESSES:
            break
    return out


def parse_address_list(value: bytes) -> list[Address]:
    """Parse an (unfolded) address-list header value. Never raises; bounded output."""
    fast = _fast_parse(value)
    if fast is not None:
        return fast
    return _full_parse(value)


def _full_parse(value: bytes) -> list[Address]:
    toks = _tokenize(value)
    out: list[Address] = []
    in_group = False
    words: list[_Tok] = []
    comment: bytes | None = None
    angle: tuple[bytes | None, bytes, bytes] | None = None

    def flush() -> None:
        nonlocal words, comment, angle
        if angle is not None:
            name = _phrase(words) or comment or None
            out.append(Address(name, angle[0], angle[1], angle[2]))
        else:
            spec = _addr_spec(words)
            if spec is not None:
                out.append(Address(comment or None, None, spec[0], spec[1]))
        words, comment, angle = [], None, None

    i = 0
    n = len(toks)
    while i < n and len(out) < _MAX_ADDRESSES:
        tok = toks[i]
        i += 1
        if tok.kind == _COMMENT:
            comment = tok.val or comment
        elif tok.kind != _SPECIAL:
            if angle is None:
                words.append(tok)
        elif tok.val == b"<":
            inner: list[_Tok] = []
            while i < n and not _is(toks[i], b">"):
                if toks[i].kind != _COMMENT:
                    inner.append(toks[i])
                i += 1
            i += 1  # the ">"
            route: bytes | None = None
            if inner and _is(inner[0], b"@"):  # obs-route (RFC 5322 §4.4)
                for j, rtok in enumerate(inner):
                    if _is(rtok, b":"):
                        route = b"".join(t.val for t in inner[:j])
                        inner = inner[j + 1 :]
                        break
            spec = _addr_spec(inner)
            if spec is not None:
                angle = (route, spec[0], spec[1])
            else:  # "<>" (e.g. a null return path): keep a recognisable empty address
                angle = (route, MISSING_MAILBOX, MISSING_HOST)
        elif tok.val == b":" and not in_group and angle is None:
            out.append(Address(None, None, _phrase(words), None))
            in_group = True
            words, comment = [], None
        elif tok.val == b";" and in_group:
            flush()
            out.append(GROUP_END)
            in_group = False
        elif tok.val == b",":
            flush()
        elif angle is None:
            words.append(tok)
    flush()
    if in_group:
        out.append(GROUP_END)
    return out
