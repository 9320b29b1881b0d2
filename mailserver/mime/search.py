"""Decoded text for SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4).

SEARCH compares decoded text: header values with RFC 2047 encoded-words decoded, bodies with
their transfer encoding and charset undone. Matching is a case-insensitive substring test;
we fold case with Unicode full case folding, a superset of the i;ascii-casemap the RFCs ask for.
"""

from __future__ import annotations

import datetime
import email.utils

from .encoded_words import decode_header, decode_text
from .fetch import UnknownTransferEncoding, decode_content
from .parse import ParsedMessage

__all__ = ["body_text", "contains", "full_text", "header_text", "sent_date"]

# Bodies bigger than this are searched on their first MAX_TEXT characters only.
MAX_TEXT = 16 * 1024 * 1024


def header_text(msg: ParsedMessage, name: str) -> list[str]:
    """All values of header field `name`, unfolded and RFC 2047 decoded."""
    return [decode_header(v) for v in msg.header_values(name)]


def _headers_text(entity: ParsedMessage) -> str:
    return "\r\n".join(
        f.name + ": " + decode_header(entity.raw[f.value_start : f.end].strip())
        for f in entity.fields
    )


def _text_parts(msg: ParsedMessage) -> list[str]:
    out: list[str] = []
    total = 0
    for entity in msg.walk():
        if entity.is_multipart or entity.message is not None:
            if entity is not msg and entity.message is not None:
                out.append(_headers_text(entity.message))  # an attached message's header
            continue
        if entity.type.lower() != "text":
            continue
        try:
            data = decode_content(entity, entity.body_bytes)
        except UnknownTransferEncoding:
            data = entity.body_bytes
        text = decode_text(data, entity.param("charset"))
        out.append(text)
        total += len(text)
        if total > MAX_TEXT:
            break
    return out


def body_text(msg: ParsedMessage) -> str:
    """Decoded text of the message's text/* parts (and attached messages), for SEARCH BODY."""
    return "\n".join(_text_parts(msg))


def full_text(msg: ParsedMessage) -> str:
    """Header fields (decoded) and body text, for SEARCH TEXT."""
    return _headers_text(msg) + "\r\n\r\n" + body_text(msg)


def contains(haystack: str, needle: str) -> bool:
    """Case-insensitive substring test (RFC 9051 §6.4.4), with Unicode case folding."""
    return needle.casefold() in haystack.casefold()


def sent_date(msg: ParsedMessage) -> datetime.date | None:
    """The date of the Date: header in its own time zone (SENTBEFORE/SENTON/SENTSINCE,
    RFC 9051 §6.4.4: "disregarding time and timezone"), None when absent or unparsable."""
    value = msg.header_value("date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:  # pragma: no cover - older Pythons returned None
        return None
    return parsed.date()
