"""Change notifications between server processes on one PostgreSQL (LISTEN/NOTIFY).

Every change this process commits is sent on channel ``mss_changes`` as
``node:folder:kind:modseq``; every change another node sends is delivered to the
local ``ChangeBus`` watchers (IMAP IDLE), so a delivery made by another process
reaches an idling client well within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from mailserver.store.notify import ChangeBus, FolderChange

log = logging.getLogger(__name__)

CHANNEL = "mss_changes"


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgNotifier:
    def __init__(self, url: str, bus: ChangeBus) -> None:
        self._dsn = asyncpg_dsn(url)
        self._bus = bus
        self._node = uuid.uuid4().hex[:12]
        self._outbox: asyncio.Queue[FolderChange] = asyncio.Queue(10000)
        self._listen: Any = None
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listen = await asyncpg.connect(self._dsn)
        await self._listen.add_listener(CHANNEL, self._heard)
        self._sender = asyncio.create_task(self._send_loop(), name="pg-notify")
        self._bus.forward = self._enqueue

    async def close(self) -> None:
        self._bus.forward = None
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._listen is not None:
            await self._listen.close()

    def _enqueue(self, change: FolderChange) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(change)

    async def _send_loop(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        try:
            while True:
                change = await self._outbox.get()
                payload = f"{self._node}:{change.folder_id}:{change.kind}:{change.modseq}"
                try:
                    await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
                except (OSError, asyncpg.PostgresError):
                    log.exception("store: NOTIFY failed; reconnecting")
                    with contextlib.suppress(Exception):
                        await connection.close()
                    await asyncio.sleep(1)
                    connection = await asyncpg.connect(self._dsn)
        finally:
            await connection.close()

    def _heard(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            node, folder, kind, modseq = payload.split(":")
            if node == self._node or kind not in ("exists", "flags", "expunge"):
                return
            self._bus.deliver(FolderChange(int(folder), kind, (), int(modseq)))  # type: ignore[arg-type]
        except ValueError:
            log.warning("store: ignoring malformed notification %r", payload[:100])
