"""Composition root: builds every part from the settings, starts and stops them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from directory.certificates import Certificates
from directory.fhir import FhirDirectory
from directory.service import Directory
from mailserver import tlsbuffers
from mailserver.auth import Authenticator
from mailserver.client_cert import ClientCertificates, request_client_certificates
from mailserver.dkim.signer import DkimSigner
from mailserver.imap.server import ImapListeners, start_imap
from mailserver.oidc import TokenVerifier
from mailserver.pipeline import Pipeline
from mailserver.pki.authority import PkiError
from mailserver.pki.local_pki import deployment_pki
from mailserver.pki.operator import load_operator
from mailserver.queue.client import client_context
from mailserver.queue.outbound import OutboundQueue
from mailserver.queue.protect import OutboundProtector
from mailserver.queue.worker import DeliveryWorker
from mailserver.settings import Settings
from mailserver.smime.intake import IncomingKeys
from mailserver.smtp.server import start_smtp
from mailserver.store import Store
from mailserver.store.database import Reader, create_engine
from mailserver.store.migrate import upgrade
from mailserver.store.pgnotify import PgNotifier
from mailserver.store.vault import open_vault
from mailserver.tls import relay_server_context, server_context
from mailserver.trust.anchors import anchors_pem
from mailserver.trust.service import TrustSpace, refresh_forever
from mailserver.trust.signature import policy_for
from mailserver.web import DirectoryWeb

log = logging.getLogger("mailserver")
T = TypeVar("T")

SHUTDOWN_GRACE_SECONDS = 30.0
ANCHORS_CHECK_SECONDS = 5.0
CRL_REFRESH_SECONDS = 3600.0
TRUST_CHECK_SECONDS = 5.0  # S/MIME anchors and CRLs re-read at most this often


def throttled(load: Callable[[], T], seconds: float) -> Callable[[], T]:
    """``load()``, called again only when its last answer is ``seconds`` old."""
    last: list[tuple[float, T]] = []

    def get() -> T:
        now = time.monotonic()
        if not last or now - last[0][0] > seconds:
            last[:] = [(now, load())]
        return last[0][1]

    return get


@dataclass
class Application:
    settings: Settings
    worker: int = 0  # this process's index among ``workers`` (server.workers)
    workers: int = 1
    servers: list[asyncio.Server] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine = create_engine(
            self.settings.database_url,
            sqlite_synchronous=self.settings.database.sqlite_synchronous,
        )
        self.reader = Reader(self.engine)
        self.directory = Directory(self.engine, self.reader)
        self.store = Store(self.engine, open_vault(self.settings, self.engine.dialect.name),
                           self.reader)
        self.pki = deployment_pki(self.settings)
        self.client_certificates = (
            ClientCertificates(self.pki, Certificates(self.engine),
                               require_crl=self.settings.pki.login_crl_failure == "hard")
            if self.settings.pki.client_certificates and self.pki.trust_anchors() else None)
        self.authenticator = Authenticator(self.directory, self.settings.auth,
                                           self.client_certificates)
        self.tokens = TokenVerifier(self.settings) if self.settings.oidc.enabled else None
        self.imap: ImapListeners | None = None
        # Several nodes on one PostgreSQL hear each other's changes (IMAP IDLE).
        self.notifier = (PgNotifier(self.settings.database_url, self.store.changes)
                         if self.engine.dialect.name == "postgresql" else None)
        self.web = DirectoryWeb(self.settings, self.authenticator, FhirDirectory(self.engine))
        self.trust = TrustSpace(self.engine)
        self.queue = OutboundQueue(self.store, self.engine.dialect.name)
        settings = self.settings
        self.dkim = DkimSigner(
            settings.path(settings.dkim.keys_dir), settings.dkim.selector,
            settings.path(settings.dkim.dns_override_dir),
        )
        operator = load_operator(settings)
        self.protector = OutboundProtector(
            settings.smime.when, operator, self.directory.lookup_certificates,
            "aes256-cbc" if settings.smime.cipher == "aes256-cbc" else "aes256-gcm",
        )
        incoming = None
        if operator is not None:
            pki = self.pki  # one PKI: its CRL fetcher serves S/MIME and logins alike
            incoming = IncomingKeys((operator.decryptor,), throttled(
                lambda: pki.trust_store(settings.pki.smime_crl_failure == "hard"),
                TRUST_CHECK_SECONDS))
        self.pipeline = Pipeline(
            settings, self.directory, self.store, trust=self.trust, queue=self.queue,
            dkim=self.dkim, protector=self.protector, incoming=incoming,
        )
        self.delivery = DeliveryWorker(
            settings.relay, self.queue, self.trust, self.pipeline.deliver_report,
            self._client_tls, settings.server.hostname,
        )
        self.pipeline.on_queued = self.delivery.wake
        self._refresh: asyncio.Task[None] | None = None
        self._anchors_watch: asyncio.Task[None] | None = None
        self._client_anchors_watch: asyncio.Task[None] | None = None
        self._crl_refresh: asyncio.Task[None] | None = None

    @property
    def worker_index_refreshes(self) -> bool:
        """One process per deployment fetches the trust list (worker 0)."""
        return self.worker == 0

    def _anchors(self) -> str:
        return anchors_pem(self.settings.path(self.settings.trust.anchors_dir))

    async def _watch_anchors(self, relay_tls: ssl.SSLContext) -> None:
        """Port 25 learns CA certificates imported while it runs (`mss trust import`):
        the live context gets them for the next handshakes. (Removing one needs a
        restart: a context cannot forget a CA.)"""
        known = self._anchors()
        while True:
            await asyncio.sleep(ANCHORS_CHECK_SECONDS)
            try:
                current = await asyncio.to_thread(self._anchors)
                if current and current != known:
                    relay_tls.load_verify_locations(cadata=current)
                    relay_tls.verify_mode = ssl.CERT_OPTIONAL
                    known = current
                    log.info("port 25: trust anchors reloaded")
            except (OSError, ssl.SSLError, ValueError) as error:
                log.warning("port 25: cannot reload the trust anchors: %s", error)

    async def _watch_client_anchors(self, client_tls: ssl.SSLContext) -> None:
        """Submission and IMAP learn CA certificates added while they run (`mss pki
        trust add`) for the next client certificate handshakes."""
        certificates = self.client_certificates
        assert certificates is not None
        known = await asyncio.to_thread(certificates.anchors_pem)
        while True:
            await asyncio.sleep(ANCHORS_CHECK_SECONDS)
            try:
                current = await asyncio.to_thread(certificates.anchors_pem)
                if current and current != known:
                    request_client_certificates(client_tls, current)
                    known = current
                    log.info("submission / imap: client certificate anchors reloaded")
            except (OSError, ssl.SSLError, ValueError) as error:
                log.warning("submission / imap: cannot reload the PKI anchors: %s", error)

    async def _refresh_local_crls(self) -> None:
        """Worker 0 republishes the local PKI's CRLs before they go stale."""
        while True:
            try:
                for path in await asyncio.to_thread(self.pki.refresh_crls):
                    log.info("pki: CRL %s republished before its nextUpdate", path)
            except (OSError, ValueError, PkiError) as error:
                log.warning("pki: cannot republish the local CRLs: %s", error)
            await asyncio.sleep(CRL_REFRESH_SECONDS)

    def _client_tls(self) -> ssl.SSLContext:
        """Our operator certificate as TLS client; peers verified against the anchors."""
        settings = self.settings
        return client_context(settings.path(settings.tls.cert), settings.path(settings.tls.key),
                              self._anchors())

    async def start(self, *, migrate: bool = True) -> None:
        if migrate:
            await upgrade(self.engine)
        if self.workers > 1 and self.notifier is None:
            # Worker processes on SQLite tell each other through Unix sockets; on
            # PostgreSQL, LISTEN/NOTIFY reaches them and the other nodes alike.
            self.store.changes.join_peers(self.settings.data_dir / "run")
        if self.notifier is not None:
            await self.notifier.start()
        tlsbuffers.install()  # one TLS receive buffer per thread, not per connection
        tls = server_context(
            self.settings.path(self.settings.tls.cert), self.settings.path(self.settings.tls.key)
        )
        # Submission and IMAP ask for an optional client certificate (SASL EXTERNAL).
        client_tls = server_context(
            self.settings.path(self.settings.tls.cert), self.settings.path(self.settings.tls.key)
        )
        if self.client_certificates is not None:
            request_client_certificates(client_tls, self.client_certificates.anchors_pem())
        relay_tls = relay_server_context(
            self.settings.path(self.settings.tls.cert), self.settings.path(self.settings.tls.key),
            self._anchors(),
        )
        self.servers = await start_smtp(
            self.settings, self.pipeline, self.authenticator, tls, share=self.workers,
            tokens=self.tokens, relay_tls_context=relay_tls, submission_tls_context=client_tls,
        )
        self.imap = await start_imap(self.settings, self.store, self.authenticator, client_tls,
                                     self.tokens)
        self.servers += self.imap.servers
        await self.web.start(tls, share=self.workers)
        self.delivery.start()
        self._anchors_watch = asyncio.create_task(
            self._watch_anchors(relay_tls), name="trust-anchors"
        )
        if self.worker_index_refreshes:
            self._crl_refresh = asyncio.create_task(self._refresh_local_crls(),
                                                    name="crl-refresh")
        if self.client_certificates is not None:
            self._client_anchors_watch = asyncio.create_task(
                self._watch_client_anchors(client_tls), name="client-anchors")
        if self.settings.trust.url and self.worker_index_refreshes:
            self._refresh = asyncio.create_task(refresh_forever(
                self.trust, self.settings.trust.url, self.settings.trust.refresh_minutes,
                self.settings.path(self.settings.trust.anchors_dir),
                functools.partial(policy_for, self.settings),
            ), name="trust-refresh")
        for server in self.servers:
            for sock in server.sockets:
                log.info("listening on %s:%d", *sock.getsockname()[:2])

    async def stop(self) -> None:
        """Stop accepting, let submissions in flight commit, then close the store."""
        for server in self.servers:
            server.close()
        if self.imap is not None:
            await self.imap.close()
        await self.web.stop()
        if not await self.pipeline.drain(SHUTDOWN_GRACE_SECONDS):
            log.warning("shutdown: submissions still in flight after %.0fs", SHUTDOWN_GRACE_SECONDS)
        for task in (self._refresh, self._anchors_watch, self._client_anchors_watch,
                     self._crl_refresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.delivery.stop()
        await self.store.close()
        self.store.changes.close()
        self.reader.close()
        if self.notifier is not None:
            await self.notifier.close()
        await self.engine.dispose()
        log.info("stopped")

    async def run_until_signalled(self, *, migrate: bool = True) -> None:
        await self.start(migrate=migrate)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("ready")
        await stop.wait()
        log.info("signal received, stopping")
        await self.stop()
