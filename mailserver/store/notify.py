"""Change notifications: who is watching which folder (IMAP IDLE, webmail).

Within a process, a ``ChangeBus`` hands each change to the queues of the sessions
watching that folder. When several server processes share the data directory
(``server.workers``), each bus also binds a Unix datagram socket in
``DATA_DIR/run/`` and sends every change it publishes to its peers, which hand
it to their own watchers: a delivery made by one worker wakes an IDLE session
held by another. A change whose UID list is too long for one datagram travels
with ``uids=()``: watchers then re-read the folder state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

log = logging.getLogger(__name__)

ChangeKind = Literal["exists", "flags", "expunge"]
_KINDS: frozenset[str] = frozenset({"exists", "flags", "expunge"})
_MAX_DATAGRAM = 16 * 1024


@dataclass(frozen=True)
class FolderChange:
    folder_id: int
    kind: ChangeKind
    uids: tuple[int, ...]  # empty: "something changed, re-read the folder"
    modseq: int

    def encode(self) -> bytes:
        data = json.dumps({"f": self.folder_id, "k": self.kind, "u": list(self.uids),
                           "m": self.modseq}).encode()
        if len(data) > _MAX_DATAGRAM:
            data = json.dumps({"f": self.folder_id, "k": self.kind, "u": [],
                               "m": self.modseq}).encode()
        return data

    @staticmethod
    def decode(data: bytes) -> FolderChange | None:
        try:
            raw = json.loads(data)
            kind = raw["k"]
            if kind not in _KINDS:
                return None
            return FolderChange(int(raw["f"]), cast(ChangeKind, kind),
                                tuple(int(u) for u in raw["u"]), int(raw["m"]))
        except (ValueError, KeyError, TypeError):
            return None


class Watcher:
    """One session's interest in one folder: a flag the bus raises, and the future
    to resolve while the session waits (IDLE). No queue and no task per watcher:
    10,000 IDLE sessions on one folder are woken by 10,000 ``set_result`` calls.
    What changed is re-read from the folder (MODSEQ), so only the signal matters;
    ``last`` keeps the latest change for those who want to look."""

    __slots__ = ("changed", "last", "since", "waiter")

    def __init__(self, since: int = 0) -> None:
        self.changed = False
        # The MODSEQ up to which the watcher knows the folder (IMAP: the session's).
        self.since = since
        self.last: FolderChange | None = None
        self.waiter: asyncio.Future[None] | None = None

    def notify(self, change: FolderChange) -> None:
        self.changed = True
        self.last = change
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def take(self) -> bool:
        """Whether a change arrived since the last call."""
        changed, self.changed = self.changed, False
        return changed

    async def wait(self) -> FolderChange | None:
        """Until a change arrives (at once if one is waiting); consumes it."""
        if not self.changed:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        self.changed = False
        return self.last


# From this many watchers of one folder, what they will ask is prepared before
# they are woken (see ``ChangeBus.prepare``).
PREPARE_FROM = 8
PREPARE_MAX_STATES = 4


class ChangeBus:
    def __init__(self) -> None:
        self._watchers: dict[int, set[Watcher]] = defaultdict(set)
        # Set by the store: ``prepare(folder_id, since)`` reads what changed in the
        # folder after ``since`` and keeps it for the watchers that will ask. Woken
        # only once it is ready, 10,000 IDLE sessions of one folder find the answer
        # waiting instead of each suspending (and allocating) to wait for one query.
        self.prepare: Callable[[int, int], Awaitable[object]] | None = None
        self._preparing: set[asyncio.Task[None]] = set()
        self._socket: socket.socket | None = None
        self._directory: Path | None = None
        self._path: Path | None = None
        self._peer_paths: list[Path] = []
        self._peers_listed_at = 0.0
        # Set by the PostgreSQL notifier: changes made here are told to other nodes.
        self.forward: Callable[[FolderChange], None] | None = None
        # Called for every change, local or remote (the store drops cached deltas).
        self.listeners: list[Callable[[FolderChange], None]] = []

    # ---- watchers in this process ------------------------------------------------

    def subscribe(self, folder_id: int, since: int = 0) -> Watcher:
        watcher = Watcher(since)
        self._watchers[folder_id].add(watcher)
        return watcher

    def unsubscribe(self, folder_id: int, watcher: Watcher) -> None:
        watchers = self._watchers.get(folder_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[folder_id]

    def publish(self, change: FolderChange) -> None:
        """A change committed by this process: tell local watchers, the other
        worker processes and (through the PostgreSQL notifier) other nodes."""
        self.deliver(change)
        if self._socket is not None:
            self._send_to_peers(change.encode())
        if self.forward is not None:
            self.forward(change)

    def deliver(self, change: FolderChange) -> None:
        """Tell local watchers only (changes heard from other processes come in here)."""
        for listener in self.listeners:
            listener(change)
        watchers = self._watchers.get(change.folder_id)
        if not watchers:
            return
        if self.prepare is not None and len(watchers) >= PREPARE_FROM:
            states = {watcher.since for watcher in watchers}
            if len(states) <= PREPARE_MAX_STATES:
                task = asyncio.ensure_future(self._prepare_then_notify(change, states))
                self._preparing.add(task)
                task.add_done_callback(self._preparing.discard)
                return
        for watcher in list(watchers):
            watcher.notify(change)

    async def _prepare_then_notify(self, change: FolderChange, states: set[int]) -> None:
        assert self.prepare is not None
        try:
            for since in states:
                await self.prepare(change.folder_id, since)
        except Exception:
            log.exception("change bus: preparing folder %d failed", change.folder_id)
        finally:
            for watcher in list(self._watchers.get(change.folder_id, ())):
                watcher.notify(change)

    # ---- peers in other processes -------------------------------------------------

    def join_peers(self, directory: Path) -> None:
        """Exchange changes with the other processes using ``directory``."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._directory = directory
        self._path = directory / f"bus-{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self._path))
        sock.setblocking(False)
        self._socket = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)

    def _receive(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data = self._socket.recv(_MAX_DATAGRAM + 1024)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.exception("change bus: receive failed")
                return
            change = FolderChange.decode(data)
            if change is not None:
                self.deliver(change)

    def _peers(self) -> list[Path]:
        """The other processes' sockets, re-listed at most every second."""
        now = time.monotonic()
        if now - self._peers_listed_at > 1.0:
            assert self._directory is not None
            self._peer_paths = [p for p in self._directory.glob("bus-*.sock") if p != self._path]
            self._peers_listed_at = now
        return self._peer_paths

    def _send_to_peers(self, data: bytes) -> None:
        assert self._socket is not None
        for peer in self._peers():
            try:
                self._socket.sendto(data, str(peer))
            except (ConnectionRefusedError, FileNotFoundError):
                peer.unlink(missing_ok=True)  # a process that is gone
                self._peers_listed_at = 0.0
            except BlockingIOError:
                log.warning("change bus: peer %s is not reading; change dropped", peer.name)
            except OSError:
                log.exception("change bus: send to %s failed", peer.name)

    def close(self) -> None:
        if self._socket is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            except RuntimeError:
                pass
            self._socket.close()
            self._socket = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
