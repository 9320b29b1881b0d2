"""FETCH data items about message content: ENVELOPE, BODY, BODYSTRUCTURE, BODY[section],
BINARY[section], BINARY.SIZE (RFC 9051 §6.4.5 and §7.5.2, RFC 3501 §6.4.5 and §7.4.2,
RFC 3516).

Header values are returned raw, as the RFCs require: RFC 2047 encoded-words stay encoded,
8-bit bytes go out as literals unless UTF8=ACCEPT is enabled (`utf8=True`, RFC 6855 §3).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence

from .addresses import Address, parse_address_list
from .base64_plain import decode_plain
from .headers import ParamValue, parse_param_value, split_list
from .imap_format import nstring, paren_list
from .parse import ParsedMessage

__all__ = [
    "SECTION_SPECS",
    "UnknownTransferEncoding",
    "binary",
    "binary_size",
    "body_structure",
    "decode_content",
    "envelope",
    "resolve_part",
    "section",
]

SECTION_SPECS = frozenset({"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})
# Dovecot's answer for a multipart that has no part at all (the grammar needs one body).
_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_BODY_EXT = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


class UnknownTransferEncoding(ValueError):
    """BINARY of a part whose Content-Transfer-Encoding we cannot undo (RFC 3516 §4.3:
    the server answers NO [UNKNOWN-CTE])."""


# -- ENVELOPE -----------------------------------------------------------------------------------


def _addresses(value: bytes | None, utf8: bool) -> bytes:
    if value is None:
        return b"NIL"
    addrs = parse_address_list(value)
    if not addrs:
        return b"NIL"
    return b"(" + b"".join(_address(a, utf8) for a in addrs) + b")"


def _address(a: Address, utf8: bool) -> bytes:
    return paren_list(
        (
            nstring(a.name, utf8=utf8),
            nstring(a.adl, utf8=utf8),
            nstring(a.mailbox, utf8=utf8),
            nstring(a.host, utf8=utf8),
        )
    )


def _nonempty(value: bytes | None) -> bytes | None:
    return value if value else None


def envelope(msg: ParsedMessage, *, utf8: bool = False) -> bytes:
    """The ENVELOPE structure (RFC 9051 §7.5.2): date, subject, from, sender, reply-to, to,
    cc, bcc, in-reply-to, message-id; the first occurrence of each header field.

    Sender and Reply-To default to From when absent or empty (RFC 3501 §7.4.2).
    """
    get = msg.header_value
    from_ = _nonempty(get("from"))
    sender = _nonempty(get("sender")) or from_
    reply_to = _nonempty(get("reply-to")) or from_
    return paren_list(
        (
            nstring(_nonempty(get("date")), utf8=utf8),
            nstring(get("subject"), utf8=utf8),
            _addresses(from_, utf8),
            _addresses(sender, utf8),
            _addresses(reply_to, utf8),
            _addresses(_nonempty(get("to")), utf8),
            _addresses(_nonempty(get("cc")), utf8),
            _addresses(_nonempty(get("bcc")), utf8),
            nstring(_nonempty(get("in-reply-to")), utf8=utf8),
            nstring(_nonempty(get("message-id")), utf8=utf8),
        )
    )


# -- BODY / BODYSTRUCTURE -----------------------------------------------------------------------


def _s(text: str, utf8: bool) -> bytes:
    return nstring(text.encode("latin-1", "replace"), utf8=utf8)


def _params(pv: ParamValue | None, utf8: bool) -> bytes:
    """body-fld-param: ("name" "value" ...) or NIL (RFC 9051 §9)."""
    if pv is None or not pv.params:
        return b"NIL"
    items: list[bytes] = []
    for name, value in pv.params:
        items.append(_s(name, utf8))
        items.append(_s(value, utf8))
    return paren_list(items)


def _disposition(part: ParsedMessage, utf8: bool) -> bytes:
    value = part.header_value("content-disposition")
    if not value:
        return b"NIL"
    pv = parse_param_value(value)
    if not pv.value:
        return b"NIL"
    return paren_list((_s(pv.value, utf8), _params(pv, utf8)))


def _language(part: ParsedMessage, utf8: bool) -> bytes:
    """body-fld-lang: NIL, one string, or a list (RFC 3282 Content-Language)."""
    value = part.header_value("content-language")
    if not value:
        return b"NIL"
    tags = [t.strip(" \t") for t in split_list(value.decode("latin-1"), ",")]
    tags = [t for t in tags if t]
    if not tags:
        return b"NIL"
    if len(tags) == 1:
        return _s(tags[0], utf8)
    return paren_list(_s(t, utf8) for t in tags)


def _ext_tail(part: ParsedMessage, utf8: bool) -> list[bytes]:
    """body-fld-dsp, body-fld-lang, body-fld-loc."""
    return [
        _disposition(part, utf8),
        _language(part, utf8),
        nstring(_nonempty(part.header_value("content-location")), utf8=utf8),
    ]


def _type_fields(part: ParsedMessage, utf8: bool) -> list[bytes]:
    """media type, subtype, body-fld-param.

    A text/* part without a charset parameter gets `"charset" "us-ascii"` (RFC 2045 §5.2
    default), as Dovecot writes it, so that clients need not guess.
    """
    params = _params(part.content_type, utf8)
    ct = part.content_type
    if part.type.lower() == "text" and (ct is None or ct.get("charset") is None):
        default = b'"charset" "us-ascii"'
        params = b"(" + default + b")" if params == b"NIL" else params[:-1] + b" " + default + b")"
    return [_s(part.type, utf8), _s(part.subtype, utf8), params]


def body_structure(msg: ParsedMessage, *, extended: bool, utf8: bool = False) -> bytes:
    """BODY (extended=False) or BODYSTRUCTURE (extended=True), RFC 9051 §7.5.2.

    Built bottom-up without recursion in Python's call stack limits (the depth is bounded by
    the parser anyway).
    """
    out = bytearray()
    _emit(msg, extended, utf8, out)
    return bytes(out)


def _emit(part: ParsedMessage, extended: bool, utf8: bool, out: bytearray) -> None:
    if part.is_multipart:
        out += b"("
        if part.children:
            for child in part.children:
                _emit(child, extended, utf8, out)
        else:
            out += _EMPTY_BODY_EXT if extended else _EMPTY_BODY
        out += b" " + _s(part.subtype, utf8)
        if extended:
            out += b" " + b" ".join([_params(part.content_type, utf8), *_ext_tail(part, utf8)])
        out += b")"
        return
    fields = _type_fields(part, utf8)
    fields.append(nstring(_nonempty(part.header_value("content-id")), utf8=utf8))
    fields.append(nstring(_nonempty(part.header_value("content-description")), utf8=utf8))
    cte = part.header_value("content-transfer-encoding")
    fields.append(_s(cte.decode("latin-1") if cte else "7bit", utf8))
    fields.append(b"%d" % part.size)
    out += b"(" + b" ".join(fields)
    if part.message is not None:
        # body-type-msg: envelope, body, body-fld-lines (RFC 9051 §9)
        out += b" " + envelope(part.message, utf8=utf8) + b" "
        _emit(part.message, extended, utf8, out)
        out += b" %d" % part.lines
    elif part.type.lower() == "text":
        out += b" %d" % part.lines  # body-type-text
    if extended:
        md5 = nstring(_nonempty(part.header_value("content-md5")), utf8=utf8)
        out += b" " + b" ".join([md5, *_ext_tail(part, utf8)])
    out += b")"


# -- BODY[section] ------------------------------------------------------------------------------


def resolve_part(msg: ParsedMessage, part: tuple[int, ...]) -> ParsedMessage | None:
    """The entity a section part number designates (RFC 9051 §6.4.5).

    Part 1 of a non-multipart message is the message itself seen as a part (its body is the
    part's content, its header the part's MIME header). The parts of a message/rfc822 part are
    those of the encapsulated message.
    """
    cur = msg
    at_top = True
    for n in part:
        if n < 1:
            return None
        if not at_top and not cur.is_multipart:
            if cur.message is None:
                return None
            cur = cur.message
        at_top = False
        if cur.is_multipart:
            if n > len(cur.children):
                return None
            cur = cur.children[n - 1]
        elif n != 1:
            return None
    return cur


def _header_fields(entity: ParsedMessage, fields: Sequence[str], exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: matching lines verbatim, then a blank line."""
    wanted = {f.lower() for f in fields}
    chosen = [entity.field_bytes(f) for f in entity.fields if (f.name in wanted) != exclude]
    if chosen and not chosen[-1].endswith(b"\n"):  # a header block cut short by the end
        chosen[-1] += b"\r\n"
    return b"".join(chosen) + b"\r\n"


def section(
    msg: ParsedMessage, part: tuple[int, ...], spec: str, fields: Sequence[str] = ()
) -> bytes | None:
    """BODY[section] content (RFC 9051 §6.4.5), or None when the section does not exist."""
    spec = spec.upper()
    if spec not in SECTION_SPECS:
        return None
    target = resolve_part(msg, part)
    if target is None:
        return None
    if spec == "":
        if not part:
            return msg.raw[msg.start : msg.end]
        return target.body_bytes
    if spec == "MIME":
        if not part:
            return None  # MIME needs a part number
        return target.header_bytes
    # HEADER, HEADER.FIELDS[.NOT], TEXT: of the message itself, or of a message/rfc822 part
    if part:
        if target.message is None:
            return None
        target = target.message
    if spec == "HEADER":
        return target.header_bytes
    if spec == "TEXT":
        return target.body_bytes
    return _header_fields(target, fields, exclude=spec == "HEADER.FIELDS.NOT")


# -- BINARY[section] ----------------------------------------------------------------------------

_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _decode_base64(data: bytes) -> bytes:
    """Lenient base64: ignore non-alphabet bytes and stop at padding, as mail clients do."""
    plain = decode_plain(data)  # the common case, padding only at the end
    if plain is not None:
        return plain
    pad = data.find(b"=")  # a group cut short, or data after padding: the slow path
    if pad >= 0:
        data = data[:pad]
    data = _B64_JUNK.sub(b"", data)
    usable = len(data) - len(data) % 4
    tail = data[usable:]
    out = binascii.a2b_base64(data[:usable]) if usable else b""
    if len(tail) >= 2:  # a final 2 or 3 character group still carries 1 or 2 bytes
        out += binascii.a2b_base64(tail + b"=" * (4 - len(tail)))
    return out


def decode_content(entity: ParsedMessage, data: bytes) -> bytes:
    """`data` (the entity's body) with the entity's Content-Transfer-Encoding undone."""
    cte = entity.transfer_encoding
    if cte in ("7bit", "8bit", "binary"):
        return data
    if cte == "base64":
        return _decode_base64(data)
    if cte == "quoted-printable":
        return binascii.a2b_qp(data)
    raise UnknownTransferEncoding(cte)


def binary(msg: ParsedMessage, part: tuple[int, ...]) -> bytes | None:
    """BINARY[section] (RFC 3516 §4.2): the part's content with its transfer encoding undone.

    `()` is the whole message, unchanged. A multipart or message part is returned as is (its
    parts carry their own encodings). Raises UnknownTransferEncoding for an unknown CTE.
    """
    if not part:
        return msg.raw[msg.start : msg.end]
    target = resolve_part(msg, part)
    if target is None:
        return None
    if target.is_multipart or target.message is not None:
        return target.body_bytes
    return decode_content(target, target.body_bytes)


def binary_size(msg: ParsedMessage, part: tuple[int, ...]) -> int | None:
    """BINARY.SIZE[section] (RFC 3516 §4.2): octets of BINARY[section]."""
    data = binary(msg, part)
    return None if data is None else len(data)
