"""A message's summary: what FETCH, SEARCH, SORT and THREAD ask of most messages,
computed once when the message is stored so that answering them needs no body.

Two parts, kept apart because SEARCH reads one and FETCH the other:

- ``head``: the raw header fields SEARCH, SORT and THREAD look at (and ENVELOPE is
  made of), verbatim and in their order, as a header block of their own. It parses
  like the message's header for these fields, so the same code answers from it.
- ``render``: ENVELOPE, BODYSTRUCTURE and BODY pre-rendered (RFC 9051 §7.5.2), as
  sent without UTF8=ACCEPT, and as sent with it when that differs (8-bit headers,
  RFC 6855 §3).

Pure: bytes in, bytes out. The store seals both parts (encryption at rest).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .fetch import body_structure, envelope
from .parse import ParsedMessage

__all__ = ["HEAD_FIELDS", "Rendered", "Summary", "decode_render", "summarize"]

# Every field ENVELOPE (RFC 9051 §7.5.2), the SEARCH header keys (§6.4.4), SORT
# (RFC 5256 §3, RFC 5957) and THREAD (RFC 5256 §4) read.
HEAD_FIELDS = frozenset({
    "date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
    "message-id", "references",
})
_FORMAT = b"\x01"


@dataclass(frozen=True, slots=True)
class Rendered:
    envelope: bytes
    body_structure: bytes  # BODYSTRUCTURE (extended)
    body: bytes  # BODY (not extended)
    envelope_utf8: bytes
    body_structure_utf8: bytes
    body_utf8: bytes

    def item(self, kind: str, utf8: bool) -> bytes:
        if kind == "ENVELOPE":
            return self.envelope_utf8 if utf8 else self.envelope
        if kind == "BODYSTRUCTURE":
            return self.body_structure_utf8 if utf8 else self.body_structure
        return self.body_utf8 if utf8 else self.body


@dataclass(frozen=True, slots=True)
class Summary:
    head: bytes
    render: bytes  # encoded Rendered (decode_render)


def head_block(parsed: ParsedMessage) -> bytes:
    """The fields of HEAD_FIELDS, verbatim, as a header block ending in a blank line."""
    lines = []
    for field in parsed.fields:
        if field.name in HEAD_FIELDS:
            line = parsed.field_bytes(field)
            if not line.endswith(b"\n"):
                line += b"\r\n"
            lines.append(line)
    return b"".join(lines) + b"\r\n"


def summarize(raw: bytes, parsed: ParsedMessage | None = None) -> Summary:
    message = parsed if parsed is not None else ParsedMessage.from_bytes(raw)
    items = [
        envelope(message, utf8=False),
        body_structure(message, extended=True, utf8=False),
        body_structure(message, extended=False, utf8=False),
    ]
    if any(not entity.header_bytes.isascii() for entity in message.walk()):
        utf8 = [
            envelope(message, utf8=True),
            body_structure(message, extended=True, utf8=True),
            body_structure(message, extended=False, utf8=True),
        ]
        items += [u if u != a else b"" for u, a in zip(utf8, items, strict=True)]
    return Summary(head_block(message), _encode(items))


def _encode(items: list[bytes]) -> bytes:
    out = [_FORMAT, struct.pack("!B", len(items))]
    for item in items:
        out.append(struct.pack("!I", len(item)))
        out.append(item)
    return b"".join(out)


def decode_render(data: bytes) -> Rendered:
    """The pre-rendered items of ``Summary.render``; ValueError if it is damaged."""
    if data[:1] != _FORMAT or len(data) < 2:
        raise ValueError("unknown summary format")
    count = data[1]
    items: list[bytes] = []
    position = 2
    for _ in range(count):
        if position + 4 > len(data):
            raise ValueError("damaged summary")
        (length,) = struct.unpack_from("!I", data, position)
        position += 4
        items.append(data[position:position + length])
        position += length
    if position != len(data) or count not in (3, 6):
        raise ValueError("damaged summary")
    if count == 3:
        items += items
    # An empty UTF-8 variant means "the same as without UTF8=ACCEPT".
    for index in range(3, 6):
        if not items[index]:
            items[index] = items[index - 3]
    return Rendered(*items)
