"""Composition root: builds every part from the settings, starts and stops them."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field

from directory.fhir import FhirDirectory
from directory.service import Directory
from mailserver.auth import Authenticator
from mailserver.imap.server import ImapListeners, start_imap
from mailserver.oidc import TokenVerifier
from mailserver.pipeline import Pipeline
from mailserver.settings import Settings
from mailserver.smtp.server import start_smtp
from mailserver.store import Store
from mailserver.store.database import Reader, create_engine
from mailserver.store.migrate import upgrade
from mailserver.store.pgnotify import PgNotifier
from mailserver.store.vault import open_vault
from mailserver.tls import server_context
from mailserver.web import DirectoryWeb

log = logging.getLogger("mailserver")

SHUTDOWN_GRACE_SECONDS = 30.0


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
        self.authenticator = Authenticator(self.directory, self.settings.auth)
        self.pipeline = Pipeline(self.settings, self.directory, self.store)
        self.tokens = TokenVerifier(self.settings) if self.settings.oidc.enabled else None
        self.imap: ImapListeners | None = None
        # Several nodes on one PostgreSQL hear each other's changes (IMAP IDLE).
        self.notifier = (PgNotifier(self.settings.database_url, self.store.changes)
                         if self.engine.dialect.name == "postgresql" else None)
        self.web = DirectoryWeb(self.settings, self.authenticator, FhirDirectory(self.engine))

    async def start(self, *, migrate: bool = True) -> None:
        if migrate:
            await upgrade(self.engine)
        if self.workers > 1 and self.notifier is None:
            # Worker processes on SQLite tell each other through Unix sockets; on
            # PostgreSQL, LISTEN/NOTIFY reaches them and the other nodes alike.
            self.store.changes.join_peers(self.settings.data_dir / "run")
        if self.notifier is not None:
            await self.notifier.start()
        tls = server_context(
            self.settings.path(self.settings.tls.cert), self.settings.path(self.settings.tls.key)
        )
        self.servers = await start_smtp(
            self.settings, self.pipeline, self.authenticator, tls, share=self.workers,
            tokens=self.tokens,
        )
        self.imap = await start_imap(self.settings, self.store, self.authenticator, tls,
                                     self.tokens)
        self.servers += self.imap.servers
        await self.web.start(tls, share=self.workers)
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
