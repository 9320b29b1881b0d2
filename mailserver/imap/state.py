"""What a session knows of its selected folder (RFC 9051 §2.3.1.2, §7.4.1).

Message sequence numbers are positions in ``uids``. Changes made elsewhere are
learnt from the folder's MODSEQ (RFC 7162): everything above ``known_modseq`` is
new to us. Expunges wait in ``pending_expunge`` until a moment the RFC allows
reporting them.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass, field

from mailserver.store import FolderInfo
from mailserver.store.notify import FolderChange


@dataclass
class Selected:
    folder: FolderInfo
    readonly: bool
    queue: asyncio.Queue[FolderChange]
    uids: list[int] = field(default_factory=list)
    flags: dict[int, frozenset[str]] = field(default_factory=dict)
    known_modseq: int = 0
    pending_expunge: set[int] = field(default_factory=set)
    dirty: bool = False
    # RFC 5182 SEARCHRES: the UIDs the last SEARCH ... RETURN (SAVE) found.
    saved: list[int] = field(default_factory=list)

    def seq_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None

    def drain(self) -> bool:
        """Consume notifications; True if any arrived since the last look."""
        while True:
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self.dirty = True
        return self.dirty
