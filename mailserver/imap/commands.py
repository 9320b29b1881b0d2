"""The command table: which command is valid in which state, and its handler
(RFC 9051 §6). Commands of any state, authentication and IDLE live here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mailserver.imap import folders, messages
from mailserver.imap.session import Bad, No, Session, State
from mailserver.imap.syntax import Command, SyntaxFault, astring, is_atom
from mailserver.imap.wire import PRE_AUTH, ConnectionClosed
from mailserver.sasl import SaslError, parse_oauthbearer, parse_xoauth2

Handler = Callable[[Session, Command], Awaitable[None]]


async def capability(session: Session, command: Command) -> None:
    if command.args:
        raise SyntaxFault("CAPABILITY takes no arguments")
    session.untagged(f"CAPABILITY {session.capabilities()}")
    session.tagged(command.tag, "OK", "CAPABILITY completed")


async def noop(session: Session, command: Command) -> None:
    """NOOP and CHECK: a moment to report changes (RFC 9051 §6.1.2)."""
    if session.selected is not None:
        await session.refresh(expunges=True, force=True)
    session.tagged(command.tag, "OK", f"{command.name} completed")


async def logout(session: Session, command: Command) -> None:
    session.untagged("BYE logging out")
    session.state = State.LOGOUT
    session.tagged(command.tag, "OK", "LOGOUT completed")


async def starttls(session: Session, command: Command) -> None:
    if command.args:
        raise SyntaxFault("STARTTLS takes no arguments")
    await session.starttls(command.tag)


def _plain_text_refused(session: Session) -> None:
    if not session.tls and session.config.tls_context is not None:
        # RFC 9051 §6.2.3, §11.1: LOGINDISABLED until the connection is encrypted.
        raise No("[PRIVACYREQUIRED] use STARTTLS first")


async def login(session: Session, command: Command) -> None:
    _plain_text_refused(session)
    if len(command.args) != 2:
        raise SyntaxFault("LOGIN needs a user name and a password")
    user = astring(command.args[0], "user name")
    password = astring(command.args[1], "password")
    await session.authenticate(user, password)
    session.tagged(command.tag, "OK", f"[CAPABILITY {session.capabilities()}] logged in")


async def authenticate(session: Session, command: Command) -> None:
    """AUTHENTICATE PLAIN (RFC 4616), with an initial response (RFC 4959 SASL-IR)."""
    _plain_text_refused(session)
    if not command.args or len(command.args) > 2:
        raise SyntaxFault("AUTHENTICATE needs a mechanism")
    mechanism = astring(command.args[0], "mechanism").upper()
    token_parsers = {"OAUTHBEARER": parse_oauthbearer, "XOAUTH2": parse_xoauth2}
    if mechanism in token_parsers and session.config.tokens is None:
        raise No("[CANNOT] token logins are not configured here")
    if mechanism == "EXTERNAL" and not session.config.external:
        raise No("[CANNOT] certificate logins are not set up here")
    if mechanism not in ("PLAIN", "EXTERNAL") and mechanism not in token_parsers:
        raise No("[CANNOT] mechanisms offered: PLAIN, EXTERNAL with a TLS client certificate, "
                 "and OAUTHBEARER / XOAUTH2 if configured")
    if len(command.args) == 2:
        initial = astring(command.args[1], "initial response")
        from mailserver.imap.session import decode_base64

        response = b"" if initial == "=" else decode_base64(initial.encode("ascii", "replace"))
    else:
        response = await session.read_sasl_response()
    if mechanism == "EXTERNAL":
        # RFC 4422 Appendix A: the message is the authorization identity, maybe empty.
        await session.authenticate_certificate(response.decode("utf-8", "replace").strip())
        session.tagged(command.tag, "OK", f"[CAPABILITY {session.capabilities()}] authenticated")
        return
    if mechanism in token_parsers:
        try:
            credentials = token_parsers[mechanism](response)
        except SaslError as error:
            raise Bad(f"malformed {mechanism} response: {error}") from error
        await session.authenticate_token(credentials)
        session.tagged(command.tag, "OK", f"[CAPABILITY {session.capabilities()}] authenticated")
        return
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise Bad("malformed PLAIN response")
    authzid, authcid, password = (p.decode("utf-8", "replace") for p in parts)
    if authzid and authzid.lower() != authcid.lower():
        raise No("[AUTHORIZATIONFAILED] acting as another user is not allowed")
    await session.authenticate(authcid, password)
    session.tagged(command.tag, "OK", f"[CAPABILITY {session.capabilities()}] authenticated")


async def idle(session: Session, command: Command) -> None:
    """RFC 2177 / RFC 9051 §6.3.13: report changes as they happen until DONE.

    An idling session costs no task of its own besides the one reading DONE: the
    change bus, that reader and the autologout timer all resolve one future.
    """
    if command.args:
        raise SyntaxFault("IDLE takes no arguments")
    session.send(b"+ idling")
    await session.refresh(expunges=True, force=True)
    await session.flush()
    loop = asyncio.get_running_loop()
    reader = asyncio.ensure_future(session.reader.read_line(PRE_AUTH.line))
    wake: list[asyncio.Future[None] | None] = [None]
    expired = False

    def wake_up(_: object = None) -> None:
        future = wake[0]
        if future is not None and not future.done():
            future.set_result(None)

    def autologout() -> None:
        nonlocal expired
        expired = True
        wake_up()

    timer = loop.call_later(session.config.autologout, autologout)
    reader.add_done_callback(wake_up)
    selected = session.selected
    try:
        while not reader.done():
            if expired:
                session.untagged("BYE Autologout: idle for too long")  # RFC 9051 §5.4
                session.state = State.LOGOUT
                return
            if selected is not None and selected.watcher.changed:
                await session.refresh(expunges=True)
                await session.flush()
                continue
            future: asyncio.Future[None] = loop.create_future()
            wake[0] = future
            if selected is not None:
                selected.watcher.waiter = future
            await future
        line = reader.result()
        if line.strip().upper() != b"DONE":
            raise Bad("expected DONE")
    finally:
        timer.cancel()
        wake[0] = None
        if selected is not None:
            selected.watcher.waiter = None
        if not reader.done():
            reader.cancel()
        elif reader.exception() is not None and isinstance(reader.exception(), ConnectionClosed):
            raise ConnectionClosed()
    session.tagged(command.tag, "OK", "IDLE terminated")


_ANY = frozenset(State)
_NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})

COMMANDS: dict[str, tuple[frozenset[State], Handler]] = {
    "CAPABILITY": (_ANY, capability),
    "NOOP": (_ANY, noop),
    "LOGOUT": (_ANY, logout),
    "ID": (_ANY, folders.ident),
    "STARTTLS": (_NOT_AUTH, starttls),
    "LOGIN": (_NOT_AUTH, login),
    "AUTHENTICATE": (_NOT_AUTH, authenticate),
    "ENABLE": (_AUTH, folders.enable),
    "NAMESPACE": (_AUTH, folders.namespace),
    "SELECT": (_AUTH, folders.select),
    "EXAMINE": (_AUTH, folders.select),
    "CREATE": (_AUTH, folders.create),
    "DELETE": (_AUTH, folders.delete),
    "RENAME": (_AUTH, folders.rename),
    "SUBSCRIBE": (_AUTH, folders.subscribe),
    "UNSUBSCRIBE": (_AUTH, folders.subscribe),
    "LIST": (_AUTH, folders.list_folders),
    "LSUB": (_AUTH, folders.lsub),
    "STATUS": (_AUTH, folders.status),
    "APPEND": (_AUTH, messages.append),
    "IDLE": (_AUTH, idle),
    "CHECK": (_SELECTED, noop),
    "CLOSE": (_SELECTED, folders.close),
    "UNSELECT": (_SELECTED, folders.close),
    "EXPUNGE": (_SELECTED, messages.expunge),
    "UID EXPUNGE": (_SELECTED, messages.expunge),
    "FETCH": (_SELECTED, messages.fetch),
    "UID FETCH": (_SELECTED, messages.fetch),
    "STORE": (_SELECTED, messages.store),
    "UID STORE": (_SELECTED, messages.store),
    "COPY": (_SELECTED, messages.copy),
    "UID COPY": (_SELECTED, messages.copy),
    "MOVE": (_SELECTED, messages.copy),
    "UID MOVE": (_SELECTED, messages.copy),
    "SEARCH": (_SELECTED, messages.search),
    "UID SEARCH": (_SELECTED, messages.search),
    "SORT": (_SELECTED, messages.sort),
    "UID SORT": (_SELECTED, messages.sort),
    "THREAD": (_SELECTED, messages.thread),
    "UID THREAD": (_SELECTED, messages.thread),
}

__all__ = ["COMMANDS", "is_atom"]
