"""A problem found in a message: a stable code and a label in French and English,
usable as an MDN error (RFC 8098 §3.2.6: ``processed/Error: <code>^<label>``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    code: str
    en: str
    fr: str

    def mdn_error(self) -> str:
        """The disposition of an MDN telling the sender why the message failed."""
        label = " ".join(self.fr.replace("^", " ").split())
        return f"automatic-action/MDN-sent-automatically; processed/Error: {self.code}^{label}"
