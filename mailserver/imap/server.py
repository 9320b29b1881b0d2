"""The IMAP listeners: 143 (STARTTLS, LOGINDISABLED before it) and 993 (implicit
TLS, RFC 8314 §3.3)."""

from __future__ import annotations

import asyncio
import logging
import ssl

from mailserver.auth import Authenticator
from mailserver.imap.session import Session, SessionConfig
from mailserver.oidc import TokenVerifier
from mailserver.settings import Settings
from mailserver.smtp.limits import ConnectionLimiter
from mailserver.store import Store

log = logging.getLogger(__name__)


class ImapListeners:
    """The bound listeners and the sessions they run, to stop both on shutdown."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.sessions: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.sessions):
            task.cancel()
        if self.sessions:
            await asyncio.wait(list(self.sessions), timeout=5)


async def start_imap(
    settings: Settings, store: Store, authenticator: Authenticator, tls: ssl.SSLContext,
    tokens: TokenVerifier | None = None,
) -> ImapListeners:
    listeners = ImapListeners()
    if not settings.imap.enabled:
        return listeners
    limiter = ConnectionLimiter(settings.imap.max_connections_per_ip,
                                settings.imap.max_connections)
    sessions = listeners.sessions

    def handler(implicit: bool):  # type: ignore[no-untyped-def]
        config = SessionConfig(
            hostname=settings.server.hostname,
            append_limit=settings.smtp.max_message_size,
            tls_context=None if implicit else tls,
            pre_auth_timeout=float(settings.imap.pre_auth_timeout),
            autologout=float(settings.imap.autologout),
            tokens=tokens,
            external=authenticator.certificates is not None,
        )

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            ip = str(peer[0]) if peer else "unknown"
            refusal = limiter.acquire(ip)
            if refusal is not None:
                writer.write(f"* BYE {refusal}\r\n".encode())
                try:
                    await writer.drain()
                finally:
                    writer.close()
                return
            task = asyncio.current_task()
            if task is not None:
                sessions.add(task)
            try:
                session = Session(reader, writer, store=store, authenticator=authenticator,
                                  config=config, tls=implicit)
                await session.run()
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("imap: session ended by an error")
            finally:
                limiter.release(ip)
                if task is not None:
                    sessions.discard(task)
                writer.close()

        return serve

    servers = listeners.servers
    host = settings.listen.bind_address()
    servers.append(await asyncio.start_server(
        handler(False), host=host, port=settings.listen.port("imap"), reuse_address=True,
        reuse_port=True,  # every worker process of `mss serve` listens (supervisor.py)
        limit=65536,
    ))
    servers.append(await asyncio.start_server(
        handler(True), host=host, port=settings.listen.port("imaps"), ssl=tls,
        reuse_address=True, reuse_port=True, limit=65536, ssl_handshake_timeout=30,
    ))
    return listeners
