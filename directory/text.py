"""Search text: accent- and case-insensitive words, the same for documents and queries."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from itertools import chain

# Letters NFKD does not split into base + accent.
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower-case ASCII: "Hélène CŒUR-Dupré" → "helene coeur dupre"."""
    if text.isascii():
        ascii_text = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
        ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return _NOT_WORD.sub(" ", ascii_text).strip()


def words(text: str) -> list[str]:
    return fold(text).split()


# Field values repeat a lot in the national files (labels, cities, organisations,
# common names): importers fold each distinct value once. Bounded: cleared when full.
_FOLDED: dict[str, list[str]] = {}
_FOLDED_MAX = 50_000


def _cached_words(text: str) -> list[str]:
    found = _FOLDED.get(text)
    if found is None:
        if len(_FOLDED) >= _FOLDED_MAX:
            _FOLDED.clear()
        found = _FOLDED[text] = words(text)
    return found


def document(fields: Iterable[str]) -> str:
    """The searchable words of ``fields``, each once, in order of first appearance."""
    return " ".join(dict.fromkeys(chain.from_iterable(map(_cached_words, fields))))
