"""IMAP string syntax for responses (RFC 9051 §4.3, RFC 3501 §4.3, RFC 3516 literal8)."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["astring", "literal", "nstring", "paren_list", "quoted"]

# Bytes that cannot appear in a quoted string (RFC 9051 §4.3: TEXT-CHAR excludes CR, LF).
_NEEDS_LITERAL = re.compile(rb"[\r\n]")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_PLAIN = re.compile(rb'[^\x00\r\n\x80-\xff"\\]*')
# ASTRING-CHAR = ATOM-CHAR / resp-specials; atom-specials are "(" ")" "{" SP CTL "%" "*" DQUOTE
# "\" "]" (RFC 9051 §9 formal syntax); "]" is allowed in an astring.
_NOT_ASTRING_CHAR = re.compile(rb'[\x00-\x20\x7f-\xff(){%*"\\]')


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """`{n}\\r\\n` + data; `~{n}\\r\\n` + data for a literal8 (RFC 3516 §4.2, RFC 9051 §4.3)."""
    prefix = b"~{%d}\r\n" if binary else b"{%d}\r\n"
    return prefix % len(data) + data


def quoted(s: bytes, *, utf8: bool = False) -> bytes:
    """A quoted string, or a literal when the value cannot be quoted.

    CR and LF never fit a quoted string; 8-bit bytes fit only once UTF8=ACCEPT is enabled
    (RFC 9051 §4.3, RFC 6855 §3) and only as valid UTF-8. NUL becomes 0x80 (it fits no
    string; a literal of 8-bit bytes is fine).
    """
    if _PLAIN.fullmatch(s) is not None:  # the common case: printable ASCII, nothing to escape
        return b'"' + s + b'"'
    if b"\x00" in s:
        # NUL fits no string, not even a literal (only literal8, RFC 3516): replace it with
        # 0x80, as Dovecot does, so a hostile header cannot break the response syntax.
        s = s.replace(b"\x00", b"\x80")
    if _NEEDS_LITERAL.search(s):
        return literal(s)
    if _EIGHT_BIT.search(s):
        if not utf8:
            return literal(s)
        try:
            s.decode("utf-8")
        except UnicodeDecodeError:
            return literal(s)
    return b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def nstring(value: bytes | None, *, utf8: bool = False) -> bytes:
    """NIL for None, else a string (RFC 9051 §4.5)."""
    if value is None:
        return b"NIL"
    return quoted(value, utf8=utf8)


def astring(s: bytes) -> bytes:
    """An atom when every byte is an ASTRING-CHAR, else a quoted string or literal."""
    if s and not _NOT_ASTRING_CHAR.search(s):
        return s
    return quoted(s)


def paren_list(items: Iterable[bytes]) -> bytes:
    """A parenthesized list `(a b c)` (RFC 9051 §4.4)."""
    return b"(" + b" ".join(items) + b")"
