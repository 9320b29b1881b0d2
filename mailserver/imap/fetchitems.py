"""FETCH items: parsing (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ) and
rendering of one message's answer."""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict
from dataclasses import dataclass, field

from mailserver.imap.syntax import Atom, SyntaxFault, Token, astring
from mailserver.mime import fetch as mime_fetch
from mailserver.mime.imap_format import literal, quoted
from mailserver.mime.parse import ParsedMessage
from mailserver.mime.summary import Rendered
from mailserver.store import MessageInfo

_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_SIMPLE = {"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE",
           "RFC822", "RFC822.HEADER", "RFC822.TEXT", "MODSEQ"}
_SECTIONED = re.compile(
    r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?$",
    re.I | re.S,
)
_TEXT_SPECS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# Items the message summary holds pre-rendered.
SUMMARY_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE", "BODY"})


class UnfetchableData(Exception):
    """BINARY of a part whose transfer encoding we do not know (RFC 3516 §4.3)."""


@dataclass(frozen=True)
class Item:
    kind: str  # FLAGS, UID, ..., BODY[], BINARY[], BINARY.SIZE[]
    peek: bool = False
    part: tuple[int, ...] = ()
    spec: str = ""
    fields: tuple[str, ...] = ()
    partial: tuple[int, int] | None = None
    label: str = ""  # the name in the response, e.g. BODY[HEADER.FIELDS (FROM)]<0>

    @property
    def needs_body(self) -> bool:
        return self.kind not in ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ")

    @property
    def sets_seen(self) -> bool:
        return (self.kind in ("BODY[]", "BINARY[]") and not self.peek) or self.kind in (
            "RFC822", "RFC822.TEXT")


@dataclass
class FetchRequest:
    items: list[Item] = field(default_factory=list)

    @property
    def needs_body(self) -> bool:
        return any(i.needs_body for i in self.items)

    @property
    def sets_seen(self) -> bool:
        return any(i.sets_seen for i in self.items)

    @property
    def needs_whole_body(self) -> bool:
        """Whether an item needs more than the message summary (mime/summary.py)."""
        return any(i.needs_body and i.kind not in SUMMARY_ITEMS for i in self.items)

    def has(self, kind: str) -> bool:
        return any(i.kind == kind for i in self.items)


def parse_items(token: Token) -> FetchRequest:
    request = FetchRequest()
    if isinstance(token, Atom) and token.upper() in _MACROS:
        for name in _MACROS[token.upper()]:
            request.items.append(Item(name, label=name))
        return request
    tokens = token if isinstance(token, list) else [token]
    if not tokens:
        raise SyntaxFault("empty FETCH item list")
    for item in tokens:
        if not isinstance(item, Atom):
            raise SyntaxFault("FETCH items are atoms")
        request.items.append(parse_item(str(item)))
    return request


def parse_item(text: str) -> Item:
    upper = text.upper()
    if upper in _SIMPLE:
        return Item(upper, label=upper)
    found = _SECTIONED.match(text)
    if found is None:
        raise SyntaxFault(f"unknown FETCH item {text[:40]}")
    name = found.group(1).upper()
    part, spec, fields = parse_section(found.group(2), binary=name.startswith("BINARY"))
    partial = None
    if found.group(3) is not None:
        if name == "BINARY.SIZE":
            raise SyntaxFault("BINARY.SIZE takes no partial range")
        partial = (int(found.group(3)), int(found.group(4)))
    base = "BINARY" if name.startswith("BINARY") and name != "BINARY.SIZE" else name
    base = "BODY" if base.startswith("BODY") else base
    section_text = found.group(2).upper() if not fields else (
        f"{'.'.join(str(p) for p in part) + '.' if part else ''}{spec} "
        f"({' '.join(fields)})"
    )
    label = f"{base}[{section_text}]" + (f"<{partial[0]}>" if partial else "")
    return Item(base + "[]" if base != "BINARY.SIZE" else "BINARY.SIZE[]",
                peek=name.endswith(".PEEK"), part=part, spec=spec, fields=fields,
                partial=partial, label=label)


def parse_section(text: str, *, binary: bool) -> tuple[tuple[int, ...], str, tuple[str, ...]]:
    head, _, rest = text.partition(" ")
    pieces = head.split(".") if head else []
    part: list[int] = []
    while pieces and pieces[0].isdigit():
        value = int(pieces.pop(0))
        if value == 0 or len(part) > 100:
            raise SyntaxFault("invalid section part number")
        part.append(value)
    spec = ".".join(pieces).upper()
    if binary and spec:
        raise SyntaxFault("BINARY sections are part numbers only")
    if spec and spec not in _TEXT_SPECS:
        raise SyntaxFault(f"unknown section {spec[:40]}")
    if spec == "MIME" and not part:
        raise SyntaxFault("MIME needs a part number")
    fields: tuple[str, ...] = ()
    if spec.startswith("HEADER.FIELDS"):
        rest = rest.strip()
        if not (rest.startswith("(") and rest.endswith(")")):
            raise SyntaxFault("HEADER.FIELDS needs a list of field names")
        from mailserver.imap.syntax import tokenize

        names = tokenize(rest[1:-1].encode("utf-8"))
        fields = tuple(astring(n, "field name").upper() for n in names)
        if not fields or any(not f or ":" in f for f in fields):
            raise SyntaxFault("invalid header field name")
    elif rest:
        raise SyntaxFault("unexpected text in section")
    return tuple(part), spec, fields


def internal_date(when: dt.datetime) -> str:
    # RFC 9051 §9 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz"
    when = when.astimezone(dt.UTC)
    return f'"{when.day:02d}-{MONTHS[when.month - 1]}-{when.year:04d} {when:%H:%M:%S} +0000"'


class ParseCache:
    """A few parsed messages, by body hash: clients fetch the same one item by item."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._items: OrderedDict[str, ParsedMessage] = OrderedDict()

    def get(self, key: str, raw: bytes) -> ParsedMessage:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            return found
        parsed = ParsedMessage.from_bytes(raw)
        self._items[key] = parsed
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return parsed


def _partial(data: bytes, item: Item) -> bytes:
    if item.partial is None:
        return data
    start, count = item.partial
    return data[start:start + count]


def render(
    item: Item,
    info: MessageInfo,
    flags: frozenset[str],
    raw: bytes | None,
    parsed: ParsedMessage | None,
    *,
    utf8: bool,
    flag_text: str,
    summary: Rendered | None = None,
) -> bytes:
    """``LABEL value`` for one item of one message (ENVELOPE, BODYSTRUCTURE and BODY
    from ``summary`` when given)."""
    kind = item.kind
    if kind == "FLAGS":
        return f"FLAGS ({flag_text})".encode()
    if kind == "UID":
        return f"UID {info.uid}".encode()
    if kind == "MODSEQ":
        return f"MODSEQ ({info.modseq})".encode()
    if kind == "INTERNALDATE":
        return f"INTERNALDATE {internal_date(info.internal_date)}".encode()
    if kind == "RFC822.SIZE":
        return f"RFC822.SIZE {info.size}".encode()
    if summary is not None and kind in SUMMARY_ITEMS:
        return kind.encode() + b" " + summary.item(kind, utf8)
    assert raw is not None and parsed is not None
    if kind == "ENVELOPE":
        return b"ENVELOPE " + mime_fetch.envelope(parsed, utf8=utf8)
    if kind == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + mime_fetch.body_structure(parsed, extended=True, utf8=utf8)
    if kind == "BODY":
        return b"BODY " + mime_fetch.body_structure(parsed, extended=False, utf8=utf8)
    if kind == "RFC822":
        return b"RFC822 " + literal(raw)
    if kind == "RFC822.HEADER":
        return b"RFC822.HEADER " + literal(mime_fetch.section(parsed, (), "HEADER") or b"")
    if kind == "RFC822.TEXT":
        return b"RFC822.TEXT " + literal(mime_fetch.section(parsed, (), "TEXT") or b"")
    if kind == "BODY[]":
        data = (raw if not item.part and not item.spec
                else mime_fetch.section(parsed, item.part, item.spec, item.fields))
        if data is None:
            return item.label.encode() + b" NIL"
        return item.label.encode() + b" " + literal(_partial(data, item))
    try:
        if kind == "BINARY.SIZE[]":
            size = mime_fetch.binary_size(parsed, item.part)
            return item.label.encode() + (b" NIL" if size is None else f" {size}".encode())
        data = raw if not item.part else mime_fetch.binary(parsed, item.part)
    except mime_fetch.UnknownTransferEncoding as error:
        raise UnfetchableData(str(error)) from error
    if data is None:
        return item.label.encode() + b" NIL"
    data = _partial(data, item)
    return item.label.encode() + b" " + literal(data, binary=b"\x00" in data)


__all__ = ["FetchRequest", "Item", "ParseCache", "UnfetchableData", "parse_items", "quoted",
           "render"]
