"""Change notifications: who is watching which folder (IMAP IDLE, webmail).

In-process only for now; the IMAP issue adds PostgreSQL LISTEN/NOTIFY so that a
session hears deliveries made by another node.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ChangeKind = Literal["exists", "flags", "expunge"]


@dataclass(frozen=True)
class FolderChange:
    folder_id: int
    kind: ChangeKind
    uids: tuple[int, ...]
    modseq: int


class ChangeBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._watchers: dict[int, set[asyncio.Queue[FolderChange]]] = defaultdict(set)
        self._queue_size = queue_size
        # Set by the PostgreSQL notifier: changes made here are told to other nodes.
        self.forward: Callable[[FolderChange], None] | None = None
        # Called for every change, local or remote (the store drops cached deltas).
        self.listeners: list[Callable[[FolderChange], None]] = []

    def subscribe(self, folder_id: int) -> asyncio.Queue[FolderChange]:
        queue: asyncio.Queue[FolderChange] = asyncio.Queue(self._queue_size)
        self._watchers[folder_id].add(queue)
        return queue

    def unsubscribe(self, folder_id: int, queue: asyncio.Queue[FolderChange]) -> None:
        watchers = self._watchers.get(folder_id)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[folder_id]

    def publish(self, change: FolderChange) -> None:
        """A change committed by this process: tell local watchers and other nodes."""
        self.deliver(change)
        if self.forward is not None:
            self.forward(change)

    def deliver(self, change: FolderChange) -> None:
        """Tell local watchers only (changes heard from other nodes come in here)."""
        for listener in self.listeners:
            listener(change)
        for queue in self._watchers.get(change.folder_id, ()):
            if queue.full():
                # A watcher that does not read loses detail, not the signal: it
                # re-reads the folder state when it wakes.
                continue
            queue.put_nowait(change)
