"""Is any of a set of byte patterns in this data? Hyperscan answers in one SIMD pass
over the data, every pattern at once (several GB/s, no backtracking), where Python's
``re`` walks it once per pattern. Each set's patterns are also kept as one Python
regex, the reference the tests hold the scan to.

Hyperscan's scan releases the GIL and needs scratch space of its own: one per
thread (messages are also analysed in worker threads)."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import hyperscan


def _first_match_ends_the_scan(*_: object) -> bool:
    return True  # a true return stops the scan: one match is the answer


class PatternSet:
    """Byte patterns in the syntax Python and Hyperscan share (no look-around, no
    back-reference; white space spelt out: PCRE's ``\\v`` is any vertical space)."""

    def __init__(self, patterns: Sequence[bytes], *, ignore_case: bool = False,
                 multiline: bool = False) -> None:
        flags = hyperscan.HS_FLAG_SINGLEMATCH
        python_flags = 0
        if ignore_case:  # ASCII letters only, as Python's bytes patterns fold them
            flags |= hyperscan.HS_FLAG_CASELESS
            python_flags |= re.IGNORECASE
        if multiline:  # ^ after each LF
            flags |= hyperscan.HS_FLAG_MULTILINE
            python_flags |= re.MULTILINE
        self.reference = re.compile(b"|".join(patterns), python_flags)
        self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._database.compile(expressions=list(patterns), ids=list(range(len(patterns))),
                               elements=len(patterns), flags=[flags] * len(patterns))
        self._space = threading.local()

    def found_in(self, data: bytes) -> bool:
        """Does any pattern match somewhere in ``data``?"""
        scratch = getattr(self._space, "scratch", None)
        if scratch is None:
            scratch = self._space.scratch = hyperscan.Scratch(self._database)
        try:
            self._database.scan(data, match_event_handler=_first_match_ends_the_scan,
                                scratch=scratch)
        except hyperscan.ScanTerminated:
            return True
        return False
