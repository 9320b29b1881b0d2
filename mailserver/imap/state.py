"""What a session knows of its selected folder (RFC 9051 §2.3.1.2, §7.4.1).

Message sequence numbers are positions in ``uids``. Changes made elsewhere are
learnt from the folder's MODSEQ (RFC 7162): everything above ``known_modseq`` is
new to us. Expunges wait in ``pending_expunge`` until a moment the RFC allows
reporting them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from mailserver.store import FolderInfo
from mailserver.store.notify import Watcher


@dataclass
class Selected:
    folder: FolderInfo
    readonly: bool
    watcher: Watcher
    uids: list[int] = field(default_factory=list)
    flags: dict[int, frozenset[str]] = field(default_factory=dict)
    pending_expunge: set[int] = field(default_factory=set)
    dirty: bool = False
    # RFC 3501 §2.3.2: the messages this session was first told about (IMAP4rev1).
    recent: set[int] = field(default_factory=set)
    # RFC 5182 SEARCHRES: the UIDs the last SEARCH ... RETURN (SAVE) found.
    saved: list[int] = field(default_factory=list)

    @property
    def known_modseq(self) -> int:
        # Kept on the watcher: the change bus reads it to prepare, once for all the
        # sessions that know the same state, what they will ask (notify.py).
        return self.watcher.since

    @known_modseq.setter
    def known_modseq(self, value: int) -> None:
        self.watcher.since = value

    def seq_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None

    def drain(self) -> bool:
        """Consume notifications; True if any arrived since the last look."""
        if self.watcher.take():
            self.dirty = True
        return self.dirty
