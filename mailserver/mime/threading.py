"""RFC 5256 SORT and THREAD helpers: base subject, sort keys, ORDEREDSUBJECT, REFERENCES,
and the THREAD response syntax. Pure functions over plain values; no recursion on
message-controlled depth (reference chains can be as long as a folder).
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .addresses import MISSING_HOST, parse_address_list
from .encoded_words import decode_header
from .parse import ParsedMessage

__all__ = [
    "SORT_CRITERIA",
    "SortItem",
    "Thread",
    "ThreadItem",
    "address_key",
    "base_subject",
    "display_key",
    "format_threads",
    "message_ids",
    "sent_datetime",
    "sort_key",
    "sort_messages",
    "thread_item",
    "thread_orderedsubject",
    "thread_references",
]

# -- base subject (RFC 5256 §2.1) ---------------------------------------------------------------

_WS_RUN = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\][ \t]*"  # subj-blob = "[" *BLOBCHAR "]" *WSP
_REFWD = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:", re.IGNORECASE)
_BLOB_RE = re.compile(_BLOB)


def _base_subject(subject: str) -> tuple[str, bool]:
    """(base subject, whether extraction removed a reply/forward marker)."""
    if "=?" in subject:
        subject = decode_header(subject.encode("utf-8", "surrogateescape"))
    text = _WS_RUN.sub(" ", subject)  # step (1)
    start, end = 0, len(text)
    is_reply = False
    while True:
        # step (2): remove subj-trailer ("(fwd)" / WSP) repeatedly, from the end
        while end > start:
            if text[end - 1] in " \t":
                end -= 1
            elif end - start >= 5 and text[end - 5 : end].lower() == "(fwd)":
                end -= 5
                is_reply = True
            else:
                break
        # steps (3)-(5): remove subj-leader and leading subj-blob repeatedly. Once subj-refwd
        # fails at a position, it fails after removing a blob too (its *subj-blob absorbs
        # blobs), so it is not retried: linear time on "[a][a][a]..." subjects.
        refwd_possible = True
        while start < end:
            if text[start] in " \t":
                start += 1
                continue
            if refwd_possible:
                m = _REFWD.match(text, start, end)
                if m is not None:
                    start = m.end()
                    is_reply = True
                    continue
                refwd_possible = False
            m = _BLOB_RE.match(text, start, end)
            if m is not None and m.end() < end:
                start = m.end()
                continue
            break
        # step (6): "[fwd:" ... "]" wrapper, then again from step (2)
        if end - start >= 6 and text[start : start + 5].lower() == "[fwd:" and text[end - 1] == "]":
            start += 5
            end -= 1
            is_reply = True
            continue
        return text[start:end], is_reply


def base_subject(subject: str) -> str:
    """RFC 5256 §2.1 base subject (encoded-words decoded, whitespace collapsed)."""
    return _base_subject(subject)[0]


# -- SORT keys (RFC 5256 §3, RFC 5957) ----------------------------------------------------------

SORT_CRITERIA = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def address_key(value: bytes | None) -> str:
    """RFC 5256 §3 FROM/TO/CC: addr-mailbox of the first address, case-folded; "" if none."""
    if not value:
        return ""
    for addr in parse_address_list(value):
        if addr.host is not None and addr.mailbox is not None:
            return decode_header(addr.mailbox).casefold()
    return ""


def display_key(value: bytes | None) -> str:
    """RFC 5957 DISPLAYFROM/DISPLAYTO: the decoded display-name of the first address, else
    its addr-spec; case-folded."""
    if not value:
        return ""
    for addr in parse_address_list(value):
        if addr.host is None or addr.mailbox is None:
            continue
        if addr.name:
            return decode_header(addr.name).casefold()
        spec = addr.mailbox if addr.host == MISSING_HOST else addr.mailbox + b"@" + addr.host
        return decode_header(spec).casefold()
    return ""


def _aware(dt: datetime.datetime) -> datetime.datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=datetime.UTC)


def sent_datetime(msg: ParsedMessage) -> datetime.datetime | None:
    """The Date: header as an aware datetime, None when absent or unparsable."""
    value = msg.header_value("date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return None if parsed is None else _aware(parsed)


@dataclass(frozen=True, slots=True)
class SortItem:
    """What SORT needs of one message: sequence number (or UID), parsed content, INTERNALDATE,
    RFC822.SIZE."""

    number: int
    msg: ParsedMessage
    arrival: datetime.datetime
    size: int


def sort_key(item: SortItem, criterion: str) -> float | int | str:
    """The key of one SORT criterion (RFC 5256 §3; DISPLAY* per RFC 5957)."""
    crit = criterion.upper()
    msg = item.msg
    if crit == "ARRIVAL":
        return _aware(item.arrival).timestamp()
    if crit == "DATE":
        # "If the sent date cannot be determined, then use the INTERNALDATE."
        sent = sent_datetime(msg)
        return (sent if sent is not None else _aware(item.arrival)).timestamp()
    if crit == "SIZE":
        return item.size
    if crit == "SUBJECT":
        subject = msg.header_value("subject")
        return base_subject(decode_header(subject)).casefold() if subject else ""
    if crit in ("FROM", "TO", "CC"):
        return address_key(msg.header_value(crit.lower()))
    if crit == "DISPLAYFROM":
        return display_key(msg.header_value("from"))
    if crit == "DISPLAYTO":
        return display_key(msg.header_value("to"))
    raise ValueError(f"unknown sort criterion {criterion!r}")


def sort_messages(items: Sequence[SortItem], criteria: Sequence[str]) -> list[int]:
    """Numbers of `items` sorted by the SORT program `criteria` (e.g. ["REVERSE", "DATE",
    "SUBJECT"]); REVERSE applies to the criterion after it; ties keep number order (§3)."""
    keys: list[tuple[str, bool]] = []
    reverse = False
    for crit in criteria:
        upper = crit.upper()
        if upper == "REVERSE":
            reverse = True
            continue
        if upper not in SORT_CRITERIA:
            raise ValueError(f"unknown sort criterion {crit!r}")
        keys.append((upper, reverse))
        reverse = False
    ordered = sorted(items, key=lambda it: it.number)
    for crit, rev in reversed(keys):  # stable sorts, least significant key first
        cache = {it.number: sort_key(it, crit) for it in ordered}
        ordered.sort(key=lambda it, c=cache: c[it.number], reverse=rev)  # type: ignore[misc]
    return [it.number for it in ordered]


# -- THREAD (RFC 5256 §3) -----------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadItem:
    """What THREAD needs of one message. `sent` is the Date: header, or INTERNALDATE when the
    message has none (RFC 5256 §3 "sent date")."""

    number: int
    message_id: str | None
    references: list[str]
    in_reply_to: str | None
    subject: str
    sent: datetime.datetime


@dataclass
class Thread:
    """A node of a thread tree; `number` None is a dummy (a missing parent)."""

    number: int | None
    children: list[Thread] = field(default_factory=list)


_MSG_ID = re.compile(r"<([^<>\s]+)>")


def message_ids(value: str | None) -> list[str]:
    """The `<id>` message-ids of a References/In-Reply-To value, without angle brackets."""
    if not value:
        return []
    return _MSG_ID.findall(value)


def _one_id(value: str | None) -> str | None:
    if not value:
        return None
    ids = message_ids(value)
    if ids:
        return ids[0]
    value = value.strip()
    return value or None


def thread_item(number: int, msg: ParsedMessage, arrival: datetime.datetime) -> ThreadItem:
    """Build a ThreadItem from a parsed message (sent date falls back to `arrival`)."""

    def text(name: str) -> str | None:
        value = msg.header_value(name)
        return None if value is None else value.decode("latin-1")

    refs = " ".join(v.decode("latin-1") for v in msg.header_values("references"))
    return ThreadItem(
        number=number,
        message_id=_one_id(text("message-id")),
        references=message_ids(refs),
        in_reply_to=text("in-reply-to"),
        subject=decode_header(msg.header_value("subject") or b""),
        sent=sent_datetime(msg) or _aware(arrival),
    )


def _date_key(item: ThreadItem) -> tuple[float, int]:
    return (_aware(item.sent).timestamp(), item.number)


def thread_orderedsubject(items: Iterable[ThreadItem]) -> list[Thread]:
    """THREAD=ORDEREDSUBJECT (RFC 5256 §3): group by base subject; within a group the first
    message (by sent date) is the parent of all others; threads in order of their first."""
    groups: dict[str, list[ThreadItem]] = {}
    for item in items:
        groups.setdefault(base_subject(item.subject).casefold(), []).append(item)
    threads: list[tuple[tuple[float, int], Thread]] = []
    for members in groups.values():
        members.sort(key=_date_key)
        root = Thread(members[0].number, [Thread(m.number) for m in members[1:]])
        threads.append((_date_key(members[0]), root))
    threads.sort(key=lambda t: t[0])
    return [t for _, t in threads]


class _Container:
    __slots__ = ("children", "item", "parent")

    def __init__(self) -> None:
        self.item: ThreadItem | None = None
        self.parent: _Container | None = None
        self.children: list[_Container] = []


# Walking up a reference chain is bounded: a thread deeper than this is split rather than
# letting a crafted folder make THREAD quadratic.
_MAX_WALK = 4096


def _would_loop(a: _Container, b: _Container) -> bool:
    """True when making `a` the child of `b` would create a loop: `a` is `b` or one of b's
    ancestors (RFC 5256 §3 REFERENCES step 1.A). Also True past `_MAX_WALK` ancestors."""
    if a is b:
        return True
    if not a.children:  # a leaf cannot be anybody's ancestor
        return False
    node: _Container | None = b.parent
    steps = 0
    while node is not None:
        if node is a or steps >= _MAX_WALK:
            return True
        node = node.parent
        steps += 1
    return False


def _unlink(c: _Container) -> None:
    if c.parent is not None:
        c.parent.children.remove(c)
        c.parent = None


def _link(parent: _Container, child: _Container) -> None:
    child.parent = parent
    parent.children.append(child)


def _first_item(c: _Container) -> ThreadItem | None:
    """The message itself, or for a dummy its first (sorted) child's message."""
    node: _Container | None = c
    while node is not None and node.item is None:
        node = node.children[0] if node.children else None
    return None if node is None else node.item


def _sort_key(c: _Container) -> tuple[float, int]:
    item = _first_item(c)
    return (float("inf"), 0) if item is None else _date_key(item)


def _postorder(roots: list[_Container]) -> list[_Container]:
    out: list[_Container] = []
    stack: list[tuple[_Container, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, done = stack.pop()
        if done:
            out.append(node)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(node.children))
    return out


def _sort_all(roots: list[_Container]) -> None:
    """RFC 5256 REFERENCES step (6): sort every sibling set by sent date, deepest first."""
    for node in _postorder(roots):
        node.children.sort(key=_sort_key)
    roots.sort(key=_sort_key)


def thread_references(items: Iterable[ThreadItem]) -> list[Thread]:
    """THREAD=REFERENCES (RFC 5256 §3), steps (1) to (6)."""
    table: dict[str, _Container] = {}
    all_containers: list[_Container] = []
    unique = 0

    def get(msg_id: str) -> _Container:
        c = table.get(msg_id)
        if c is None:
            c = _Container()
            table[msg_id] = c
            all_containers.append(c)
        return c

    for item in sorted(items, key=lambda i: i.number):
        # (1): messages without an id, and later duplicates, get a unique one
        own_id = _one_id(item.message_id)
        container = table.get(own_id) if own_id is not None else None
        if container is None or container.item is not None:
            if own_id is None or container is not None:
                unique += 1
                own_id = f"\x00unique-{unique}"  # cannot collide: NUL is in no real id
            container = get(own_id)
        container.item = item
        refs = [r for r in map(_one_id, item.references) if r is not None]
        if not refs:
            irt = message_ids(item.in_reply_to)
            refs = irt[:1]
        # (1.A): link the references chain, keeping existing links and avoiding loops
        prev: _Container | None = None
        for ref in refs:
            c = get(ref)
            if prev is not None and c.parent is None and not _would_loop(c, prev):
                _link(prev, c)
            prev = c
        # (1.B): the last reference becomes the parent of this message
        _unlink(container)
        if prev is not None and not _would_loop(container, prev):
            _link(prev, container)

    # (2), (3): the root set; the id table is no longer needed
    roots = [c for c in all_containers if c.parent is None]
    table.clear()

    # (4): prune dummies (post-order, so promoted children are already pruned)
    for node in _postorder(roots):
        kept: list[_Container] = []
        for child in node.children:
            if child.item is None:
                for grandchild in child.children:
                    grandchild.parent = node
                kept.extend(child.children)
            else:
                kept.append(child)
        node.children = kept
    pruned: list[_Container] = []
    for root in roots:
        if root.item is None:
            if len(root.children) == 1:
                root.children[0].parent = None
                pruned.append(root.children[0])
            elif root.children:
                pruned.append(root)
        else:
            pruned.append(root)
    roots = pruned

    # (5.A): sort the root set by sent date (a dummy by its first child)
    for root in roots:
        if root.item is None:
            root.children.sort(key=_sort_key)
    roots.sort(key=_sort_key)

    # (5.B): gather threads with the same base subject
    def subject_of(c: _Container) -> tuple[str, bool]:
        item = _first_item(c)
        if item is None:
            return "", False
        base, is_reply = _base_subject(item.subject)
        return base.casefold(), is_reply

    subjects: dict[str, _Container] = {}
    info = {id(r): subject_of(r) for r in roots}
    for root in roots:
        subj, is_reply = info[id(root)]
        if not subj:
            continue
        old = subjects.get(subj)
        if old is None:
            subjects[subj] = root
        elif old.item is not None and (
            root.item is None or (info[id(old)][1] and not is_reply)
        ):
            subjects[subj] = root
    new_roots: list[_Container] = []
    removed: set[int] = set()
    replaced: dict[int, _Container] = {}
    for root in roots:
        subj, is_reply = info[id(root)]
        target = subjects.get(subj) if subj else None
        if target is None or target is root or root.parent is not None:
            new_roots.append(root)  # (a root already moved under a new dummy: see below)
            continue
        removed.add(id(root))
        if target.item is None and root.item is None:
            for child in root.children:
                child.parent = target
            target.children.extend(root.children)
        elif target.item is None:
            _link(target, root)
        elif is_reply and not info[id(target)][1]:
            _link(target, root)
        else:
            dummy = _Container()
            replaced[id(target)] = dummy
            _link(dummy, target)
            _link(dummy, root)
            subjects[subj] = dummy
            info[id(dummy)] = ("", False)
    roots = []
    placed: set[int] = set()
    for root in new_roots:
        if id(root) in removed:
            continue
        while id(root) in replaced:  # a table message that moved under a new dummy
            root = replaced[id(root)]
        if id(root) not in placed:
            placed.add(id(root))
            roots.append(root)

    # (6): sort every set of siblings
    _sort_all(roots)
    return [_to_thread(r) for r in roots]


def _to_thread(root: _Container) -> Thread:
    out = Thread(root.item.number if root.item is not None else None)
    stack: list[tuple[_Container, Thread]] = [(root, out)]
    while stack:
        c, t = stack.pop()
        for child in c.children:
            node = Thread(child.item.number if child.item is not None else None)
            t.children.append(node)
            stack.append((child, node))
    return out


# -- THREAD response (RFC 5256 §4) --------------------------------------------------------------


def format_threads(threads: Iterable[Thread]) -> bytes:
    """The THREAD response data, e.g. `(1 2)(3 (4)(5))` (RFC 5256 §4 thread-list).

    A chain of single children is written `(1 2 3)`; several children are each parenthesized
    after their parent; a dummy root writes only its children. Iterative, any depth.
    """
    out: list[str] = []
    # work items: a Thread to open at the start of a "(" ... ")" group, or literal text
    stack: list[Thread | str] = []
    for thread in reversed(list(threads)):
        stack.append(")")
        stack.append(thread)
        stack.append("(")
    while stack:
        work = stack.pop()
        if isinstance(work, str):
            out.append(work)
            continue
        node: Thread | None = work
        first = True
        while node is not None:
            if node.number is not None:
                out.append(str(node.number) if first else " " + str(node.number))
                first = False
            kids = node.children
            if len(kids) == 1 and node.number is not None:
                node = kids[0]
                continue
            if kids:
                if not first:
                    out.append(" ")
                for kid in reversed(kids):
                    stack.append(")")
                    stack.append(kid)
                    stack.append("(")
            node = None
    return "".join(out).encode("ascii")
