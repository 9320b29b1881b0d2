"""A MIME tree over the original bytes (RFC 5322, RFC 2045, RFC 2046).

`ParsedMessage.from_bytes(raw)` never raises. Every entity keeps offsets into `raw`, so that
BODY[section] returns the exact bytes received. Malformed structure degrades the way Dovecot's
does: an unusable Content-Type becomes text/plain; a multipart without boundary is text/plain;
a multipart without any delimiter has no parts (BODYSTRUCTURE then shows one empty text/plain).
Bounds: nesting depth (`MAX_DEPTH`) and total entities (`MAX_PARTS`); parsing is linear in the
input size times the depth bound, the delimiters found in C (bytes.find, or a regex on hostile
input).
An entity's header block is split into fields only when something asks for them: parsing and
the content analysis read Content-Type, Content-Disposition and Content-Transfer-Encoding by
one regex search each (tests/test_mime_fast.py holds them to the field index).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mailserver.memo import short_values

from .headers import ParamValue, decoded_param, parse_param_value, unfold

__all__ = ["MAX_DEPTH", "MAX_PARTS", "HeaderField", "ParsedMessage"]

MAX_DEPTH = 64
MAX_PARTS = 10_000
# RFC 2046 §5.1.1: a boundary is 1 to 70 characters; we accept a little more, as mailers do.
_MAX_BOUNDARY = 200
_MESSAGE_SUBTYPES = frozenset({"rfc822", "global"})  # RFC 2046 §5.2.1, RFC 6532 §3.7
# RFC 2045 §6.1 mechanisms, as `transfer_encoding` gives them
_MECHANISMS = {
    name.encode(): name for name in ("7bit", "8bit", "binary", "quoted-printable", "base64")
}


class HeaderField(NamedTuple):
    """One header field: lower-case name, and offsets of the whole field (folded lines and
    line end included) and of its value (after the colon) in the message bytes."""

    name: str
    start: int
    value_start: int
    end: int


_LINE_START = re.compile(rb"\n(?![ \t])")


def _direct(name: str) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """Patterns for the field `name`, its value in group 1, to find it without splitting the
    header block: a field starts at a line not beginning with whitespace, its name runs to
    the first colon (blanks before it tolerated), its value to the next such line (RFC 5322
    §2.2, §2.2.3, §3.6.8). One matches at the block's start, the other after a line end (its
    literal "\\n" lets the regex engine skip to line ends)."""
    field = re.escape(name.encode()) + rb"[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*\n?)"
    return re.compile(field, re.IGNORECASE), re.compile(rb"\n" + field, re.IGNORECASE)


# The MIME fields that parsing and content analysis read: found by a search in C, so that an
# entity's header block is split into fields only when something else is asked of it.
_DIRECT = {
    name: _direct(name)
    for name in ("content-type", "content-disposition", "content-transfer-encoding")
}
_CONTENT_TYPE = _DIRECT["content-type"]
_BAD_NAME = re.compile(rb"[\x00-\x20\x7f]")
_NAME_CACHE: dict[bytes, str] = {}
_new_tuple = tuple.__new__


def _field_name(raw_name: bytes) -> str:
    """The lower-case field name, or "" when `raw_name` is not a valid name (RFC 5322 §3.6.8;
    whitespace before the colon is tolerated, as in obsolete syntax)."""
    text = _NAME_CACHE.get(raw_name)
    if text is not None:
        return text
    name = raw_name.rstrip(b" \t")
    if not name or _BAD_NAME.search(name):
        return ""
    text = name.decode("latin-1").lower()
    if len(_NAME_CACHE) < 4096:  # bounded: hostile mail may invent any number of names
        _NAME_CACHE[raw_name] = text
    return text


# After the boundary: "--" for the close delimiter, transport padding, then the line end
# (RFC 2046 §5.1.1). Matched with endpos = the entity's end, so \Z is the entity's end.
_DELIM_TAIL = re.compile(rb"(--)?[ \t]*(?=\r?\n|\Z)")
# Candidates ("\n--boundary" not followed by a valid tail) tolerated before switching from
# bytes.find + a check per candidate to one regex compiled for this boundary: compiling
# costs ~100 µs, so it is kept for hostile input (a body full of near-delimiters).
_MAX_MISSES = 64


def _find_delimiters(
    raw: bytes, body: int, end: int, boundary: bytes, most: int = MAX_PARTS
) -> list[tuple[int, int, bool]]:
    """(delimiter start, end of its boundary text, is close delimiter) of each delimiter line
    in raw[body:end], up to the close delimiter and at most ``most`` + 1 of them."""
    dash = b"--" + boundary
    found: list[tuple[int, int, bool]] = []
    if raw.startswith(dash, body):  # the first delimiter may open the body (no CRLF before)
        m = _DELIM_TAIL.match(raw, body + len(dash), end)
        if m is not None:
            found.append((body, m.end(), m.group(1) is not None))
            if m.group(1) is not None:
                return found
    needle = b"\n" + dash
    pos, misses = body, 0
    while len(found) <= most:
        i = raw.find(needle, pos, end)
        if i < 0:
            return found
        m = _DELIM_TAIL.match(raw, i + len(needle), end)
        if m is None:
            misses += 1
            if misses > _MAX_MISSES:
                break
            pos = i + 1
            continue
        found.append((i, m.end(), m.group(1) is not None))
        if m.group(1) is not None:
            return found
        pos = m.end()
    else:
        return found
    # hostile input: let the regex engine scan the rest in C
    delim = re.compile(rb"\n--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r?\n|\Z)")
    for m in delim.finditer(raw, pos, end):
        found.append((m.start(), m.end(), m.group(1) is not None))
        if m.group(1) is not None or len(found) > most:
            break
    return found


class _Budget:
    __slots__ = ("limit", "parts")

    def __init__(self, limit: int) -> None:
        self.parts, self.limit = 0, limit


class ParsedMessage:
    """One MIME entity: a whole message, a body part, or an encapsulated message.

    `start..body_start` is the header block including the blank line that ends it,
    `body_start..end` the body. `children` holds the parts of a multipart; `message` the
    encapsulated message of a message/rfc822 (or message/global) entity.
    """

    __slots__ = (
        "_content_type",
        "_fields",
        "_index",
        "body_start",
        "children",
        "depth",
        "end",
        "header_end",
        "message",
        "raw",
        "start",
        "subtype",
        "type",
    )

    raw: bytes
    start: int
    header_end: int
    body_start: int
    end: int
    _fields: list[HeaderField] | None
    children: list[ParsedMessage]
    message: ParsedMessage | None
    depth: int
    type: str
    subtype: str
    _content_type: ParamValue | None
    _index: dict[str, list[int]] | None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, raw: bytes, max_parts: int = MAX_PARTS) -> ParsedMessage:
        """Parse a message. Never raises; the worst input gives a text/plain leaf. At most
        ``max_parts`` entities are built (a caller refusing more than N passes N + 1 and
        sees N + 1 when there were more), the rest left in the last one's body."""
        raw = bytes(raw)
        budget = _Budget(min(max_parts, MAX_PARTS))
        try:
            return cls._parse(raw, 0, len(raw), 0, budget, default_type=("text", "plain"))
        except Exception:  # last-resort guard: a parser bug must not break FETCH
            msg = cls._leaf(raw, 0, len(raw), 0)
            return msg

    @classmethod
    def _leaf(cls, raw: bytes, start: int, end: int, depth: int) -> ParsedMessage:
        self = cls.__new__(cls)
        self.raw, self.start, self.end, self.depth = raw, start, end, depth
        self.header_end = self.body_start = start
        self._fields, self.children, self.message = [], [], None
        self.type, self.subtype = "text", "plain"
        self._content_type = ParamValue("text/plain", (("charset", "us-ascii"),))
        self._index = None
        return self

    @classmethod
    def _parse(
        cls,
        raw: bytes,
        start: int,
        end: int,
        depth: int,
        budget: _Budget,
        default_type: tuple[str, str],
    ) -> ParsedMessage:
        self = cls.__new__(cls)
        self.raw, self.start, self.end, self.depth = raw, start, end, depth
        self.children, self.message = [], None
        self._fields = self._index = None  # split when first asked for
        budget.parts += 1
        self._split_header()
        self._content_type = None
        self.type, self.subtype = default_type
        ct = self._direct_value("content-type", _CONTENT_TYPE)
        if ct is not None:
            media = _media_type(ct)
            if media is not None:
                self.type, self.subtype, self._content_type = media
            # RFC 2045 §5.2: an invalid Content-Type means text/plain; charset=us-ascii.
            else:
                self.type, self.subtype = "text", "plain"
        kind = self.type.lower()
        if depth >= MAX_DEPTH or budget.parts >= budget.limit:
            if kind == "multipart" or self.is_message:
                self.type, self.subtype = "text", "plain"
                self._content_type = None
            return self
        if kind == "multipart":
            boundary = self.param("boundary")
            if not boundary or len(boundary) > _MAX_BOUNDARY:
                self.type, self.subtype = "text", "plain"  # Dovecot: no boundary, no parts
                self._content_type = None
            else:
                self._split_parts(boundary.encode("latin-1"), budget)
        elif kind == "message" and self.subtype.lower() in _MESSAGE_SUBTYPES:
            self.message = ParsedMessage._parse(
                raw, self.body_start, end, depth + 1, budget, default_type=("text", "plain")
            )
        return self

    def _split_header(self) -> None:
        raw, start, end = self.raw, self.start, self.end
        # A body without header: the entity starts with the blank line.
        if raw.startswith(b"\r\n", start) and start + 2 <= end:
            self.header_end, self.body_start = start, start + 2
            return
        if raw.startswith(b"\n", start) and start < end:
            self.header_end, self.body_start = start, start + 1
            return
        crlf = raw.find(b"\n\r\n", start, end)
        lf = raw.find(b"\n\n", start, crlf if crlf >= 0 else end)
        if lf >= 0:
            self.header_end, self.body_start = lf + 1, lf + 2
        elif crlf >= 0:
            self.header_end, self.body_start = crlf + 1, crlf + 3
        else:
            self.header_end = self.body_start = end

    def _split_fields(self) -> list[HeaderField]:
        # A field starts at each line that does not begin with whitespace; folded lines do
        # (RFC 5322 §2.2.3). A line without a valid `name:` (e.g. an mbox "From " line) is
        # no field, and its continuation lines go with it.
        raw, stop = self.raw, self.header_end
        starts = [self.start]
        starts.extend(m.end() for m in _LINE_START.finditer(raw, self.start, stop))
        starts.append(stop)
        fields: list[HeaderField] = []
        known = _NAME_CACHE
        for i in range(len(starts) - 1):
            begin, end = starts[i], starts[i + 1]
            colon = raw.find(b":", begin, end)
            if colon <= begin:
                continue
            raw_name = raw[begin:colon]
            # "" when not a name (spaces, line ends)
            name = known.get(raw_name) or _field_name(raw_name)
            if name:  # HeaderField(...) without its Python-level __new__
                fields.append(_new_tuple(HeaderField, (name, begin, colon + 1, end)))
        return fields

    def _split_parts(self, boundary: bytes, budget: _Budget) -> None:
        raw, body, end = self.raw, self.body_start, self.end
        starts = _find_delimiters(raw, body, end, boundary, budget.limit - budget.parts)
        digest = self.subtype.lower() == "digest"  # RFC 2046 §5.1.5: parts default to messages
        default = ("message", "rfc822") if digest else ("text", "plain")
        for i, (_, line_end, is_close) in enumerate(starts):
            if is_close:
                break
            nl = raw.find(b"\n", line_end, end)
            part_start = end if nl < 0 else nl + 1
            if i + 1 < len(starts):
                part_end = starts[i + 1][0]
                if part_end > part_start and raw[part_end - 1 : part_end] == b"\r":
                    part_end -= 1
                # the delimiter's CRLF belongs to the delimiter (RFC 2046 §5.1.1)
                part_end = max(part_end, part_start)
            else:
                part_end = end  # missing close delimiter: the last part runs to the end
            if budget.parts >= budget.limit:
                break
            self.children.append(
                ParsedMessage._parse(raw, part_start, part_end, self.depth + 1, budget, default)
            )

    # -- accessors ----------------------------------------------------------------------------

    @property
    def is_multipart(self) -> bool:
        return self.type.lower() == "multipart"

    @property
    def is_message(self) -> bool:
        """message/rfc822 or message/global: the body is itself a message."""
        return self.type.lower() == "message" and self.subtype.lower() in _MESSAGE_SUBTYPES

    @property
    def header_bytes(self) -> bytes:
        """The header block with its terminating blank line, verbatim."""
        return self.raw[self.start : self.body_start]

    @property
    def body_bytes(self) -> bytes:
        return self.raw[self.body_start : self.end]

    @property
    def size(self) -> int:
        """Octets of the body in its transfer encoding (RFC 9051 body-fld-octets)."""
        return self.end - self.body_start

    @property
    def lines(self) -> int:
        """Lines of the body (RFC 9051 body-fld-lines): its line ends, plus a last partial line."""
        if self.end <= self.body_start:
            return 0
        n = self.raw.count(b"\n", self.body_start, self.end)
        if self.raw[self.end - 1 : self.end] != b"\n":
            n += 1
        return n

    @property
    def fields(self) -> list[HeaderField]:
        """The header fields in order (a line without a valid `name:` is none)."""
        if self._fields is None:
            self._fields = self._split_fields()
        return self._fields

    def _fields_named(self, name: str) -> list[int]:
        if self._index is None:
            index: dict[str, list[int]] = {}
            for i, f in enumerate(self.fields):
                index.setdefault(f.name, []).append(i)
            self._index = index
        return self._index.get(name.lower(), [])

    def header_values(self, name: str) -> list[bytes]:
        """Every value of a header field, unfolded, raw bytes (RFC 2047 words kept encoded)."""
        raw = self.raw
        return [
            unfold(raw[self.fields[i].value_start : self.fields[i].end])
            for i in self._fields_named(name)
        ]

    def header_value(self, name: str) -> bytes | None:
        """The first value of a header field, unfolded, or None when absent."""
        if self._fields is None:
            patterns = _DIRECT.get(name.lower())
            if patterns is not None:
                return self._direct_value(name, patterns)
        return self._indexed_value(name)

    def _direct_value(
        self, name: str, patterns: tuple[re.Pattern[bytes], re.Pattern[bytes]]
    ) -> bytes | None:
        """`header_value(name)` read by `patterns` (see `_direct`) instead of the index."""
        raw, start, stop = self.raw, self.start, self.header_end
        if not start:
            m = patterns[0].match(raw, 0, stop) or patterns[1].search(raw, 0, stop)
        elif raw[start - 1] == 10:  # every other entity follows a line end: search from it
            m = patterns[1].search(raw, start - 1, stop)
        else:
            return self._indexed_value(name)
        return None if m is None else unfold(m.group(1))

    def _indexed_value(self, name: str) -> bytes | None:
        idx = self._fields_named(name)
        if not idx:
            return None
        f = self.fields[idx[0]]
        return unfold(self.raw[f.value_start : f.end])

    def field_bytes(self, field: HeaderField) -> bytes:
        return self.raw[field.start : field.end]

    @property
    def content_type(self) -> ParamValue | None:
        """The parsed Content-Type when the header is valid, else None (defaults apply)."""
        return self._content_type

    def param(self, name: str) -> str | None:
        """A Content-Type parameter (Latin-1 str of the raw bytes)."""
        if self._content_type is None:
            if name.lower() == "charset" and self.type == "text" and self.subtype == "plain":
                return "us-ascii"
            return None
        return self._content_type.get(name)

    @property
    def filename(self) -> str | None:
        """The attachment's file name, decoded (RFC 2183 Content-Disposition filename, else
        the Content-Type name parameter; RFC 2231 and RFC 2047 encodings undone)."""
        disposition = self.header_value("content-disposition")
        if disposition:
            name = decoded_param(parse_param_value(disposition), "filename")
            if name:
                return name
        if self._content_type is not None:
            return decoded_param(self._content_type, "name") or None
        return None

    @property
    def transfer_encoding(self) -> str:
        """Content-Transfer-Encoding, lower case, '7bit' when absent (RFC 2045 §6.1)."""
        value = self.header_value("content-transfer-encoding")
        if value is None:
            return "7bit"
        known = _MECHANISMS.get(value.lower())  # the usual bare token, in any case
        if known is not None:
            return known
        # the mechanism is a token; tolerate comments and stray parameters around it
        text = parse_param_value(value).value.strip(" \t").lower()
        return text or "7bit"

    def walk(self) -> list[ParsedMessage]:
        """Every entity of the tree in depth-first order (iterative: no recursion limit)."""
        out: list[ParsedMessage] = []
        stack: list[ParsedMessage] = [self]
        while stack:
            node = stack.pop()
            out.append(node)
            if node.message is not None:
                stack.append(node.message)
            stack.extend(reversed(node.children))
        return out

    def __repr__(self) -> str:
        return (
            f"<ParsedMessage {self.type}/{self.subtype} {self.start}:{self.body_start}:{self.end}"
            f" parts={len(self.children)}>"
        )


# RFC 2045 §5.1: type "/" subtype, both tokens; blanks around them tolerated.
_NO_TSPECIALS = r'[^\x00-\x20\x7f-\uffff()<>@,;:\\"/\[\]?=]+'
_MEDIA_TYPE = re.compile(rf"[ \t]*({_NO_TSPECIALS})[ \t]*/[ \t]*({_NO_TSPECIALS})[ \t]*")


# Per distinct value: mailers write the same few Content-Types again and again; the
# ParamValue is shared (read-only: its params are a tuple).
@short_values(max_len=256, maxsize=512)
def _media_type(value: bytes) -> tuple[str, str, ParamValue] | None:
    """Type, subtype and parameters of a Content-Type value; None when it is invalid."""
    pv = parse_param_value(value)
    media = _MEDIA_TYPE.fullmatch(pv.value)
    return None if media is None else (media[1], media[2], pv)

