"""What the relay door does with an S/MIME message from another operator, once
``unprotect`` has looked at it: deliver (with the result in Authentication-Results) or
refuse. Pure: a result in, a decision out.

- Not S/MIME, or encrypted to someone else (the professional's own certificate): delivered
  as it came, ``smime=none``; the professional's client decrypts (end to end).
- Encrypted to us but not decryptable (truncated or malformed CMS, wrong key, a tag that
  does not verify, a ciphertext swapped from another message): refused ``550 5.7.5``
  (RFC 3463 "cryptographic failure"): nobody can read it, and the sending operator gets a
  DSN instead of a silent loss.
- Decrypted (or plain signed) with a signature that does not pass (untrusted CA, revoked or
  expired signer, signer not the From address, inner message not the outer one, malformed
  signature): delivered with ``smime=fail|policy|permerror`` and the reason. The content is
  readable and may be urgent clinical mail from an operator the trust space already
  authenticated at TLS; the professional and the client see the warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailserver.smime.enveloped import Identity
from mailserver.smime.results import DecryptStatus, UnprotectResult
from mailserver.smime.trust import TrustStore


@dataclass(frozen=True)
class IncomingKeys:
    """What the relay door decrypts and verifies with: our operator (domain) keys, and
    the trust store (anchors, intermediates, CRLs) as it is now."""

    identities: tuple[Identity, ...]
    trust: Callable[[], TrustStore]


@dataclass(frozen=True)
class Refused:
    code: int
    status: str
    reason: str


ENCRYPTED_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")


def refusal(result: UnprotectResult, content_type: str) -> Refused | None:
    """Why ``result`` must be refused, or None to deliver ``result.message``.
    ``content_type`` is the outer one: a message that is not pkcs7-mime is never refused
    here, whatever a parser found odd in it."""
    status = result.decrypt.status
    if content_type.lower() not in ENCRYPTED_TYPES:
        return None
    if status in (DecryptStatus.FAILED, DecryptStatus.MALFORMED):
        return Refused(550, "5.7.5", f"S/MIME: cannot read the encrypted message "
                                     f"({_short(result.decrypt.reason)})")
    return None


def _short(text: str) -> str:
    cleaned = "".join(c if 0x20 <= ord(c) < 0x7f else " " for c in text)
    return cleaned[:160].strip()
