"""aiosmtpd's protocol engine, hardened: enhanced codes on every reply, async
throttled AUTH, connection limits, and implicit TLS seen as TLS.

aiosmtpd ≥ 1.4.6 already discards what a client pipelined after STARTTLS
(RFC 3207 §4.2; CVE-2011-0411 family) and ends DATA only on CRLF.CRLF; the
handler refuses bare CR / LF inside DATA (SMTP smuggling).
"""

from __future__ import annotations

import binascii
import logging
import warnings
from base64 import b64decode
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult

from mailserver.auth import Authenticator, LoginOutcome
from mailserver.smtp.limits import ConnectionLimiter
from mailserver.smtp.replies import with_enhanced_code

log = logging.getLogger("mailserver.smtp")

_HOLDABLE = frozenset({"250", "251", "252", "450", "451", "452", "550", "551", "552", "553"})

REPLY_THROTTLED = "454 4.7.0 Too many failed logins, try again later"
REPLY_INVALID = "535 5.7.8 Authentication credentials invalid"
REPLY_NOT_ALLOWED = "535 5.7.8 This mailbox may not log in on SMTP; use the webmail"


class MssSMTP(SMTP):
    def __init__(
        self,
        handler: Any,
        *,
        authenticator: Authenticator,
        limiter: ConnectionLimiter,
        implicit_tls: bool = False,
        **kwargs: Any,
    ) -> None:
        with warnings.catch_warnings():
            # aiosmtpd warns when AUTH is required without STARTTLS; on 465 the
            # whole connection is TLS (implicit), which it cannot see.
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            super().__init__(handler, **kwargs)
        self._logins = authenticator
        self._limiter = limiter
        self._implicit_tls = implicit_tls
        self._greeted = False
        self._in_helo = False
        self._counted_ip: str | None = None
        self._pending: list[bytes] = []
        # RFC 3461 parameters of the current MAIL / RCPT, values as sent (xtext
        # is case-sensitive; aiosmtpd upper-cases the parameters it keeps).
        self.dsn_params: dict[str, str] = {}

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
        address, params = super()._getaddr(arg)
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
        self._in_helo = True  # nor in the EHLO / HELO reply; its lines go in one write
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_helo = False
        await self._flush()

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_helo = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_helo = False
        await self._flush()

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

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted_ip is not None:
            self._limiter.release(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)

    # ---- AUTH (RFC 4954), checked off the event loop ---------------------------

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            response = await self.challenge_auth("")
            if response is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                response = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode base64")
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
