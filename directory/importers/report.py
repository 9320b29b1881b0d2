"""What an import did, and which lines it skipped and why."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

MAX_KEPT = 1000  # problems kept in memory; the rest are only counted
Counted = tuple[int, list[tuple[int, str]]]  # (problems found, (line, reason) of those kept)


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass
class ImportReport:
    format: str
    rows: int = 0  # data lines read
    accepted: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    rejected_count: int = 0
    warning_count: int = 0
    rejected: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parse_process_peak_rss: int = 0  # bytes; 0 when parsed in the importing process
    # The parsing thread and the merging one both report problems.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reject(self, line: int, reason: str) -> None:
        with self._lock:
            self._reject(line, reason)

    def _reject(self, line: int, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_KEPT:
            self.rejected.append(Problem(line, reason))

    def add_problems(self, rejected: Counted, warnings: Counted) -> None:
        """Problems another process found: (how many, those it kept)."""
        (rejected_count, rejected_kept), (warning_count, warnings_kept) = rejected, warnings
        with self._lock:
            for line, reason in rejected_kept:
                self._reject(line, reason)
            self.rejected_count += rejected_count - len(rejected_kept)
            for line, reason in warnings_kept:
                self._warn(line, reason)
            self.warning_count += warning_count - len(warnings_kept)

    def sorted_rejected(self) -> list[Problem]:
        return sorted(self.rejected, key=lambda problem: problem.line)

    def warn(self, line: int, reason: str) -> None:
        with self._lock:
            self._warn(line, reason)

    def _warn(self, line: int, reason: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_KEPT:
            self.warnings.append(Problem(line, reason))
