"""RFC 2047 encoded-word decoding, and charset decoding that never fails."""

from __future__ import annotations

import binascii
import codecs
import re

__all__ = ["decode_bytes", "decode_header", "decode_text"]

# RFC 2047 §2; the charset may carry an RFC 2231 §5 language suffix (`utf-8*fr`).
_WORD = re.compile(rb"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_WS = re.compile(rb"[ \t\r\n]*\Z")


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode `data` in `charset`; unknown or missing charsets try UTF-8 then Windows-1252."""
    if charset:
        try:
            codec = codecs.lookup(charset.strip().strip('"'))
        except (LookupError, ValueError):
            codec = None
        if codec is not None and codec.name not in ("us-ascii", "ascii"):
            try:  # some codecs are not text encodings (base64, rot13) or raise anyway (idna)
                return data.decode(codec.name, errors="replace")
            except (LookupError, UnicodeError, ValueError, TypeError):
                pass
    return decode_bytes(data)


def decode_bytes(data: bytes) -> str:
    """Raw bytes of unknown charset: UTF-8 when valid (RFC 6532), else Windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _decode_word(encoding: bytes, text: bytes) -> bytes:
    if encoding in (b"b", b"B"):
        text = text + b"=" * (-len(text) % 4)
        try:
            return binascii.a2b_base64(text)
        except (binascii.Error, ValueError):
            return b""
    # RFC 2047 §4.2: "_" stands for a space in the Q encoding.
    return binascii.a2b_qp(text.replace(b"_", b" "))


def decode_header(value: bytes) -> str:
    """Decode encoded-words in an (unfolded) header value into str.

    Whitespace between two adjacent encoded-words is dropped (RFC 2047 §6.2); consecutive words
    in one charset are joined before decoding, so a character split across words survives.
    """
    if value.find(b"=?") < 0:  # as `not in`, at half its cost
        return decode_bytes(value)
    out: list[str] = []
    pending = b""
    pending_charset = ""
    pos = 0
    for m in _WORD.finditer(value):
        between = value[pos : m.start()]
        if between and not (pending and _WS.match(between)):
            if pending:
                out.append(decode_text(pending, pending_charset))
                pending = b""
            out.append(decode_bytes(between))
        charset = m.group(1).decode("ascii", "replace").lower()
        data = _decode_word(m.group(2), m.group(3))
        if pending and charset != pending_charset:
            out.append(decode_text(pending, pending_charset))
            pending = b""
        pending += data
        pending_charset = charset
        pos = m.end()
    if pending:
        out.append(decode_text(pending, pending_charset))
    out.append(decode_bytes(value[pos:]))
    return "".join(out)
