"""What a rule decides: accept, or reject with the SMTP reply a client will see."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accept:
    rule: str = "accept"


@dataclass(frozen=True)
class Reject:
    """A refusal: SMTP code, enhanced status (RFC 3463), reasons in English and French."""

    code: int
    status: str
    reason_en: str
    reason_fr: str
    rule: str

    def smtp_reply(self) -> str:
        return f"{self.code} {self.status} {self.reason_en} / {self.reason_fr}"

    @property
    def permanent(self) -> bool:
        return self.code >= 500


Decision = Accept | Reject

ACCEPT = Accept()
