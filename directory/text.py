"""Search text: accent- and case-insensitive words, the same for documents and queries."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Letters NFKD does not split into base + accent.
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower-case ASCII: "Hélène CŒUR-Dupré" → "helene coeur dupre"."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return _NOT_WORD.sub(" ", ascii_text).strip()


def words(text: str) -> list[str]:
    return fold(text).split()


def document(fields: Iterable[str]) -> str:
    """The searchable words of ``fields``, each once, in order of first appearance."""
    seen: dict[str, None] = {}
    for field in fields:
        for word in words(field):
            seen.setdefault(word, None)
    return " ".join(seen)
