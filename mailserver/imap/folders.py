"""Commands on folders: SELECT/EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
UNSUBSCRIBE, LIST (RFC 5258, 6154, 5819), LSUB, STATUS, NAMESPACE, ENABLE, ID."""

from __future__ import annotations

from typing import cast

from mailserver.imap import names, seqset
from mailserver.imap.session import Bad, No, Session, State, format_flags
from mailserver.imap.state import Selected
from mailserver.imap.syntax import Atom, Command, SyntaxFault, Token, astring, is_atom, number
from mailserver.imap.syntax import modseq_value as read_modseq
from mailserver.store import FolderInfo, StoreError

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE",
                "HIGHESTMODSEQ", "DELETED")


def _account(session: Session) -> int:
    assert session.mailbox is not None
    return session.mailbox.id


async def _existing(session: Session, name: str) -> FolderInfo:
    folder = await session.store.folder(_account(session), name)
    if folder is None:
        raise No("[NONEXISTENT] no such mailbox")
    return folder


# ---- ENABLE, NAMESPACE, ID -----------------------------------------------------------

ENABLEABLE = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"}


async def enable(session: Session, command: Command) -> None:
    """RFC 5161; RFC 7162 §3.2.3 (QRESYNC implies CONDSTORE)."""
    if not command.args:
        raise SyntaxFault("ENABLE needs at least one capability")
    newly = []
    for token in command.args:
        name = astring(token, "capability").upper()
        if name in ENABLEABLE and name not in session.enabled:
            session.enabled.add(name)
            newly.append("IMAP4rev2" if name == "IMAP4REV2" else name)
            if name == "QRESYNC":
                session.enabled.add("CONDSTORE")
    if newly or not session.enabled:
        session.untagged("ENABLED " + " ".join(newly) if newly else "ENABLED")
    session.tagged(command.tag, "OK", "ENABLE completed")


async def namespace(session: Session, command: Command) -> None:
    session.untagged('NAMESPACE (("" "/")) NIL NIL')  # RFC 2342: one personal namespace
    session.tagged(command.tag, "OK", "NAMESPACE completed")


async def ident(session: Session, command: Command) -> None:
    """RFC 2971; the client's list is read and ignored."""
    if len(command.args) != 1 or not (isinstance(command.args[0], list)
                                      or is_atom(command.args[0], "NIL")):
        raise SyntaxFault("ID takes a parenthesised list or NIL")
    session.untagged('ID ("name" "MSS" "vendor" "MSS")')
    session.tagged(command.tag, "OK", "ID completed")


# ---- SELECT / EXAMINE ------------------------------------------------------------------


async def select(session: Session, command: Command) -> None:
    readonly = command.name == "EXAMINE"
    if not command.args:
        raise SyntaxFault("mailbox name expected")
    name = session.mailbox_name(command.args[0])
    qresync: list[Token] | None = None
    for option in command.args[1:]:
        if not isinstance(option, list):
            raise SyntaxFault("SELECT parameters must be a list")
        index = 0
        while index < len(option):
            item = option[index]
            if is_atom(item, "CONDSTORE"):
                session.enabled.add("CONDSTORE")  # RFC 7162 §3.1.8
            elif is_atom(item, "QRESYNC"):
                if "QRESYNC" not in session.enabled:
                    raise Bad("QRESYNC must be enabled first (RFC 7162 §3.2.3)")
                index += 1
                value = option[index] if index < len(option) else None
                if not isinstance(value, list):
                    raise SyntaxFault("QRESYNC needs (uidvalidity modseq ...)")
                qresync = value
            else:
                raise SyntaxFault("unknown SELECT parameter")
            index += 1
    had_selected = session.selected is not None
    session.close_selected()
    if had_selected:
        session.untagged("OK [CLOSED] previous mailbox closed")  # RFC 7162 §3.2.11
    folder = await _existing(session, name)
    watcher = session.store.changes.subscribe(folder.id, since=folder.highestmodseq)
    selected = Selected(folder=folder, readonly=readonly, watcher=watcher)
    uids, texts = await session.store.view(folder.id)
    # Few distinct flag texts in a folder: one frozenset each, shared by its messages.
    sets = {text: frozenset(text.split()) for text in set(texts)}
    selected.uids = uids
    selected.flags = dict(zip(uids, map(sets.__getitem__, texts), strict=True))
    keywords = {f for flag_set in sets.values() for f in flag_set if not f.startswith("\\")}
    unseen = {text for text, flag_set in sets.items() if "\\Seen" not in flag_set}
    first_unseen = next((n for n, text in enumerate(texts, start=1) if text in unseen), 0)
    session.selected = selected
    session.state = State.SELECTED
    all_flags = " ".join((*SYSTEM_FLAGS, *sorted(keywords)))
    session.untagged(f"{len(selected.uids)} EXISTS")
    if "IMAP4REV2" not in session.enabled:
        await session.take_recent(selected, selected.uids, folder.first_recent_uid)
        session.untagged(f"{len(selected.recent)} RECENT")  # RFC 3501 §7.3.2
        if first_unseen:
            session.untagged(f"OK [UNSEEN {first_unseen}] first unseen message")
    session.untagged(f"FLAGS ({all_flags})")
    permanent = "" if readonly else f"{all_flags} \\*"
    session.untagged(f"OK [PERMANENTFLAGS ({permanent})] flags that can be changed")
    session.untagged(f"OK [UIDVALIDITY {folder.uidvalidity}] UIDs valid")
    session.untagged(f"OK [UIDNEXT {folder.uidnext}] predicted next UID")
    session.untagged(f"OK [HIGHESTMODSEQ {folder.highestmodseq}] highest MODSEQ")  # RFC 7162
    session.untagged(b"LIST () \"/\" " + session.encode_name(folder.name))  # RFC 9051 §6.3.2
    if qresync is not None:
        await _qresync(session, selected, qresync)
    mode = "READ-ONLY" if readonly else "READ-WRITE"
    session.tagged(command.tag, "OK", f"[{mode}] {command.name} completed")


async def _qresync(session: Session, selected: Selected, params: list[Token]) -> None:
    """RFC 7162 §3.2.5: what changed since the client's MODSEQ, at SELECT time."""
    if len(params) < 2:
        raise SyntaxFault("QRESYNC needs uidvalidity and modseq")
    uidvalidity = number(params[0], "uidvalidity")
    since = read_modseq(params[1], "modseq")
    known: set[int] | None = None
    if len(params) > 2 and isinstance(params[2], Atom):
        highest = selected.folder.uidnext
        known = seqset.uids_in_ranges(seqset.parse_ranges(str(params[2])), highest)
    if uidvalidity != selected.folder.uidvalidity:
        return
    vanished = await session.store.vanished_since(selected.folder.id, since)
    if known is not None:
        vanished = [u for u in vanished if u in known]
    if vanished:
        session.untagged(f"VANISHED (EARLIER) {seqset.render(vanished)}")
    for info in await session.store.changed_since(selected.folder.id, since):
        seq = selected.seq_of(info.uid)
        if seq is not None:
            items = session.flag_items(info.uid, info.flags, info.modseq)
            session.untagged(f"{seq} FETCH ({items})")


async def close(session: Session, command: Command) -> None:
    """CLOSE expunges silently (RFC 9051 §6.4.1); UNSELECT does not (RFC 3691)."""
    selected = session.require_selected()
    if command.name == "CLOSE" and not selected.readonly:
        deleted = [uid for uid, flags in selected.flags.items() if "\\Deleted" in flags]
        if deleted:
            current = await session.store.messages_by_uid(selected.folder.id, deleted)
            await session.store.expunge(
                selected.folder.id, [m.uid for m in current if "\\Deleted" in m.flags]
            )
    session.close_selected()
    session.tagged(command.tag, "OK", f"{command.name} completed")


# ---- CREATE / DELETE / RENAME / SUBSCRIBE ------------------------------------------


async def create(session: Session, command: Command) -> None:
    if len(command.args) < 1:
        raise SyntaxFault("mailbox name expected")
    raw = astring(command.args[0], "mailbox")
    if raw.endswith(names.DELIMITER):  # RFC 9051 §6.3.4: trailing delimiter declares a parent
        command.args[0] = raw.rstrip(names.DELIMITER).encode("utf-8")
    name = session.mailbox_name(command.args[0])
    special_use = _create_special_use(command.args[1:])
    if name == "INBOX":
        raise No("[ALREADYEXISTS] INBOX always exists")
    account = _account(session)
    existing = {f.name for f in await session.store.folders(account)}
    if name in existing:
        raise No("[ALREADYEXISTS] mailbox already exists")
    if len(existing) >= 1000:
        raise No("[LIMIT] too many mailboxes")
    for parent in names.parents(name):  # RFC 9051 §6.3.4: create superiors
        if parent not in existing and parent != "INBOX":
            await session.store.create_folder(account, parent)
    try:
        await session.store.create_folder(account, name, special_use=special_use)
    except StoreError as error:
        raise No(f"[ALREADYEXISTS] {error}") from error
    session.tagged(command.tag, "OK", "CREATE completed")


def _create_special_use(options: list[Token]) -> str | None:
    """RFC 6154 §3: CREATE name (USE (\\Sent))."""
    if not options:
        return None
    option = options[0]
    if (isinstance(option, list) and len(option) == 2 and is_atom(option[0], "USE")
            and isinstance(option[1], list) and len(option[1]) <= 1):
        if not option[1]:
            return None
        use = astring(option[1][0], "special use")
        allowed = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
        for candidate in allowed:
            if candidate.upper() == use.upper():
                return candidate
        raise No("[USEATTR] unknown special-use attribute")
    raise SyntaxFault("unknown CREATE parameter")


async def delete(session: Session, command: Command) -> None:
    if len(command.args) != 1:
        raise SyntaxFault("mailbox name expected")
    name = session.mailbox_name(command.args[0])
    if name == "INBOX":
        raise No("[CANNOT] INBOX cannot be deleted")
    account = _account(session)
    folders = {f.name for f in await session.store.folders(account)}
    if name not in folders:
        if any(other.startswith(name + names.DELIMITER) for other in folders):
            # RFC 3501 / RFC 9051 §6.3.4: a \Noselect name with inferiors cannot go.
            raise No("[HASCHILDREN] only the mailboxes under this name exist; "
                     "delete them first")
        raise No("[NONEXISTENT] no such mailbox")
    # RFC 3501 / RFC 9051 §6.3.4: a mailbox with inferiors may be deleted; its
    # messages go and its name stays, \Noselect, while mailboxes exist under it
    # (as Dovecot does: LIST shows it until the last of them is deleted).
    if session.selected is not None and session.selected.folder.name == name:
        session.close_selected()
    await session.store.delete_folder(account, name)
    session.tagged(command.tag, "OK", "DELETE completed")


async def rename(session: Session, command: Command) -> None:
    if len(command.args) != 2:
        raise SyntaxFault("RENAME needs two mailbox names")
    old = session.mailbox_name(command.args[0])
    new = session.mailbox_name(command.args[1])
    if new == "INBOX" or (new.startswith("INBOX" + names.DELIMITER) and old != "INBOX"):
        raise No("[CANNOT] cannot rename to INBOX or under it")
    if new.startswith(old + names.DELIMITER):
        raise No("[CANNOT] cannot rename a mailbox under itself")
    account = _account(session)
    existing = {f.name for f in await session.store.folders(account)}
    if old not in existing:
        raise No("[NONEXISTENT] no such mailbox")
    if new in existing:
        raise No("[ALREADYEXISTS] target mailbox already exists")
    for parent in names.parents(new):
        if parent not in existing and parent != "INBOX":
            await session.store.create_folder(account, parent)
    try:
        await session.store.rename_folder(account, old, new, names.DELIMITER)
    except StoreError as error:
        raise No(f"[CANNOT] {error}") from error
    session.tagged(command.tag, "OK", "RENAME completed")


async def subscribe(session: Session, command: Command) -> None:
    if len(command.args) != 1:
        raise SyntaxFault("mailbox name expected")
    name = session.mailbox_name(command.args[0])
    wanted = command.name == "SUBSCRIBE"
    try:
        await session.store.set_subscribed(_account(session), name, wanted)
    except StoreError as error:
        if wanted:
            raise No("[NONEXISTENT] no such mailbox") from error
    session.tagged(command.tag, "OK", f"{command.name} completed")


# ---- LIST / LSUB / STATUS ----------------------------------------------------------------


async def list_folders(session: Session, command: Command) -> None:
    """LIST with RFC 5258 selection and return options, RFC 6154, RFC 5819."""
    args = list(command.args)
    selection: set[str] = set()
    if args and isinstance(args[0], list):
        selection = {astring(t, "selection option").upper()
                     for t in cast(list[Token], args.pop(0))}
        unknown = selection - {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
        if unknown:
            raise SyntaxFault("unknown LIST selection option")
    if len(args) < 2:
        raise SyntaxFault("LIST needs a reference and a pattern")
    reference = astring(args[0], "reference")
    pattern_token = args[1]
    patterns = ([astring(t, "pattern") for t in pattern_token]
                if isinstance(pattern_token, list) else [astring(pattern_token, "pattern")])
    returns: set[str] = set()
    status_items: list[str] = []
    rest = args[2:]
    if rest:
        if len(rest) != 2 or not is_atom(rest[0], "RETURN") or not isinstance(rest[1], list):
            raise SyntaxFault("expected RETURN (options)")
        options = rest[1]
        index = 0
        while index < len(options):
            option = astring(options[index], "return option").upper()
            if option == "STATUS":
                index += 1
                if index >= len(options) or not isinstance(options[index], list):
                    raise SyntaxFault("STATUS needs a list of items")
                status_items = _status_items(options[index])  # type: ignore[arg-type]
            elif option not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"):
                raise SyntaxFault(f"unknown LIST return option {option[:30]}")
            returns.add(option)
            index += 1
    if not session.utf8:
        try:
            from mailserver.imap import mutf7

            reference = mutf7.decode(reference)
            patterns = [mutf7.decode(p) for p in patterns]
        except ValueError as error:
            raise No(f"[CANNOT] {error}") from error
    if patterns == [""]:  # RFC 9051 §6.3.9: the delimiter and root
        session.untagged('LIST (\\Noselect) "/" ""')
        session.tagged(command.tag, "OK", "LIST completed")
        return
    await _emit_list(session, reference, patterns, selection, returns, status_items, "LIST")
    session.tagged(command.tag, "OK", "LIST completed")


async def lsub(session: Session, command: Command) -> None:
    if len(command.args) != 2:
        raise SyntaxFault("LSUB needs a reference and a pattern")
    reference = astring(command.args[0], "reference")
    pattern = astring(command.args[1], "pattern")
    await _emit_list(session, reference, [pattern], {"SUBSCRIBED"}, set(), [], "LSUB")
    session.tagged(command.tag, "OK", "LSUB completed")


async def _emit_list(
    session: Session, reference: str, patterns: list[str], selection: set[str],
    returns: set[str], status_items: list[str], verb: str,
) -> None:
    folders = await session.store.folders(_account(session))
    by_name: dict[str, FolderInfo | None] = {f.name: f for f in folders}
    # Names above existing mailboxes that are no mailbox themselves (a parent
    # deleted, or renamed away): listed \Noselect while they have children
    # (RFC 3501 §6.3.8; \NonExistent for IMAP4rev2 sessions, RFC 9051 §7.3.1).
    for folder in folders:
        parts = folder.name.split(names.DELIMITER)
        for depth in range(1, len(parts)):
            by_name.setdefault(names.DELIMITER.join(parts[:depth]), None)
    regexes = [names.pattern_regex(reference, p) for p in patterns]
    placeholder = "\\NonExistent" if "IMAP4REV2" in session.enabled else "\\Noselect"
    for name in sorted(by_name, key=lambda n: (n != "INBOX", n)):
        if not any(r.fullmatch(name) for r in regexes):
            continue
        found = by_name[name]
        if found is None:
            if selection & {"SUBSCRIBED", "SPECIAL-USE"}:
                continue
            attributes = [placeholder] + (["\\HasChildren"] if verb == "LIST" else [])
            session.untagged(
                f"{verb} ({' '.join(attributes)}) \"/\" ".encode() + session.encode_name(name)
            )
            continue  # no STATUS for a name that is no mailbox (RFC 5819 §2)
        folder = found
        if "SUBSCRIBED" in selection and not folder.subscribed:
            continue
        if "SPECIAL-USE" in selection and not folder.special_use:
            continue
        attributes = []
        has_children = any(n.startswith(folder.name + names.DELIMITER) for n in by_name)
        if verb == "LIST":
            attributes.append("\\HasChildren" if has_children else "\\HasNoChildren")
        if folder.special_use:
            attributes.append(folder.special_use)
        if verb == "LIST" and folder.subscribed and (
            "SUBSCRIBED" in returns or "SUBSCRIBED" in selection
        ):
            attributes.append("\\Subscribed")
        session.untagged(
            f"{verb} ({' '.join(attributes)}) \"/\" ".encode() + session.encode_name(folder.name)
        )
        if status_items:
            await _emit_status(session, folder, status_items)


def _status_items(tokens: list[Token]) -> list[str]:
    items = []
    for token in tokens:
        item = astring(token, "status item").upper()
        if item not in STATUS_ITEMS:
            raise SyntaxFault(f"unknown STATUS item {item[:30]}")
        items.append(item)
    if not items:
        raise SyntaxFault("STATUS needs at least one item")
    return items


async def status(session: Session, command: Command) -> None:
    if len(command.args) != 2 or not isinstance(command.args[1], list):
        raise SyntaxFault("STATUS needs a mailbox and a list of items")
    name = session.mailbox_name(command.args[0])
    items = _status_items(command.args[1])
    folder = await _existing(session, name)
    await _emit_status(session, folder, items)
    session.tagged(command.tag, "OK", "STATUS completed")


async def _emit_status(session: Session, folder: FolderInfo, items: list[str]) -> None:
    stats = await session.store.folder_stats(folder.id)
    values = {
        "MESSAGES": stats.messages, "RECENT": stats.recent, "UIDNEXT": folder.uidnext,
        "UIDVALIDITY": folder.uidvalidity, "UNSEEN": stats.unseen, "SIZE": stats.size,
        "HIGHESTMODSEQ": folder.highestmodseq, "DELETED": stats.deleted,
    }
    text = " ".join(f"{item} {values[item]}" for item in items)
    session.untagged(b"STATUS " + session.encode_name(folder.name) + f" ({text})".encode())


def flags_text(flags: frozenset[str]) -> str:
    return format_flags(flags)
