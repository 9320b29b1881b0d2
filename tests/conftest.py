"""Shared fixtures: real databases (SQLite and PostgreSQL), real deployments, real
servers on loopback ports.

PostgreSQL comes from MSS_TEST_POSTGRES (default: the machine's server on
127.0.0.1:5432, user postgres, database test); each test gets a fresh database.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import socket
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from directory.models import MailboxType
from directory.service import MailboxRecord
from mailserver.app import Application
from mailserver.auth import hash_password
from mailserver.deployment import init_deployment
from mailserver.settings import Settings, load_settings

T = TypeVar("T")

POSTGRES_ADMIN_URL = os.environ.get(
    "MSS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
DOMAIN = "hopital.example"
PATIENT_DOMAIN = "patient.example"
LISTENER_PORTS = (25, 587, 465, 143, 993, 443)


def _port_base_is_free(base: int) -> bool:
    for port in LISTENER_PORTS:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", base + port))
            except OSError:
                return False
    return True


# The ports of the last bases given out: a test runs at most a few deployments at
# once, and older ones have stopped (their ports are free again).
_recent_bases: collections.deque[set[int]] = collections.deque(maxlen=16)


def free_port_base() -> int:
    """A port base N such that N+25 … N+993 are free on 127.0.0.1, and share no
    port with a base given out before in this run (bases 300 apart would: N+443 is
    N'+143), since a deployment binds its ports only later, when its server starts."""
    rng = uuid.uuid4().int
    for attempt in range(200):
        # Every port below 32768, out of Linux's ephemeral range (32768–60999):
        # a client socket elsewhere in the suite can never take one of ours between
        # the check above and the server's bind. 10000–10999 is the demo's.
        base = 11000 + ((rng + attempt * 7919) % 200) * 100
        ports = {base + port for port in LISTENER_PORTS}
        taken = set().union(*_recent_bases) if _recent_bases else set()
        if not ports & taken and _port_base_is_free(base):
            _recent_bases.append(ports)
            return base
    raise RuntimeError("no free port base on 127.0.0.1")


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file under ``root`` holding ``needle`` (encryption at rest: none should)."""
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def _admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = f"mss_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends: the test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def make_deployment(tmp_path: Path, database_url: str = "") -> Settings:
    """``mss init`` in ``tmp_path``; the database URL, when given, goes in mss.toml.

    Login throttling delays are scaled down (same doubling, 50 ms first step) so
    that tests exercise them without waiting seconds.
    """
    settings = asyncio.run(
        init_deployment(
            tmp_path / "deployment", domains=[DOMAIN], patient_domain=PATIENT_DOMAIN,
            port_base=free_port_base(), hostname="mx.hopital.example",
            database_url=database_url,
        )
    )
    return dataclasses.replace(
        settings, auth=dataclasses.replace(settings.auth, failure_delay=0.05)
    )


@pytest.fixture
def deployment(tmp_path: Path) -> Settings:
    """A fresh deployment on SQLite with its own port base."""
    return make_deployment(tmp_path)


class ServerThread:
    """The real server (every listener) on its own event loop in a thread, so that
    tests speak to it with blocking clients (smtplib, imaplib)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app = Application(settings)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        self.call(self.app.start())
        return self

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self.call(self.app.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def port(self, name: str) -> int:
        return self.settings.listen.port(name)

    def add_mailbox(
        self, address: str, password: str = "secret-password-1",
        mailbox_type: MailboxType = MailboxType.PER,
    ) -> MailboxRecord:
        async def go() -> MailboxRecord:
            record = await self.app.directory.add_mailbox(
                address, mailbox_type, password_hash=hash_password(password)
            )
            await self.app.store.ensure_folders(record.id)
            return record

        return self.call(go())

    def inbox(self, address: str) -> list[bytes]:
        """The bodies in ``address``'s INBOX, oldest first."""

        async def go() -> list[bytes]:
            record = await self.app.directory.lookup(address)
            assert record is not None, address
            folder = await self.app.store.folder(record.id, "INBOX")
            assert folder is not None
            return [
                await self.app.store.body(m.blob_sha256, mailbox_id=record.id)
                for m in await self.app.store.messages(folder.id)
            ]

        return self.call(go())


def start_server(settings: Settings) -> ServerThread:
    return ServerThread(settings).start()


@pytest.fixture
def server(deployment: Settings) -> Iterator[ServerThread]:
    running = start_server(deployment)
    try:
        yield running
    finally:
        running.stop()


def reload(settings: Settings) -> Settings:
    return load_settings(settings.data_dir)
