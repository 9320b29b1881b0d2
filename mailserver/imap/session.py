"""One IMAP connection: states, the command loop, responses, authentication,
STARTTLS and untagged updates (RFC 9051 §3, §5.2, §7)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from directory.service import MailboxRecord
from mailserver.auth import Authenticator, LoginOutcome
from mailserver.client_cert import peer_certificate
from mailserver.imap import mutf7, seqset
from mailserver.imap.names import BadName, check
from mailserver.imap.state import Selected
from mailserver.imap.syntax import Command, SyntaxFault, astring, parse_command, split_tag
from mailserver.imap.wire import (
    PRE_AUTH,
    CommandReader,
    ConnectionClosed,
    Limits,
    Refused,
    authenticated_limits,
)
from mailserver.mime.imap_format import quoted
from mailserver.oidc import TokenVerifier
from mailserver.sasl import OAUTHBEARER_ERROR, BearerCredentials
from mailserver.store import BodyMissing, Store
from mailserver.store.api import FolderDelta

if TYPE_CHECKING:
    Handler = Callable[["Session", Command], Awaitable[None]]

log = logging.getLogger(__name__)

PRE_AUTH_TIMEOUT = 60.0  # issue 4
AUTOLOGOUT = 30 * 60.0 + 60.0  # RFC 9051 §5.4: at least 30 minutes
WRITE_TIMEOUT = 300.0
WRITE_HIGH_WATER = 1 << 20


NO_EXPUNGE_REPORT = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class No(Exception):
    """A command that failed: tagged NO with this text (may start with a [CODE])."""


class Bad(Exception):
    """A command not valid here: tagged BAD with this text."""


@dataclass(frozen=True)
class SessionConfig:
    hostname: str
    append_limit: int
    tls_context: ssl.SSLContext | None  # offered through STARTTLS when not yet on TLS
    pre_auth_timeout: float = PRE_AUTH_TIMEOUT
    autologout: float = AUTOLOGOUT
    # OpenID Connect token logins (AUTHENTICATE OAUTHBEARER / XOAUTH2), when configured.
    tokens: TokenVerifier | None = None
    # TLS client certificate logins (AUTHENTICATE EXTERNAL), when the PKI is set up.
    external: bool = False


BASE_CAPABILITIES = "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE"
AUTHENTICATED_CAPABILITIES = (
    "IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS "
    "CONDSTORE QRESYNC ESEARCH SEARCHRES STATUS=SIZE UTF8=ACCEPT BINARY MULTIAPPEND "
    "SORT THREAD=REFERENCES THREAD=ORDEREDSUBJECT"
)


class Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        store: Store,
        authenticator: Authenticator,
        config: SessionConfig,
        tls: bool,
    ) -> None:
        self.reader = CommandReader(reader)
        self.writer = writer
        self.store = store
        self.authenticator = authenticator
        self.config = config
        self.tls = tls
        self.state = State.NOT_AUTHENTICATED
        self.mailbox: MailboxRecord | None = None
        self.enabled: set[str] = set()
        self.selected: Selected | None = None
        self.limits: Limits = PRE_AUTH
        peer = writer.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else "unknown"
        self._out: list[bytes] = []
        self._final: bytes | None = None
        self.current_tag = ""

    # ---- responses ---------------------------------------------------------------

    def send(self, line: bytes) -> None:
        self._out.append(line + b"\r\n")

    def untagged(self, text: str | bytes) -> None:
        self.send(b"* " + (text.encode() if isinstance(text, str) else text))

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self.writer.write(data)
            # A client that never reads is dropped (the transport's write buffer would
            # otherwise grow): drain only waits when the buffer is over its high mark.
            transport = self.writer.transport
            if transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                try:
                    await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)
                except TimeoutError as error:
                    raise ConnectionClosed() from error
            else:
                await self.writer.drain()

    def tagged(self, tag: str, status: str, text: str) -> None:
        """The command's completion; sent after any untagged updates it allows."""
        self._final = f"{tag} {status} {text}".encode()

    # ---- capabilities and names ------------------------------------------------

    def capabilities(self) -> str:
        caps = [BASE_CAPABILITIES]
        if self.state is State.NOT_AUTHENTICATED:
            if not self.tls and self.config.tls_context is not None:
                caps.append("STARTTLS LOGINDISABLED")  # RFC 9051 §6.2.3, §11.1
            else:
                caps.append("AUTH=PLAIN")
                if self.offers_external():
                    caps.append("AUTH=EXTERNAL")  # RFC 4422 Appendix A
                if self.config.tokens is not None:
                    caps.append("AUTH=OAUTHBEARER AUTH=XOAUTH2")  # RFC 7628
        else:
            caps.append(AUTHENTICATED_CAPABILITIES)
            caps.append(f"APPENDLIMIT={self.config.append_limit}")  # RFC 7889
        return " ".join(caps)

    def peer_certificate(self) -> bytes | None:
        """The TLS client certificate (chain already checked by the TLS layer)."""
        if not self.tls:
            return None
        return peer_certificate(self.writer.get_extra_info("ssl_object"))

    def offers_external(self) -> bool:
        """EXTERNAL only on a TLS session whose client presented a certificate."""
        return self.config.external and self.peer_certificate() is not None

    @property
    def utf8(self) -> bool:
        return bool(self.enabled & {"UTF8=ACCEPT", "IMAP4REV2"})

    @property
    def sees_recent(self) -> bool:
        """IMAP4rev1 sessions have \\Recent; RFC 9051 removed it (IMAP4rev2)."""
        return "IMAP4REV2" not in self.enabled

    def flag_text(self, uid: int, flags: frozenset[str]) -> str:
        """A message's FLAGS list as this session sees it (\\Recent included)."""
        text = format_flags(flags)
        selected = self.selected
        if selected is not None and uid in selected.recent:
            text = f"{text} \\Recent" if text else "\\Recent"
        return text

    async def take_recent(self, selected: Selected, uids: list[int], unclaimed: int) -> bool:
        """RFC 3501 §2.3.2: of ``uids`` (ascending, just learnt of), those no session
        was told about become \\Recent here. A read-only (EXAMINE) session sees
        them without taking them (``unclaimed``: the folder's first unclaimed UID
        as last read). True if any did."""
        if not uids or not self.sees_recent:
            return False
        if selected.readonly:
            first = unclaimed
        else:
            first = await self.store.claim_recent(selected.folder.id, uids[-1])
        recent = uids[bisect.bisect_left(uids, first):]
        selected.recent.update(recent)
        return bool(recent)

    @property
    def condstore(self) -> bool:
        return bool(self.enabled & {"CONDSTORE", "QRESYNC"})

    def mailbox_name(self, token: object, what: str = "mailbox") -> str:
        """A mailbox argument as a canonical UTF-8 name (RFC 9051 §5.1, RFC 3501 §5.1.3)."""
        name = astring(token, what)  # type: ignore[arg-type]
        if not self.utf8:
            try:
                name = mutf7.decode(name)
            except mutf7.BadEncoding as error:
                raise No(f"[CANNOT] {what}: {error}") from error
        try:
            return check(name)
        except BadName as error:
            raise No(f"[CANNOT] {error}") from error

    def encode_name(self, name: str) -> bytes:
        wire = name if self.utf8 else mutf7.encode(name)
        return quoted(wire.encode("utf-8"), utf8=self.utf8)

    # ---- the command loop ----------------------------------------------------------

    async def run(self) -> None:
        self.untagged(f"OK [CAPABILITY {self.capabilities()}] {self.config.hostname} "
                      "IMAP ready")
        try:
            await self.flush()
            loop = asyncio.get_running_loop()
            # Before login the deadline runs from the connection, not from each command:
            # a client cannot stay unauthenticated by sending NOOPs.
            pre_auth_deadline = loop.time() + self.config.pre_auth_timeout
            while self.state is not State.LOGOUT:
                timeout = (pre_auth_deadline - loop.time()
                           if self.state is State.NOT_AUTHENTICATED else self.config.autologout)
                try:
                    data = await asyncio.wait_for(
                        self.reader.read_command(self.limits, self._continue), timeout
                    )
                except TimeoutError:
                    self.untagged("BYE Autologout: idle for too long")  # RFC 9051 §5.4
                    await self.flush()
                    return
                except Refused as refused:
                    tag = refused.tag.decode("ascii", "replace") if refused.tag else "*"
                    if split_tag(refused.tag + b" x" if refused.tag else b"")[0] is None:
                        tag = "*"
                    self.send(f"{tag} BAD {refused.message}".encode())
                    if refused.close:
                        self.untagged("BYE Closing: input over the limits")
                        await self.flush()
                        return
                    await self.flush()
                    continue
                await self.execute(data)
                await self.flush()
        except (ConnectionClosed, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            self.close_selected()
            if not self.writer.is_closing():
                self.writer.close()

    async def _continue(self) -> None:
        self.send(b"+ Ready for literal data")
        await self.flush()

    async def execute(self, data: bytes) -> None:
        try:
            command = parse_command(data)
        except SyntaxFault as fault:
            tag, _ = split_tag(data)
            self.send(f"{tag or '*'} BAD {fault}".encode())
            return
        self.current_tag = command.tag
        from mailserver.imap.commands import COMMANDS

        entry = COMMANDS.get(command.name)
        if entry is None:
            self.send(f"{command.tag} BAD unknown command {command.name[:40]}".encode())
            return
        states, handler = entry
        if self.state not in states:
            self.send(f"{command.tag} BAD {command.name} is not valid in the "
                      f"{self.state.value} state".encode())
            return
        self._final = None
        try:
            await handler(self, command)
            # RFC 9051 §7.4.1: no EXPUNGE during FETCH, STORE, SEARCH by number.
            await self.refresh(expunges=command.name not in NO_EXPUNGE_REPORT)
        except SyntaxFault as fault:
            self.tagged(command.tag, "BAD", f"{command.name}: {fault}")
        except Bad as bad:
            self.tagged(command.tag, "BAD", str(bad))
        except No as no:
            self.tagged(command.tag, "NO", str(no))
        except BodyMissing:
            # RFC 9051 §7.4.1 and RFC 5530 §3: another session expunged a message this
            # one still shows (its EXPUNGE is reported at the next allowed moment).
            self.tagged(command.tag, "NO",
                        "[EXPUNGEISSUED] some of the requested messages no longer exist")
        except (ConnectionClosed, ConnectionError, ssl.SSLError):
            raise
        except Exception:
            log.exception("imap: %s failed", command.name)
            self.tagged(command.tag, "NO", "[SERVERBUG] internal error; it has been logged")
        if self._final is not None:
            self.send(self._final)
            self._final = None

    # ---- authentication ------------------------------------------------------------

    async def authenticate(self, address: str, password: str) -> None:
        result = await self.authenticator.login(
            address, password, client_ip=self.client_ip, door="imap"
        )
        if result.outcome is LoginOutcome.THROTTLED:
            raise No("[UNAVAILABLE] too many failed logins; try again later")
        if result.outcome is LoginOutcome.NOT_ALLOWED:
            raise No("[AUTHORIZATIONFAILED] this mailbox may not use IMAP")
        if result.outcome is not LoginOutcome.OK or result.mailbox is None:
            raise No("[AUTHENTICATIONFAILED] invalid credentials")
        self.mailbox = result.mailbox
        await self.store.ensure_folders(result.mailbox.id)
        self.state = State.AUTHENTICATED
        self.limits = authenticated_limits(self.config.append_limit)

    async def authenticate_token(self, credentials: BearerCredentials) -> None:
        """OAUTHBEARER / XOAUTH2: a verified OpenID Connect token (RFC 7628)."""
        assert self.config.tokens is not None
        result = await self.authenticator.login_token(
            self.config.tokens, credentials.token, credentials.authzid,
            client_ip=self.client_ip, door="imap",
        )
        if result.outcome is LoginOutcome.THROTTLED:
            raise No("[UNAVAILABLE] too many failed logins; try again later")
        if result.outcome is not LoginOutcome.OK or result.mailbox is None:
            # RFC 7628 §3.2.2: an error challenge, the client's ^A, then NO.
            self.send(b"+ " + base64.b64encode(OAUTHBEARER_ERROR))
            await self.flush()
            with contextlib.suppress(TimeoutError, Bad):
                await asyncio.wait_for(self.reader.read_line(PRE_AUTH.line),
                                       self.config.pre_auth_timeout)
            raise No("[AUTHENTICATIONFAILED] invalid token")
        self.mailbox = result.mailbox
        await self.store.ensure_folders(result.mailbox.id)
        self.state = State.AUTHENTICATED
        self.limits = authenticated_limits(self.config.append_limit)

    async def authenticate_certificate(self, authzid: str) -> None:
        """EXTERNAL (RFC 4422 Appendix A): the TLS client certificate's mailbox."""
        result = await self.authenticator.login_certificate(
            self.peer_certificate(), authzid, client_ip=self.client_ip, door="imap")
        if result.outcome is LoginOutcome.THROTTLED:
            raise No("[UNAVAILABLE] too many failed logins; try again later")
        if result.outcome is LoginOutcome.NOT_ALLOWED:
            raise No("[AUTHENTICATIONFAILED] certificate logins are for application and "
                     "organisation mailboxes")
        if result.outcome is not LoginOutcome.OK or result.mailbox is None:
            raise No("[AUTHENTICATIONFAILED] certificate not accepted for this mailbox")
        self.mailbox = result.mailbox
        await self.store.ensure_folders(result.mailbox.id)
        self.state = State.AUTHENTICATED
        self.limits = authenticated_limits(self.config.append_limit)

    async def read_sasl_response(self) -> bytes:
        """One client line of a SASL exchange (RFC 9051 §6.2.2); '*' cancels."""
        self.send(b"+ ")
        await self.flush()
        try:
            line = await asyncio.wait_for(self.reader.read_line(PRE_AUTH.line),
                                          self.config.pre_auth_timeout)
        except TimeoutError as error:
            raise ConnectionClosed() from error
        if line.strip() == b"*":
            raise Bad("AUTHENTICATE cancelled")
        return decode_base64(line)

    async def starttls(self, tag: str) -> None:
        context = self.config.tls_context
        if context is None or self.tls:
            raise Bad("STARTTLS is not available here")
        # RFC 9051 §6.2.1: nothing the client sent before the handshake is acted on.
        # Stop reading first, so that what follows (the ClientHello) stays in the
        # socket for the TLS layer; then drop the plaintext already read.
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]
        self.reader.discard_buffered()
        self.send(f"{tag} OK Begin TLS negotiation now".encode())
        await self.flush()
        try:
            await self.writer.start_tls(context)  # resumes reading, through TLS
        except ssl.SSLError as error:
            # E.g. a client certificate from a CA we do not trust (alert unknown_ca).
            log.warning("imap %s STARTTLS handshake failed: %s", self.client_ip, error)
            raise ConnectionClosed() from error
        self.tls = True

    # ---- the selected folder and untagged updates ----------------------------------

    def close_selected(self) -> None:
        if self.selected is not None:
            self.store.changes.unsubscribe(self.selected.folder.id, self.selected.watcher)
            self.selected = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def require_selected(self) -> Selected:
        if self.selected is None:
            raise Bad("no mailbox selected")
        return self.selected

    async def refresh(self, *, expunges: bool, force: bool = False) -> None:
        """Report what changed in the selected folder (RFC 9051 §7.4.1, §5.2).

        ``expunges``: whether EXPUNGE/VANISHED may be sent now (not during FETCH,
        STORE or SEARCH by sequence number).
        """
        selected = self.selected
        if selected is None:
            return
        if selected.drain() or force:
            selected.dirty = False
            delta = await self.store.folder_delta(selected.folder.id, selected.known_modseq)
            if delta.folder is None:  # deleted under us
                selected.pending_expunge.update(selected.uids)
            elif delta.folder.highestmodseq > selected.known_modseq:
                fresh = self._absorb_changes(selected, delta)
                if await self.take_recent(selected, fresh, delta.folder.first_recent_uid):
                    self.untagged(f"{len(selected.recent)} RECENT")  # RFC 3501 §7.3.2
        if expunges and selected.pending_expunge:
            self._report_expunges(selected)

    def _absorb_changes(self, selected: Selected, delta: FolderDelta) -> list[int]:
        """Report flag changes and new messages; returns the new UIDs."""
        assert delta.folder is not None
        changed, vanished = delta.changed, delta.vanished
        selected.known_modseq = delta.folder.highestmodseq
        last = selected.uids[-1] if selected.uids else 0
        fresh = [m for m in changed if m.uid > last]
        for info in changed:
            if info.uid > last or info.uid not in selected.flags:
                continue
            if info.uid in selected.pending_expunge:
                continue
            if selected.flags[info.uid] != info.flags:
                selected.flags[info.uid] = info.flags
                seq = selected.seq_of(info.uid)
                self.untagged(f"{seq} FETCH ({self.flag_items(info.uid, info.flags, info.modseq)})")
        if fresh:
            for info in fresh:
                selected.uids.append(info.uid)
                selected.flags[info.uid] = info.flags
            self.untagged(f"{len(selected.uids)} EXISTS")
        gone = set(vanished) & selected.flags.keys()
        selected.pending_expunge.update(gone)
        return [info.uid for info in fresh]

    def flag_items(self, uid: int, flags: frozenset[str], modseq: int) -> str:
        text = f"FLAGS ({self.flag_text(uid, flags)}) UID {uid}"
        if self.condstore:
            text += f" MODSEQ ({modseq})"
        return text

    def _report_expunges(self, selected: Selected) -> None:
        gone = sorted(selected.pending_expunge & selected.flags.keys())
        selected.pending_expunge.clear()
        if not gone:
            return
        if "QRESYNC" in self.enabled:  # RFC 7162 §3.2.10
            self.untagged(f"VANISHED {seqset.render(gone)}")
        else:
            # Highest first, so that each number is still valid when it is read.
            for uid in reversed(gone):
                seq = selected.seq_of(uid)
                if seq is not None:
                    self.untagged(f"{seq} EXPUNGE")
        drop = set(gone)
        selected.uids = [u for u in selected.uids if u not in drop]
        for uid in gone:
            selected.flags.pop(uid, None)
        selected.recent -= drop


def format_flags(flags: frozenset[str] | set[str]) -> str:
    return " ".join(sorted(f for f in flags if f != "\\Recent"))


def decode_base64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise Bad("invalid base64") from error
