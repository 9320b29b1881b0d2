"""The SMTP listeners: 25 (intake from the trust space, never relays), 587 (STARTTLS then AUTH),
465 (implicit TLS, RFC 8314 §3.3)."""

from __future__ import annotations

import asyncio
import math
import ssl
from dataclasses import dataclass

from mailserver.auth import Authenticator
from mailserver.oidc import TokenVerifier
from mailserver.pipeline import Pipeline
from mailserver.settings import Settings
from mailserver.smtp.handler import SmtpHandler
from mailserver.smtp.limits import ConnectionLimiter
from mailserver.smtp.protocol import MssSMTP
from policies.context import Door

IDENT = "ESMTP MSS"
TOKEN_MECHANISMS = ["OAUTHBEARER", "XOAUTH2"]


@dataclass(frozen=True)
class SmtpListener:
    name: str  # "smtp", "submission", "submissions" (the settings' port names)
    door: Door
    starttls: bool  # offer STARTTLS
    require_tls: bool  # refuse everything but EHLO/STARTTLS/NOOP/QUIT before TLS
    implicit_tls: bool
    auth: bool  # offer and require AUTH


LISTENERS = (
    SmtpListener("smtp", Door.RELAY, starttls=True, require_tls=False, implicit_tls=False,
                 auth=False),
    SmtpListener("submission", Door.SUBMISSION, starttls=True, require_tls=True,
                 implicit_tls=False, auth=True),
    SmtpListener("submissions", Door.SUBMISSION, starttls=False, require_tls=False,
                 implicit_tls=True, auth=True),
)


async def start_smtp(
    settings: Settings,
    pipeline: Pipeline,
    authenticator: Authenticator,
    tls_context: ssl.SSLContext,
    share: int = 1,
    tokens: TokenVerifier | None = None,
    relay_tls_context: ssl.SSLContext | None = None,
    submission_tls_context: ssl.SSLContext | None = None,
) -> list[asyncio.Server]:
    """Bind every enabled SMTP listener; return the servers (to close on shutdown).

    ``share``: how many worker processes split the connection limits.
    """
    limiter = ConnectionLimiter(
        # Not divided: the kernel spreads one address's connections unevenly
        # between workers, and a share would refuse a legitimate burst early.
        # One address may therefore hold up to workers × the limit in all.
        settings.smtp.max_connections_per_ip,
        math.ceil(settings.smtp.max_connections / share),
    )
    servers = []
    loop = asyncio.get_running_loop()
    # SASL EXTERNAL needs the PKI (client certificates checked against its anchors).
    external = [] if authenticator.certificates is not None else ["EXTERNAL"]
    for listener in LISTENERS:
        if listener.door is Door.RELAY and not settings.smtp.enable_relay_port:
            continue
        if listener.door is Door.SUBMISSION and not settings.smtp.enable_submission:
            continue
        handler = SmtpHandler(pipeline, settings.smtp, listener.door)
        context = tls_context
        if listener.door is Door.RELAY and relay_tls_context is not None:
            context = relay_tls_context  # asks for the peer operator's certificate
        elif listener.door is Door.SUBMISSION and submission_tls_context is not None:
            context = submission_tls_context  # asks for an optional client certificate

        def factory(listener: SmtpListener = listener, handler: SmtpHandler = handler,
                    context: ssl.SSLContext = context) -> MssSMTP:
            return MssSMTP(
                handler,
                authenticator=authenticator,
                limiter=limiter,
                implicit_tls=listener.implicit_tls,
                data_size_limit=settings.smtp.max_message_size,
                enable_SMTPUTF8=True,
                hostname=settings.server.hostname,
                ident=IDENT,
                tls_context=context if listener.starttls else None,
                require_starttls=listener.require_tls,
                timeout=settings.smtp.timeout,
                auth_required=listener.auth,
                # With implicit TLS the transport is already encrypted.
                auth_require_tls=not listener.implicit_tls,
                tokens=tokens,
                auth_exclude_mechanism=(
                    ([] if tokens is not None else TOKEN_MECHANISMS) + external if listener.auth
                    else ["PLAIN", "LOGIN", "EXTERNAL", *TOKEN_MECHANISMS]
                ),
                loop=loop,
            )

        server = await loop.create_server(
            factory,
            host=settings.listen.bind_address(),
            port=settings.listen.port(listener.name),
            ssl=context if listener.implicit_tls else None,
            reuse_address=True,
            reuse_port=True,
        )
        servers.append(server)
    return servers
