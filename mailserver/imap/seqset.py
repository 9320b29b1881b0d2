"""Sequence sets (RFC 9051 §9 sequence-set) and their compact rendering."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from mailserver.imap.syntax import SyntaxFault

MAX_RANGES = 10000


def parse_ranges(text: str) -> list[tuple[int | None, int | None]]:
    """``1:3,7,9:*`` → [(1, 3), (7, 7), (9, None)]; ``None`` stands for ``*``."""
    if not text or len(text) > 200_000:
        raise SyntaxFault("invalid sequence set")
    ranges: list[tuple[int | None, int | None]] = []
    for part in text.split(","):
        low, colon, high = part.partition(":")
        first = _number(low)
        last = _number(high) if colon else first
        ranges.append((first, last))
        if len(ranges) > MAX_RANGES:
            raise SyntaxFault("sequence set has too many ranges")
    return ranges


def _number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or len(text) > 10:
        raise SyntaxFault(f"invalid sequence number {text[:20]!r}")
    value = int(text)
    if value == 0 or value > 0xFFFFFFFF:
        raise SyntaxFault("sequence numbers and UIDs run from 1 to 4294967295")
    return value


def is_sequence_set(text: str) -> bool:
    try:
        parse_ranges(text)
    except SyntaxFault:
        return False
    return True


def resolve_sequence(
    ranges: list[tuple[int | None, int | None]], count: int
) -> list[int]:
    """Message sequence numbers (1-based) in the set; ``*`` is the last message."""
    chosen: set[int] = set()
    for first, last in ranges:
        low = count if first is None else first
        high = count if last is None else last
        if low > high:
            low, high = high, low
        chosen.update(range(max(low, 1), min(high, count) + 1))
    return sorted(chosen)


def resolve_uids(
    ranges: list[tuple[int | None, int | None]], uids: Sequence[int]
) -> list[int]:
    """The UIDs of ``uids`` (sorted) in the set; ``*`` is the highest UID (RFC 9051 §6.4.9)."""
    if not uids:
        return []
    highest = uids[-1]
    chosen: set[int] = set()
    for first, last in ranges:
        low = highest if first is None else first
        high = highest if last is None else last
        if low > high:
            low, high = high, low
        start = bisect.bisect_left(uids, low)
        end = bisect.bisect_right(uids, high)
        chosen.update(uids[start:end])
    return sorted(chosen)


def uids_in_ranges(ranges: list[tuple[int | None, int | None]], highest: int) -> set[int] | None:
    """For sets without reference to a folder; None if too wide to enumerate."""
    chosen: set[int] = set()
    for first, last in ranges:
        low = highest if first is None else first
        high = highest if last is None else last
        if low > high:
            low, high = high, low
        if high - low > 1_000_000:
            return None
        chosen.update(range(low, high + 1))
    return chosen


def render(numbers: Iterable[int]) -> str:
    """Sorted numbers as a compact set: 1:3,7,9:10."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    index = 0
    while index < len(ordered):
        start = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == ordered[index] + 1:
            index += 1
        end = ordered[index]
        parts.append(str(start) if start == end else f"{start}:{end}")
        index += 1
    return ",".join(parts)
