"""SEARCH keys of RFC 9051 §6.4.4 and RFC 3501 §6.4.4, RFC 7162 MODSEQ and RFC 5182
``$``: parsed into a predicate over one message."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from mailserver.imap import seqset
from mailserver.imap.syntax import Atom, SyntaxFault, Token, astring, modseq_value, number
from mailserver.mime import search as mime_search
from mailserver.mime.parse import ParsedMessage
from mailserver.store import MessageInfo

MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
CHARSETS = ("UTF-8", "US-ASCII")
MAX_KEYS = 2000


@dataclass(slots=True)
class Candidate:
    seq: int
    uid: int
    info: MessageInfo | None  # loaded only when a key needs it (Context.needs_info)
    flags: frozenset[str]
    parsed: Callable[[], ParsedMessage]
    head: bytes | None = None  # the raw header block (or the summary's), when loaded

    @property
    def message(self) -> MessageInfo:
        assert self.info is not None, "search key needs_info not declared"
        return self.info


Predicate = Callable[[Candidate], bool]


@dataclass
class Context:
    uids: list[int]  # the session's view (sequence numbers are positions)
    saved: list[int]  # SEARCHRES
    recent: frozenset[int] = frozenset()  # RFC 3501 §2.3.2 (empty in IMAP4rev2)
    needs_body: bool = False  # BODY, TEXT: the whole message
    needs_headers: bool = False  # header keys, SENT*: the header block is enough
    needs_info: bool = False  # INTERNALDATE, size or MODSEQ of each message
    # Lower-case names of the header fields the keys read: when the message summary
    # has them all (mime.summary.HEAD_FIELDS), no body is opened.
    header_fields: set[str] = field(default_factory=set)
    keys: int = 0


def parse_date(token: Token) -> dt.date:
    text = astring(token, "date")
    try:
        day, month, year = text.split("-")
        return dt.date(int(year), MONTHS[month.upper()], int(day))
    except (ValueError, KeyError) as error:
        raise SyntaxFault(f"invalid date {text[:20]!r} (expected e.g. 1-Feb-2026)") from error


class _Reader:
    def __init__(self, tokens: list[Token], context: Context, depth: int = 0) -> None:
        self.tokens = tokens
        self.pos = 0
        self.context = context
        self.depth = depth

    def next(self, what: str) -> Token:
        if self.pos >= len(self.tokens):
            raise SyntaxFault(f"{what} expected")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def string(self, what: str) -> str:
        return astring(self.next(what), what)

    def all(self) -> Predicate:
        predicates = []
        while self.pos < len(self.tokens):
            predicates.append(self.key())
        if not predicates:
            raise SyntaxFault("search key expected")
        return _and(predicates)

    def key(self) -> Predicate:
        self.context.keys += 1
        if self.context.keys > MAX_KEYS:
            raise SyntaxFault("too many search keys")
        token = self.next("search key")
        if isinstance(token, list):
            if self.depth > 20:
                raise SyntaxFault("search keys nested too deeply")
            return _Reader(token, self.context, self.depth + 1).all()
        if not isinstance(token, Atom):
            raise SyntaxFault("search key expected, got a string")
        name = token.upper()
        flag_keys = {
            "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True),
            "DRAFT": ("\\Draft", True), "FLAGGED": ("\\Flagged", True),
            "SEEN": ("\\Seen", True), "UNANSWERED": ("\\Answered", False),
            "UNDELETED": ("\\Deleted", False), "UNDRAFT": ("\\Draft", False),
            "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False),
        }
        if name in flag_keys:
            flag, present = flag_keys[name]
            return lambda c: (flag in c.flags) == present
        if name == "ALL":
            return lambda c: True
        # RFC 3501 §6.4.4: RECENT, NEW (\Recent and not \Seen), OLD; RFC 9051 drops
        # \Recent, so for IMAP4rev2 sessions no message is recent.
        recent = self.context.recent
        if name == "RECENT":
            return lambda c: c.uid in recent
        if name == "NEW":
            return lambda c: c.uid in recent and "\\Seen" not in c.flags
        if name == "OLD":
            return lambda c: c.uid not in recent
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword = self.string("keyword")
            present = name == "KEYWORD"
            return lambda c: (keyword in c.flags) == present
        if name in ("BCC", "CC", "FROM", "TO", "SUBJECT"):
            return self._header(name.capitalize() if name != "BCC" else "Bcc",
                                self.string(f"{name} string"))
        if name == "HEADER":
            field = self.string("header field name")
            return self._header(field, self.string("header value"))
        if name in ("BODY", "TEXT"):
            needle = self.string(f"{name} string")
            self.context.needs_body = True
            text_of = mime_search.body_text if name == "BODY" else mime_search.full_text
            return lambda c: mime_search.contains(text_of(c.parsed()), needle)
        if name in ("BEFORE", "ON", "SINCE"):
            self.context.needs_info = True
            return _date_test(name, parse_date(self.next("date")), _internal_day)
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            self.context.needs_headers = True
            self.context.header_fields.add("date")
            return _date_test(name[4:], parse_date(self.next("date")), _sent_day)
        if name in ("LARGER", "SMALLER"):
            size = number(self.next("size"), "size")
            self.context.needs_info = True
            if name == "LARGER":
                return lambda c: c.message.size > size
            return lambda c: c.message.size < size
        if name == "NOT":
            inner = self.key()
            return lambda c: not inner(c)
        if name == "OR":
            left, right = self.key(), self.key()
            return lambda c: left(c) or right(c)
        if name == "UID":
            text = self.string("UID set")
            chosen = self._set(text, uid=True)
            return lambda c: c.uid in chosen
        if name == "MODSEQ":  # RFC 7162 §3.1.5: MODSEQ [entry-name entry-type] value
            token = self.next("modseq")
            if not (isinstance(token, Atom) and token.isdigit()):
                self.next("entry type")
                token = self.next("modseq")
            floor = modseq_value(token, "modseq")
            self.context.needs_info = True
            return lambda c: c.message.modseq >= floor
        if name == "$" or seqset.is_sequence_set(str(token)):
            chosen = self._set(str(token), uid=False)
            return lambda c: c.uid in chosen
        raise SyntaxFault(f"unknown search key {name[:30]}")

    def _set(self, text: str, *, uid: bool) -> frozenset[int]:
        """UIDs named by a sequence set, UID set, or ``$``."""
        if text == "$":
            return frozenset(self.context.saved)
        ranges = seqset.parse_ranges(text)
        uids = self.context.uids
        if uid:
            return frozenset(seqset.resolve_uids(ranges, uids))
        return frozenset(uids[n - 1] for n in seqset.resolve_sequence(ranges, len(uids)))

    def _header(self, field: str, needle: str) -> Predicate:
        self.context.needs_headers = True
        self.context.header_fields.add(field.lower())
        if not needle:  # RFC 9051 §6.4.4: HEADER field "" matches any message with it
            return lambda c: bool(mime_search.header_text(c.parsed(), field))
        # A needle of ASCII without spaces is found in a plain ASCII header block iff
        # its bytes are in the field's lines: a byte test that spares parsing.
        quick = needle.encode().lower() if needle.isascii() and not any(
            ch.isspace() for ch in needle) else None

        # The field's lines (folded ones included) in a lower-cased header block
        # that starts with a line end: a literal search, no per-position anchoring.
        field_lines = re.compile(
            rb"\n" + re.escape(field.lower().encode("utf-8", "replace")) + rb"[ \t]*:"
            rb"([^\n]*(?:\n[ \t][^\n]*)*)"
        ).findall

        def test(c: Candidate) -> bool:
            head = c.head
            if quick is not None and head is not None and head.isascii() and b"=?" not in head:
                # Plain ASCII without encoded-words: the decoded value is these bytes,
                # unfolded, and a needle without spaces cannot straddle a fold.
                return quick in b"\n".join(field_lines(b"\n" + head.lower()))
            return any(
                mime_search.contains(value, needle)
                for value in mime_search.header_text(c.parsed(), field)
            )

        return test


def _and(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    return lambda c: all(p(c) for p in predicates)


def _internal_day(c: Candidate) -> dt.date | None:
    return c.message.internal_date.astimezone(dt.UTC).date()


def _sent_day(c: Candidate) -> dt.date | None:
    sent = mime_search.sent_date(c.parsed())
    if sent is None:
        return None
    if isinstance(sent, dt.datetime):
        return sent.date()
    return sent


def _date_test(
    kind: str, day: dt.date, day_of: Callable[[Candidate], dt.date | None]
) -> Predicate:
    def test(c: Candidate) -> bool:
        value = day_of(c)
        if value is None:
            return False
        if kind == "BEFORE":
            return value < day
        if kind == "ON":
            return value == day
        return value >= day

    return test


def compile_keys(tokens: list[Token], context: Context) -> Predicate:
    return _Reader(tokens, context).all()


def strip_charset(tokens: list[Token]) -> list[Token]:
    """``CHARSET x`` at the start; only UTF-8 and US-ASCII (RFC 9051 §6.4.4)."""
    if tokens and isinstance(tokens[0], Atom) and tokens[0].upper() == "CHARSET":
        if len(tokens) < 2:
            raise SyntaxFault("CHARSET needs a name")
        charset = astring(tokens[1], "charset").upper()
        if charset not in CHARSETS:
            from mailserver.imap.session import No

            raise No("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset")
        return tokens[2:]
    return tokens
