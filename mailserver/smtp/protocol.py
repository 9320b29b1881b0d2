"""aiosmtpd's protocol engine, hardened: enhanced codes on every reply, async
throttled AUTH, connection limits, and implicit TLS seen as TLS.

aiosmtpd ≥ 1.4.6 already discards what a client pipelined after STARTTLS
(RFC 3207 §4.2; CVE-2011-0411 family) and ends DATA only on CRLF.CRLF; the
handler refuses bare CR / LF inside DATA (SMTP smuggling).
"""

from __future__ import annotations

import asyncio
import binascii
import inspect
import logging
import re
import warnings
from base64 import b64decode
from collections.abc import Callable
from typing import Any

import aiosmtpd.smtp as aiosmtpd_smtp
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, TLSSetupException, syntax

from mailserver.auth import Authenticator, LoginOutcome
from mailserver.oidc import TokenVerifier
from mailserver.sasl import (
    OAUTHBEARER_ERROR,
    BearerCredentials,
    SaslError,
    parse_oauthbearer,
    parse_xoauth2,
)
from mailserver.smtp.limits import ConnectionLimiter
from mailserver.smtp.replies import with_enhanced_code

log = logging.getLogger("mailserver.smtp")

AUTH_LINE_OCTETS = 12288
# RFC 5321 §4.5.3.1.6: 1000 octets with CRLF, + 1 for a stuffed dot, minus the CRLF.
MAX_LINE_OCTETS = 999

_HOLDABLE = frozenset({"250", "251", "252", "450", "451", "452", "550", "551", "552", "553"})

REPLY_THROTTLED = "454 4.7.0 Too many failed logins, try again later"
REPLY_INVALID = "535 5.7.8 Authentication credentials invalid"
REPLY_NOT_ALLOWED = "535 5.7.8 This mailbox may not log in on SMTP; use the webmail"
REPLY_CERTIFICATE_NOT_ALLOWED = (
    "535 5.7.8 Certificate logins are for application and organisation mailboxes")


# RFC 5321 §4.1.2 Mailbox in angle brackets, the common shape: a dot-atom local
# part and a domain of LDH labels (anything else goes through aiosmtpd's parser).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"^<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9.-]{{0,252}}[A-Za-z0-9])?)>(.*)$",
    re.DOTALL,
)


class _CachedMembers:
    """Stands in for the ``inspect`` module inside aiosmtpd, whose SMTP.__init__ runs
    ``inspect.getmembers()`` on the protocol and the handler for every connection
    (evaluating every attribute) only to find the ``auth_*`` methods. The names are
    found once per class; the members are looked up (bound) for each object."""

    def __init__(self) -> None:
        self._names: dict[type, list[str]] = {}

    def getmembers(self, obj: object) -> list[tuple[str, Any]]:
        names = self._names.get(type(obj))
        if names is None:
            names = self._names[type(obj)] = [n for n in dir(obj) if n.startswith("auth_")]
        return [(name, getattr(obj, name)) for name in names]

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)


aiosmtpd_smtp.inspect = _CachedMembers()  # type: ignore[attr-defined,assignment]


class MssSMTP(SMTP):
    # RFC 4954 §4: an AUTH command line (an OpenID Connect token) may reach 12,288
    # octets; other command lines stay at 512 (checked per command below).
    line_length_limit = AUTH_LINE_OCTETS + 2
    def __init__(
        self,
        handler: Any,
        *,
        authenticator: Authenticator,
        limiter: ConnectionLimiter,
        implicit_tls: bool = False,
        tokens: TokenVerifier | None = None,
        **kwargs: Any,
    ) -> None:
        with warnings.catch_warnings():
            # aiosmtpd warns when AUTH is required without STARTTLS; on 465 the
            # whole connection is TLS (implicit), which it cannot see.
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            super().__init__(handler, **kwargs)
        self.command_size_limits["AUTH"] = AUTH_LINE_OCTETS
        self._logins = authenticator
        self._tokens = tokens
        self._limiter = limiter
        self._implicit_tls = implicit_tls
        self._greeted = False
        self._in_helo = False
        self._counted_ip: str | None = None
        self._pending: list[bytes] = []
        # RFC 3461 parameters of the current MAIL / RCPT, values as sent (xtext
        # is case-sensitive; aiosmtpd upper-cases the parameters it keeps).
        self.dsn_params: dict[str, str] = {}

    def _parse_path(self, arg: str) -> tuple[str | None, str | None]:
        """MAIL FROM / RCPT TO path: a regular expression for the common shape, the
        email package's full RFC 5322 parser (aiosmtpd's) for anything else."""
        match = _SIMPLE_PATH.match(arg) if arg else None
        if match is not None:
            return match.group(1), match.group(2).lstrip()
        address, rest = super()._getaddr(arg)
        return address, rest

    # ---- transport facts ------------------------------------------------------

    @property
    def peer_ip(self) -> str:
        peer = self.session.peer if self.session else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"

    @property
    def in_tls(self) -> bool:
        return self._implicit_tls or self._tls_protocol is not None

    def tls_description(self) -> str | None:
        """"TLSv1.3 TLS_AES_256_GCM_SHA384" for the Received: header, or None."""
        if not self.in_tls or self.transport is None:
            return None
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return "TLS"
        cipher = ssl_object.cipher()
        return f"{ssl_object.version()} {cipher[0] if cipher else ''}".strip()

    def peer_certificate_der(self) -> bytes | None:
        """The TLS client certificate, verified against the trust anchors."""
        if not self.in_tls or self.transport is None:
            return None
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        return der

    # ---- DSN parameters (RFC 3461) ---------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        address, params = self._parse_path(arg)
        self.dsn_params = {}
        if not params:
            return address, params
        mail = self.envelope is None or self.envelope.mail_from is None
        ours = ("RET", "ENVID") if mail else ("NOTIFY", "ORCPT")
        kept = []
        for token in params.split():
            key, eq, value = token.partition("=")
            if key.upper() in ours and eq:
                if key.upper() in self.dsn_params:
                    self.dsn_params["DUPLICATE"] = key.upper()
                self.dsn_params[key.upper()] = value
            else:
                kept.append(token)
        return address, " ".join(kept)

    # ---- replies --------------------------------------------------------------

    async def push(self, status: Any) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if not self._greeted and text.startswith("220 "):
            self._greeted = True  # RFC 2034 §3: no enhanced code in the greeting
        elif not self._in_helo:
            text = with_enhanced_code(text)
        self._pending.append(text.encode("utf-8" if self.enable_SMTPUTF8 else "ascii"))
        # RFC 2920 §3.2: replies to MAIL / RCPT / RSET may be held while more
        # pipelined commands are already waiting, then sent in one write (one
        # syscall instead of several). Never held: 220 (STARTTLS), 221, 354, 421…
        if self._in_helo or (text[:3] in _HOLDABLE and self._more_commands_waiting()):
            return
        await self._flush()

    def _more_commands_waiting(self) -> bool:
        buffered: bytearray = self._reader._buffer  # type: ignore[attr-defined]
        return b"\n" in buffered

    async def _flush(self) -> None:
        if not self._pending or self.transport is None:
            self._pending.clear()
            return
        data = b"\r\n".join(self._pending) + b"\r\n"
        self._pending.clear()
        self._writer.write(data)
        await self._writer.drain()

    async def smtp_EHLO(self, hostname: str) -> None:
        # EXTERNAL is offered only on a TLS session whose client presented a
        # certificate (RFC 4422 Appendix A: the credentials are the TLS layer's).
        hidden = None
        if "EXTERNAL" in self._auth_methods and self.peer_certificate_der() is None:
            hidden = self._auth_methods.pop("EXTERNAL")
        self._in_helo = True  # nor in the EHLO / HELO reply; its lines go in one write
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_helo = False
            if hidden is not None:
                self._auth_methods["EXTERNAL"] = hidden
        await self._flush()

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_helo = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_helo = False
        await self._flush()

    # ---- DATA (RFC 5321 §4.1.1.4, §4.5.2) ---------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """Read the message in blocks rather than line by line (aiosmtpd's way).

        The end is CRLF "." CRLF and nothing else (a leading "." CRLF ends an empty
        message); bytes after it stay in the reader for the next command
        (pipelining). Beyond the SIZE limit the data are read and dropped, then
        refused (`552 5.3.4`); a line over 1000 octets refuses the message
        (`500 5.5.2`, RFC 5321 §4.5.3.1.6). Bare CR / LF are the handler's to refuse.
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit = self.data_size_limit or 0
        # A virtual CRLF before the data, so that "." CRLF first ends an empty message.
        data = bytearray(b"\r\n")
        received = 0
        too_much = False
        search_from = 0
        while True:
            end = data.find(b"\r\n.\r\n", search_from)
            if end >= 0:
                break
            try:
                chunk = await self._reader.read(65536)
            except asyncio.CancelledError:
                self._writer.close()
                raise
            if not chunk:  # the client went away: nothing to acknowledge
                return
            received += len(chunk)
            if limit and received > limit + 5 and not too_much:
                too_much = True
            if too_much:  # keep only what may hold the end marker
                del data[: max(0, len(data) - 4)]
            search_from = max(0, len(data) - 4)
            data += chunk
        leftover = data[end + 5:]
        if leftover:  # pipelined commands after the end: back to the reader
            self._reader._buffer[0:0] = leftover  # type: ignore[attr-defined]
        if too_much:
            self._reset_envelope()
            await self.push("552 5.3.4 Message too big for this server")
            return
        body = bytes(data[: end + 2])  # with its leading virtual CRLF
        if max(map(len, body.split(b"\r\n"))) > MAX_LINE_OCTETS:
            self._reset_envelope()
            await self.push(
                "500 5.5.2 Line too long: at most 998 characters per line (RFC 5321 §4.5.3.1.6)"
            )
            return
        # RFC 5321 §4.5.2: a line's leading "." is removed (dot-stuffing undone).
        content = body.replace(b"\r\n.", b"\r\n")[2:]
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._reset_envelope()
        await self.push("250 OK" if status is MISSING else status)

    def _reset_envelope(self) -> None:
        self._set_post_data_state()  # type: ignore[no-untyped-call]

    # ---- connection limits ----------------------------------------------------

    async def _handle_client(self) -> None:
        ip = self.peer_ip
        refusal = self._limiter.acquire(ip)
        if refusal is not None:
            log.warning("smtp %s refused: %s", ip, refusal)
            self._greeted = True
            await super().push(f"421 4.7.0 {refusal}, try again later")
            if self.transport is not None:
                self.transport.close()
            return
        self._counted_ip = ip
        log.info("smtp %s connected door=%s", ip, getattr(self.event_handler, "door", "?"))
        await super()._handle_client()

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # E.g. a client certificate from a CA we do not trust (alert unknown_ca):
            # aiosmtpd closes the connection; the reason goes to the log.
            log.warning("smtp %s STARTTLS handshake failed: %s", self.peer_ip,
                        error.__cause__ or "no reason given")
            return "421 4.7.0 TLS handshake failed"
        status: str = await super().handle_exception(error)
        return status

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted_ip is not None:
            self._limiter.release(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)

    # ---- AUTH (RFC 4954), checked off the event loop ---------------------------

    async def _initial_response(self, args: list[str]) -> bytes | None:
        """The client's SASL response: given with AUTH (RFC 4954 §4 initial
        response) or asked for with an empty 334 challenge; None when the client
        cancelled or sent bad base64 (already answered)."""
        if len(args) == 1:
            response = await self.challenge_auth("")
            return None if response is MISSING else bytes(response)
        if args[1] == "=":  # RFC 4954 §4: a zero-length initial response
            return b""
        try:
            return b64decode(args[1].encode(), validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Cannot decode base64")
            return None

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        response = await self._initial_response(args)
        if response is None:
            return AuthResult(success=False, handled=True)
        parts = response.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot split the PLAIN credentials (RFC 4616 §2)")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            # RFC 4616 §2: acting as another identity is not supported here.
            await self.push("535 5.7.8 Authorization identity differs from the login")
            return AuthResult(success=False, handled=True)
        return await self._login(login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth("Username:")
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._login(login, password)

    async def auth_OAUTHBEARER(self, _: Any, args: list[str]) -> AuthResult:
        return await self._bearer(args, parse_oauthbearer)

    async def auth_XOAUTH2(self, _: Any, args: list[str]) -> AuthResult:
        return await self._bearer(args, parse_xoauth2)

    async def auth_EXTERNAL(self, _: Any, args: list[str]) -> AuthResult:
        """RFC 4422 Appendix A: the client's message is the authorization identity
        (empty: the one mailbox its TLS certificate is bound to)."""
        response = await self._initial_response(args)
        if response is None:
            return AuthResult(success=False, handled=True)
        try:
            authzid = response.decode("utf-8")
        except UnicodeDecodeError:
            await self.push("501 5.5.2 The authorization identity must be UTF-8")
            return AuthResult(success=False, handled=True)
        result = await self._logins.login_certificate(
            self.peer_certificate_der(), authzid.strip(), client_ip=self.peer_ip, door="smtp")
        if result.outcome is LoginOutcome.OK:
            return AuthResult(success=True, auth_data=result.mailbox)
        reply = {
            LoginOutcome.THROTTLED: REPLY_THROTTLED,
            LoginOutcome.NOT_ALLOWED: REPLY_CERTIFICATE_NOT_ALLOWED,
        }.get(result.outcome, REPLY_INVALID)
        return AuthResult(success=False, handled=False, message=reply)

    async def _bearer(
        self, args: list[str], parse: Callable[[bytes], BearerCredentials]
    ) -> AuthResult:
        """RFC 7628 §3.2: on failure the server sends a JSON error challenge, the
        client answers ^A, then the exchange fails with 535."""
        if self._tokens is None:
            await self.push("504 5.5.4 Token logins are not configured here")
            return AuthResult(success=False, handled=True)
        response = await self._initial_response(args)
        if response is None:
            return AuthResult(success=False, handled=True)
        try:
            credentials = parse(response)
        except SaslError as error:
            await self.push(f"501 5.5.2 {error}")
            return AuthResult(success=False, handled=True)
        result = await self._logins.login_token(
            self._tokens, credentials.token, credentials.authzid,
            client_ip=self.peer_ip, door="smtp",
        )
        log.info("smtp %s auth-token %s", self.peer_ip, result.outcome.value)
        if result.outcome is LoginOutcome.OK:
            return AuthResult(success=True, auth_data=result.mailbox)
        if result.outcome is LoginOutcome.THROTTLED:
            return AuthResult(success=False, handled=False, message=REPLY_THROTTLED)
        await self.challenge_auth(OAUTHBEARER_ERROR)  # the client's ^A is read and dropped
        return AuthResult(success=False, handled=False, message=REPLY_INVALID)

    async def _login(self, login: bytes, password: bytes) -> AuthResult:
        try:
            address = login.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            await self.push("501 5.5.2 Credentials must be UTF-8")
            return AuthResult(success=False, handled=True)
        result = await self._logins.login(
            address, secret, client_ip=self.peer_ip, door="smtp"
        )
        log.info("smtp %s auth %s login=%s", self.peer_ip, result.outcome.value, address[:320])
        if result.outcome is LoginOutcome.OK:
            return AuthResult(success=True, auth_data=result.mailbox)
        reply = {
            LoginOutcome.THROTTLED: REPLY_THROTTLED,
            LoginOutcome.NOT_ALLOWED: REPLY_NOT_ALLOWED,
        }.get(result.outcome, REPLY_INVALID)
        return AuthResult(success=False, handled=False, message=reply)
