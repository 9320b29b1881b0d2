"""Commands on messages: APPEND, FETCH, STORE, COPY, MOVE, EXPUNGE, SEARCH, SORT,
THREAD and their UID forms (RFC 9051 §6.3.12, §6.4; RFC 4315, 6851, 7162, 4731,
5182, 5256, 3516)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import cast

from mailserver.imap import fetchitems, seqset
from mailserver.imap import search as searching
from mailserver.imap.session import Bad, No, Session, format_flags
from mailserver.imap.state import Selected
from mailserver.imap.syntax import (
    Atom,
    Command,
    SyntaxFault,
    Token,
    astring,
    is_atom,
    modseq_value,
)
from mailserver.mime import threading as mime_threading
from mailserver.mime.parse import ParsedMessage
from mailserver.mime.summary import HEAD_FIELDS, Rendered
from mailserver.store import Appended, MessageInfo, StoreError

SYSTEM_FLAGS = {f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen",
                                        "\\Draft")}
_KEYWORD = re.compile(r"^[!#$&'+\-.0-9:;<=>?@A-Z^_`a-z|~\x80-\U0010ffff]{1,100}$")
_DATE_TIME = re.compile(
    r"^([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$"
)


# ---- shared helpers ------------------------------------------------------------------


def parse_flags(tokens: list[Token]) -> set[str]:
    flags = set()
    for token in tokens:
        text = astring(token, "flag")
        if text.startswith("\\"):
            system = SYSTEM_FLAGS.get(text.upper())
            if system is None:
                raise SyntaxFault(f"{text[:30]} is not a flag that can be set")
            flags.add(system)
        elif _KEYWORD.match(text):
            flags.add(text)
        else:
            raise SyntaxFault(f"invalid keyword {text[:30]!r}")
    if len(flags) > 100:
        raise SyntaxFault("too many flags")
    return flags


def targets(session: Session, token: Token, *, uid: bool) -> list[int]:
    """The UIDs a sequence set or UID set names, in the session's view."""
    selected = session.require_selected()
    if not isinstance(token, Atom):
        raise SyntaxFault("sequence set expected")
    text = str(token)
    if text == "$":  # RFC 5182
        saved = set(selected.saved)
        return [u for u in selected.uids if u in saved]
    ranges = seqset.parse_ranges(text)
    if uid:
        return seqset.resolve_uids(ranges, selected.uids)
    count = len(selected.uids)
    for first, last in ranges:
        # RFC 3501 §9 seq-number: a number above the message count (or "*" in an empty
        # mailbox) is an error; a range is clipped to the messages that exist, as
        # Dovecot does, as long as it starts within them.
        low = first if first is not None else count
        if count == 0 or (low > count and (last is None or last > count)):
            raise Bad("invalid message sequence number (no such message)")
    return [selected.uids[n - 1] for n in seqset.resolve_sequence(ranges, count)]


def _parse_date_time(text: str) -> dt.datetime:
    found = _DATE_TIME.match(text)
    months = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
              "DEC")
    if found is None or found.group(2).upper() not in months:
        raise SyntaxFault("invalid date-time (expected \"dd-Mon-yyyy hh:mm:ss +zzzz\")")
    day, month, year, hour, minute, second, sign, zh, zm = found.groups()
    offset = dt.timedelta(hours=int(zh), minutes=int(zm)) * (1 if sign == "+" else -1)
    try:
        return dt.datetime(int(year), months.index(month.upper()) + 1, int(day), int(hour),
                           int(minute), int(second), tzinfo=dt.timezone(offset))
    except ValueError as error:
        raise SyntaxFault(f"invalid date-time: {error}") from error


def _message_id(raw: bytes) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0][:65536]
    found = re.search(rb"(?im)^message-id:\s*(<[^>\r\n]{1,900}>)", head)
    return found.group(1).decode("utf-8", "replace") if found else None


# ---- APPEND ----------------------------------------------------------------------------


async def append(session: Session, command: Command) -> None:
    """APPEND with MULTIAPPEND (RFC 3502) and APPENDLIMIT (RFC 7889)."""
    args = list(command.args)
    if not args:
        raise SyntaxFault("mailbox name expected")
    name = session.mailbox_name(args.pop(0))
    assert session.mailbox is not None
    folder = await session.store.folder(session.mailbox.id, name)
    if folder is None:
        raise No("[TRYCREATE] no such mailbox")
    batch: list[tuple[bytes, set[str], dt.datetime | None]] = []
    while args:
        flags: set[str] = set()
        when = None
        if isinstance(args[0], list):
            flags = parse_flags(cast(list[Token], args.pop(0)))
        # A date-time is a quoted string of its own shape; anything else here is the
        # message (MULTIAPPEND puts messages one after another, RFC 3502).
        if (args and isinstance(args[0], bytes) and len(args[0]) <= 40 and len(args) > 1
                and _DATE_TIME.match(args[0].decode("latin-1"))):
            when = _parse_date_time(astring(args.pop(0), "date-time"))
        if not args:
            raise SyntaxFault("message literal expected")
        message = args.pop(0)
        if isinstance(message, Atom) or isinstance(message, list):
            raise SyntaxFault("message literal expected")
        if not message:
            raise No("empty message")
        if len(message) > session.config.append_limit:
            raise No(f"[TOOBIG] messages are limited to {session.config.append_limit} bytes")
        batch.append((bytes(message), flags, when))
    if not batch:
        raise SyntaxFault("message literal expected")
    try:
        # RFC 3502 §6.3.11: all the messages are appended, or none is.
        stored = await session.store.append_many(session.mailbox.id, name, [
            Appended(raw, frozenset(flags), when, _message_id(raw)) for raw, flags, when in batch
        ])
    except StoreError as error:
        raise No(f"[TRYCREATE] {error}") from error
    uids = [item.uid for item in stored]
    uidvalidity = stored[-1].uidvalidity
    if session.selected is not None and session.selected.folder.id == folder.id:
        # RFC 9051 §6.3.12: EXISTS at once (the bus may tell us only later).
        session.selected.dirty = True
    # RFC 4315 §3: APPENDUID
    session.tagged(command.tag, "OK",
                   f"[APPENDUID {uidvalidity} {seqset.render(uids)}] APPEND completed")


# ---- FETCH -----------------------------------------------------------------------------


async def fetch(session: Session, command: Command) -> None:
    uid_form = command.name.startswith("UID")
    selected = session.require_selected()
    if len(command.args) < 2:
        raise SyntaxFault("FETCH needs a sequence set and items")
    wanted = targets(session, command.args[0], uid=uid_form)
    request = fetchitems.parse_items(command.args[1])
    changed_since: int | None = None
    vanished = False
    if len(command.args) > 2:
        modifiers = command.args[2]
        if not isinstance(modifiers, list) or len(command.args) > 3:
            raise SyntaxFault("FETCH modifiers must be a list")
        index = 0
        while index < len(modifiers):
            if is_atom(modifiers[index], "CHANGEDSINCE") and index + 1 < len(modifiers):
                changed_since = modseq_value(modifiers[index + 1], "CHANGEDSINCE")
                session.enabled.add("CONDSTORE")
                index += 2
            elif is_atom(modifiers[index], "VANISHED") and uid_form:
                if "QRESYNC" not in session.enabled:
                    raise Bad("VANISHED needs QRESYNC enabled")
                vanished = True
                index += 1
            else:
                raise SyntaxFault("unknown FETCH modifier")
        if vanished and changed_since is None:
            raise Bad("VANISHED needs CHANGEDSINCE (RFC 7162 §3.2.6)")
    if uid_form and not request.has("UID"):
        request.items.insert(0, fetchitems.Item("UID", label="UID"))
    if session.condstore and (changed_since is not None or request.has("FLAGS")) and not \
            request.has("MODSEQ"):
        request.items.append(fetchitems.Item("MODSEQ", label="MODSEQ"))
    if vanished and changed_since is not None:
        gone = await session.store.vanished_since(selected.folder.id, changed_since)
        wanted_set = set(seqset.uids_in_ranges(seqset.parse_ranges(str(command.args[0])),
                                               selected.folder.uidnext) or ())
        gone = [u for u in gone if u in wanted_set]
        if gone:
            session.untagged(f"VANISHED (EARLIER) {seqset.render(gone)}")
    if not wanted:
        session.tagged(command.tag, "OK", f"{command.name} completed (no messages)")
        return
    await _fetch_messages(session, selected, wanted, request, changed_since)
    session.tagged(command.tag, "OK", f"{command.name} completed")


async def _fetch_messages(
    session: Session, selected: Selected, wanted: list[int],
    request: fetchitems.FetchRequest, changed_since: int | None,
) -> None:
    kinds = {item.kind for item in request.items}
    if kinds <= {"UID", "FLAGS"} and changed_since is None:
        # Flags as this session knows them (kept current by refresh()): no query,
        # and one write with the tagged answer (run() flushes after the command).
        _fetch_flags_from_view(session, selected, wanted, request)
        return
    if len(wanted) > 2000:
        chosen = set(wanted)
        infos = [m for m in await session.store.messages(selected.folder.id)
                 if m.uid in chosen]
    else:
        infos = await session.store.messages_by_uid(selected.folder.id, wanted)
    if changed_since is not None:
        infos = [m for m in infos if m.modseq > changed_since]
    if request.sets_seen and not selected.readonly:
        unseen = [m.uid for m in infos if "\\Seen" not in m.flags]
        if unseen:
            result = await session.store.store_flags(selected.folder.id, unseen, {"\\Seen"},
                                                     "add")
            updated = {m.uid: m for m in result.changed}
            infos = [updated.get(m.uid, m) for m in infos]
            if not request.has("FLAGS"):  # RFC 9051 §6.4.5: report the new \Seen flag
                request.items.append(fetchitems.Item("FLAGS", label="FLAGS"))
    cache: fetchitems.ParseCache = _cache(session)
    written = 0
    raws: dict[str, bytes] = {}
    # ENVELOPE, BODYSTRUCTURE, BODY alone: from the summaries, no body opened.
    from_summary = request.needs_body and not request.needs_whole_body
    summaries: dict[int, Rendered] = {}
    if from_summary:
        summaries = await session.store.rendered(
            selected.folder.id, _mailbox_id(session), [m.uid for m in infos])
    for position, info in enumerate(infos):
        seq = selected.seq_of(info.uid)
        if seq is None or info.uid in selected.pending_expunge:
            continue
        selected.flags[info.uid] = info.flags
        raw: bytes | None = None
        parsed: ParsedMessage | None = None
        summary = summaries.get(info.uid)  # none: expunged meanwhile, or unrenderable
        if request.needs_body and summary is None:
            if info.blob_sha256 not in raws:
                raws = await session.store.bodies(
                    [m.blob_sha256 for m in infos[position:position + 100]],
                    mailbox_id=_mailbox_id(session))
            raw = raws[info.blob_sha256]
            parsed = cache.get(info.blob_sha256, raw)
        parts = []
        for item in request.items:
            try:
                parts.append(fetchitems.render(item, info, info.flags, raw, parsed,
                                               utf8=session.utf8,
                                               flag_text=session.flag_text(info.uid,
                                                                           info.flags),
                                               summary=summary))
            except fetchitems.UnfetchableData as error:
                raise No(f"[UNKNOWN-CTE] {error}") from error
        session.untagged(f"{seq} FETCH (".encode() + b" ".join(parts) + b")")
        written += len(parts)
        if written > 2000:
            await session.flush()
            written = 0


def _fetch_flags_from_view(
    session: Session, selected: Selected, wanted: list[int], request: fetchitems.FetchRequest
) -> None:
    names = [item.kind for item in request.items]
    uid_first = names == ["UID", "FLAGS"]
    pending, flags_of, recent = selected.pending_expunge, selected.flags, selected.recent
    texts: dict[frozenset[str], str] = {}  # few distinct flag sets: format each once
    lines: list[str] = []
    for seq, uid in _positions(selected, wanted):
        if uid in pending:
            continue
        flags = flags_of.get(uid)
        if flags is None:
            continue
        if uid in recent:  # RFC 3501 §2.3.2: this session's \Recent is per message
            text = f"FLAGS ({session.flag_text(uid, flags)})"
        elif flags in texts:
            text = texts[flags]
        else:
            text = texts[flags] = f"FLAGS ({format_flags(flags)})"
        if uid_first:  # the usual UID FETCH 1:* (FLAGS)
            lines.append(f"* {seq} FETCH (UID {uid} {text})")
        else:
            parts = " ".join(f"UID {uid}" if kind == "UID" else text for kind in names)
            lines.append(f"* {seq} FETCH ({parts})")
        if len(lines) >= 10_000:
            session.send("\r\n".join(lines).encode())
            lines.clear()
    if lines:
        session.send("\r\n".join(lines).encode())


def _positions(selected: Selected, wanted: list[int]) -> Iterator[tuple[int, int]]:
    """(sequence number, UID) of each UID of ``wanted`` (ascending) in the view."""
    uids = selected.uids
    if len(wanted) * 8 >= len(uids):  # much of the folder: one walk, no look-ups
        chosen = set(wanted)
        return ((seq, uid) for seq, uid in enumerate(uids, start=1) if uid in chosen)
    return ((seq, uid) for seq, uid in ((selected.seq_of(u), u) for u in wanted)
            if seq is not None)


def _cache(session: Session) -> fetchitems.ParseCache:
    cache = getattr(session, "_parse_cache", None)
    if cache is None:
        cache = fetchitems.ParseCache()
        session._parse_cache = cache  # type: ignore[attr-defined]
    return cache


# ---- STORE ----------------------------------------------------------------------------


async def store(session: Session, command: Command) -> None:
    uid_form = command.name.startswith("UID")
    selected = session.require_selected()
    args = list(command.args)
    if len(args) < 3:
        raise SyntaxFault("STORE needs a sequence set, an action and flags")
    wanted = targets(session, args.pop(0), uid=uid_form)
    unchanged_since: int | None = None
    if isinstance(args[0], list):
        modifier = cast(list[Token], args.pop(0))
        if len(modifier) != 2 or not is_atom(modifier[0], "UNCHANGEDSINCE"):
            raise SyntaxFault("unknown STORE modifier")
        unchanged_since = modseq_value(modifier[1], "UNCHANGEDSINCE")
        session.enabled.add("CONDSTORE")
    if len(args) < 2:
        raise SyntaxFault("STORE needs an action and flags")
    action = astring(args.pop(0), "STORE action").upper()
    silent = action.endswith(".SILENT")
    base = action.removesuffix(".SILENT")
    modes = {"FLAGS": "set", "+FLAGS": "add", "-FLAGS": "remove"}
    if base not in modes:
        raise SyntaxFault("STORE action must be FLAGS, +FLAGS or -FLAGS (optionally .SILENT)")
    flag_tokens = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    flags = parse_flags(flag_tokens)
    if selected.readonly:
        raise No("[READ-ONLY] the mailbox is open read-only (EXAMINE)")
    result = await session.store.store_flags(
        selected.folder.id, wanted, flags, modes[base],  # type: ignore[arg-type]
        unchanged_since=unchanged_since,
    )
    changed = {m.uid: m for m in result.changed}
    report = set(changed) if silent else set(wanted) - set(result.modified)
    if silent and unchanged_since is not None:
        report = set()
    current: dict[int, MessageInfo] = dict(changed)
    missing = [u for u in report if u not in current]
    if missing:
        for info in await session.store.messages_by_uid(selected.folder.id, missing):
            current[info.uid] = info
    for uid in sorted(set(changed) | report):
        found = current.get(uid)
        if found is None:
            continue
        info = found
        selected.flags[uid] = info.flags
        if uid not in report and not (session.condstore and uid in changed):
            continue
        if silent and not session.condstore:
            continue
        seq = selected.seq_of(uid)
        if seq is None:
            continue
        items = f"FLAGS ({session.flag_text(uid, info.flags)})"
        if silent:  # RFC 7162 §3.1.3: MODSEQ is still reported
            items = ""
        if uid_form:
            items += f" UID {uid}"
        if session.condstore:
            items += f" MODSEQ ({info.modseq})"
        session.untagged(f"{seq} FETCH ({items.strip()})")
    if result.modified:
        numbers = result.modified if uid_form else [
            s for s in (selected.seq_of(u) for u in result.modified) if s is not None]
        session.tagged(command.tag, "OK",
                       f"[MODIFIED {seqset.render(numbers)}] conditional STORE failed")
        return
    session.tagged(command.tag, "OK", f"{command.name} completed")


# ---- COPY / MOVE / EXPUNGE --------------------------------------------------------------


async def copy(session: Session, command: Command) -> None:
    uid_form = command.name.startswith("UID")
    move = command.name.endswith("MOVE")
    selected = session.require_selected()
    if len(command.args) != 2:
        raise SyntaxFault(f"{command.name} needs a sequence set and a mailbox")
    wanted = targets(session, command.args[0], uid=uid_form)
    name = session.mailbox_name(command.args[1])
    assert session.mailbox is not None
    destination = await session.store.folder(session.mailbox.id, name)
    if destination is None:
        raise No("[TRYCREATE] no such mailbox")
    if move and selected.readonly:
        raise No("[READ-ONLY] the mailbox is open read-only (EXAMINE)")
    wanted = [u for u in wanted if u not in selected.pending_expunge]
    if not wanted:
        session.tagged(command.tag, "OK", f"{command.name} completed (no messages)")
        return
    result = await session.store.copy_messages(selected.folder.id, wanted, destination.id,
                                               move=move)
    if destination.id == selected.folder.id:
        selected.dirty = True  # EXISTS before the tagged OK (the bus may tell us later)
    code = ""
    if result.pairs:
        code = (f"[COPYUID {result.uidvalidity} {seqset.render(p[0] for p in result.pairs)} "
                f"{seqset.render(p[1] for p in result.pairs)}] ")
        # RFC 4315 requires source and destination in the same order: both ascend.
    if move:
        if code:
            session.untagged(f"OK {code}moved")  # RFC 6851 §4.3
        selected.pending_expunge.update(p[0] for p in result.pairs)
        session.tagged(command.tag, "OK", f"{command.name} completed")
        return
    session.tagged(command.tag, "OK", f"{code}{command.name} completed")


async def expunge(session: Session, command: Command) -> None:
    selected = session.require_selected()
    if selected.readonly:
        raise No("[READ-ONLY] the mailbox is open read-only (EXAMINE)")
    await session.refresh(expunges=False, force=True)
    candidates = [u for u, flags in selected.flags.items() if "\\Deleted" in flags]
    if command.name == "UID EXPUNGE":  # RFC 4315 §2.1
        if len(command.args) != 1:
            raise SyntaxFault("UID EXPUNGE needs a UID set")
        chosen = set(targets(session, command.args[0], uid=True))
        candidates = [u for u in candidates if u in chosen]
    elif command.args:
        raise SyntaxFault("EXPUNGE takes no arguments")
    removed = await session.store.expunge(selected.folder.id, sorted(candidates))
    selected.pending_expunge.update(removed)
    session.tagged(command.tag, "OK", f"{command.name} completed")


# ---- SEARCH / SORT / THREAD -----------------------------------------------------------------


Match = tuple[int, int, MessageInfo | None, Callable[[], ParsedMessage]]


async def _matching(
    session: Session, tokens: list[Token], *, need_headers: bool = False,
    need_info: bool = False,
) -> list[Match]:
    """(sequence number, UID, message or None, parsed header) of the matching messages
    (with ``need_headers`` the parsed header is kept for SORT and THREAD).

    Header keys are answered from the message summaries when they have every field
    asked (no body opened); the message rows are loaded only when a key needs them."""
    selected = session.require_selected()
    tokens = searching.strip_charset(tokens)
    context = searching.Context(uids=selected.uids, saved=selected.saved,
                                recent=frozenset(selected.recent))
    predicate = searching.compile_keys(tokens, context)
    pending, flags = selected.pending_expunge, selected.flags
    view = [(seq, uid) for seq, uid in enumerate(selected.uids, start=1)
            if uid in flags and uid not in pending]
    whole = context.needs_body
    wants_headers = need_headers or context.needs_headers
    from_summary = wants_headers and not whole and context.header_fields <= HEAD_FIELDS
    from_body = whole or (wants_headers and not from_summary)
    infos: dict[int, MessageInfo] = {}
    loaded = need_info or context.needs_info or from_body
    if loaded:
        infos = {m.uid: m for m in await session.store.messages(selected.folder.id)}
    if not from_body:
        heads: dict[int, bytes] = {}
        if from_summary:
            heads = await session.store.summary_heads(
                selected.folder.id, _mailbox_id(session), [uid for _, uid in view])
        return _match_view(view, predicate, flags, infos if loaded else None,
                           heads if from_summary else None, keep=need_headers)
    cache = _cache(session)
    found: list[Match] = []
    for start in range(0, len(view), 500):
        chunk = [(seq, uid, infos[uid]) for seq, uid in view[start:start + 500]
                 if uid in infos]  # others were expunged meanwhile
        raws: dict[str, bytes]
        if whole:
            raws = await session.store.bodies([info.blob_sha256 for _, _, info in chunk],
                                              mailbox_id=_mailbox_id(session))
        else:
            raws = await _header_blocks(session, [info.blob_sha256 for _, _, info in chunk])
        for seq, uid, info in chunk:
            head = None
            if whole:
                getter = _parsed_from(cache, info.blob_sha256, raws[info.blob_sha256])
            else:
                head = raws[info.blob_sha256]
                getter = _parsed_from(None, info.blob_sha256, head)
            if predicate(searching.Candidate(seq, uid, info, flags[uid], getter, head)):
                found.append((seq, uid, info, getter))
    return found


def _match_view(
    view: list[tuple[int, int]], predicate: searching.Predicate,
    flags: dict[int, frozenset[str]], infos: dict[int, MessageInfo] | None,
    heads: dict[int, bytes] | None, *, keep: bool,
) -> list[Match]:
    """The matching loop without bodies: flags, message rows, summary headers. Runs
    once per message of the folder, so it reuses one candidate."""
    candidate = searching.Candidate(0, 0, None, frozenset(), _no_body, None)
    if heads is not None:
        candidate.parsed = _SummaryHeader(candidate).parsed
    found: list[Match] = []
    for seq, uid in view:
        info = None
        if infos is not None:
            info = infos.get(uid)
            if info is None:
                continue  # expunged meanwhile
        if heads is not None:
            head = heads.get(uid)
            if head is None:
                continue
            candidate.head = head
        candidate.seq, candidate.uid, candidate.info, candidate.flags = (
            seq, uid, info, flags[uid])
        if predicate(candidate):
            getter = (_parsed_from(None, "", candidate.head or b"") if keep and heads
                      else _no_body)
            found.append((seq, uid, info, getter))
    return found


class _SummaryHeader:
    """The candidate's summary header block, parsed once per message when a key asks."""

    def __init__(self, candidate: searching.Candidate) -> None:
        self._candidate = candidate
        self._head: bytes | None = None
        self._parsed: ParsedMessage | None = None

    def parsed(self) -> ParsedMessage:
        head = self._candidate.head or b""
        if self._parsed is None or self._head is not head:
            self._head, self._parsed = head, ParsedMessage.from_bytes(head)
        return self._parsed


def _mailbox_id(session: Session) -> int:
    """Whose keys open the bodies: the logged-in mailbox (encryption at rest)."""
    assert session.mailbox is not None  # messages are read in the selected state only
    return session.mailbox.id


async def _header_blocks(session: Session, digests: list[str]) -> dict[str, bytes]:
    """The header block of each message (its first 16 KiB, or all of it if longer)."""
    blocks = await session.store.bodies(digests, mailbox_id=_mailbox_id(session),
                                        prefix=HEADER_PREFIX)
    out: dict[str, bytes] = {}
    long: list[str] = []
    for digest, data in blocks.items():
        end = _header_end(data)
        if end is None and len(data) >= HEADER_PREFIX:
            long.append(digest)
        else:
            out[digest] = data if end is None else data[:end]
    if long:
        for digest, data in (
            await session.store.bodies(long, mailbox_id=_mailbox_id(session))
        ).items():
            end = _header_end(data)
            out[digest] = data if end is None else data[:end]
    return out


HEADER_PREFIX = 16384


def _header_end(data: bytes) -> int | None:
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    ends = [e + 4 for e in (crlf,) if e >= 0] + [e + 2 for e in (lf,) if e >= 0]
    return min(ends) if ends else None


def _parsed_from(cache: fetchitems.ParseCache | None, key: str,
                 raw: bytes) -> Callable[[], ParsedMessage]:
    held: list[ParsedMessage] = []

    def get() -> ParsedMessage:
        if not held:
            held.append(cache.get(key, raw) if cache is not None
                        else ParsedMessage.from_bytes(raw))
        return held[0]

    return get


def _no_body() -> ParsedMessage:
    raise RuntimeError("message body needed but not loaded")


async def search(session: Session, command: Command) -> None:
    """SEARCH, with ESEARCH return options (RFC 4731) and SAVE (RFC 5182)."""
    uid_form = command.name.startswith("UID")
    selected = session.require_selected()
    args = list(command.args)
    returns: list[str] | None = None
    if args and is_atom(args[0], "RETURN"):
        if len(args) < 2 or not isinstance(args[1], list):
            raise SyntaxFault("RETURN needs a list of options")
        returns = [astring(t, "return option").upper() for t in args[1]]
        if set(returns) - {"MIN", "MAX", "ALL", "COUNT", "SAVE"}:
            raise SyntaxFault("unknown SEARCH return option")
        args = args[2:]
        if not returns:
            returns = ["ALL"]
    found = await _matching(session, args)
    numbers = [uid if uid_form else seq for seq, uid, _, _ in found]
    if returns is not None and "SAVE" in returns:
        selected.saved = [uid for _, uid, _, _ in found]
        if returns == ["SAVE"]:
            session.tagged(command.tag, "OK", f"{command.name} completed (saved)")
            return
    esearch = returns is not None or "IMAP4REV2" in session.enabled
    if not esearch:
        text = "SEARCH" + "".join(f" {n}" for n in numbers)
        if session.condstore and found and _uses_modseq(args):
            text += f" (MODSEQ {max(info.modseq for _, _, info, _ in found if info)})"
        session.untagged(text)
    else:
        wanted = returns or ["ALL"]
        parts = [f'(TAG "{command.tag}")'] + (["UID"] if uid_form else [])
        if numbers:
            if "MIN" in wanted:
                parts.append(f"MIN {min(numbers)}")
            if "MAX" in wanted:
                parts.append(f"MAX {max(numbers)}")
            if "ALL" in wanted:
                parts.append(f"ALL {seqset.render(numbers)}")
        if "COUNT" in wanted:
            parts.append(f"COUNT {len(numbers)}")
        session.untagged("ESEARCH " + " ".join(parts))
    session.tagged(command.tag, "OK", f"{command.name} completed")


def _uses_modseq(tokens: list[Token]) -> bool:
    for token in tokens:
        if isinstance(token, list) and _uses_modseq(token):
            return True
        if is_atom(token, "MODSEQ"):
            return True
    return False


async def sort(session: Session, command: Command) -> None:
    """SORT (RFC 5256 §3): criteria, charset, search keys."""
    uid_form = command.name.startswith("UID")
    args = list(command.args)
    if len(args) < 3 or not isinstance(args[0], list):
        raise SyntaxFault("SORT needs (criteria) charset keys")
    criteria = [astring(t, "sort criterion").upper() for t in args[0]]
    if (not criteria or set(criteria) - {*mime_threading.SORT_CRITERIA, "REVERSE"}
            or criteria[-1] == "REVERSE"):
        raise SyntaxFault("invalid sort criteria")
    found = await _matching(session, [Atom("CHARSET"), *args[1:]], need_headers=True,
                            need_info=True)
    items = [
        mime_threading.SortItem(uid if uid_form else seq, parsed(), info.internal_date,
                                info.size)
        for seq, uid, info, parsed in found if info is not None
    ]
    numbers = mime_threading.sort_messages(items, criteria)
    session.untagged("SORT" + "".join(f" {n}" for n in numbers))
    session.tagged(command.tag, "OK", f"{command.name} completed")


async def thread(session: Session, command: Command) -> None:
    """THREAD (RFC 5256 §4): REFERENCES or ORDEREDSUBJECT."""
    uid_form = command.name.startswith("UID")
    args = list(command.args)
    if len(args) < 3:
        raise SyntaxFault("THREAD needs an algorithm, a charset and keys")
    algorithm = astring(args[0], "algorithm").upper()
    if algorithm not in ("REFERENCES", "ORDEREDSUBJECT"):
        raise No("[CANNOT] THREAD algorithms: REFERENCES, ORDEREDSUBJECT")
    found = await _matching(session, [Atom("CHARSET"), *args[1:]], need_headers=True,
                            need_info=True)
    items = [
        mime_threading.thread_item(uid if uid_form else seq, parsed(), info.internal_date)
        for seq, uid, info, parsed in found if info is not None
    ]
    if algorithm == "REFERENCES":
        threads = mime_threading.thread_references(items)
    else:
        threads = mime_threading.thread_orderedsubject(items)
    text = mime_threading.format_threads(threads)
    session.untagged(b"THREAD" + (b" " + text if text else b""))
    session.tagged(command.tag, "OK", f"{command.name} completed")
