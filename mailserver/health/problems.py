"""A problem found in a message: a stable code and a label in French and English,
usable as an MDN error (``Error: <code>^<label>``, see ``mdn.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    code: str
    en: str
    fr: str

