"""Outgoing S/MIME protection, before DKIM signing and queuing (issue 7: "protected when
the recipient has a certificate in the directory, or by policy always").

Direct Project style (Applicability Statement for Secure Health Transport §4, on
RFC 8551): the whole message is wrapped as message/rfc822, signed with the operator's
domain-bound signing certificate, then encrypted to the recipients' certificates found
in the directory (address first, else domain: Direct §5 discovery order) and to our
own encryption certificate. Recipients with different certificates get separate copies,
so a recipient never receives a message its operator, rather than itself, can open when
it published a certificate of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mailserver.pki.operator import OperatorKeys
from mailserver.smime.enveloped import Cipher_
from mailserver.smime.protect import protect

log = logging.getLogger(__name__)

WHEN = ("certificate", "always", "never")
CERTIFICATE_TTL = 30.0  # seconds a directory answer is reused (certificates change rarely)
INLINE_PROTECT_SIZE = 256 * 1024  # larger messages are protected off the event loop


@dataclass(frozen=True)
class Copy:
    """What leaves for ``recipients``: the same bytes for all of them."""

    recipients: tuple[str, ...]
    data: bytes
    protected: bool


@dataclass(frozen=True)
class Refusal:
    """The message cannot leave as the policy demands (RFC 3463 codes)."""

    code: int
    status: str
    reason: str
    reason_fr: str


CertificateLookup = Callable[[str], Awaitable[list[bytes]]]


class OutboundProtector:
    def __init__(self, when: str, keys: OperatorKeys | None, lookup: CertificateLookup,
                 cipher: Cipher_ = "aes256-gcm") -> None:
        if when not in WHEN:
            raise ValueError(f"smime.when must be one of {', '.join(WHEN)}")
        self.when = when
        self._keys = keys
        self._lookup = lookup
        self._cipher = cipher
        self._answers: dict[str, tuple[float, tuple[tuple[x509.Certificate, bytes], ...]]] = {}
        self._parsed: dict[bytes, tuple[x509.Certificate, bytes]] = {}  # DER -> (cert, SHA-256)

    async def certificates(self, address: str) -> tuple[x509.Certificate, ...]:
        """The recipient's encryption certificates (Direct order), briefly cached."""
        return tuple(c for c, _ in await self._certificates(address))

    async def _certificates(self, address: str) -> tuple[tuple[x509.Certificate, bytes], ...]:
        now = time.monotonic()
        cached = self._answers.get(address)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = []
        for der in await self._lookup(address):
            parsed = self._parsed.get(der)
            if parsed is None:
                certificate = x509.load_der_x509_certificate(der)
                parsed = self._parsed[der] = (certificate,
                                              certificate.fingerprint(hashes.SHA256()))
            found.append(parsed)
        if len(self._answers) > 10_000:
            self._answers.clear()
            self._parsed.clear()
        self._answers[address] = (now + CERTIFICATE_TTL, tuple(found))
        return tuple(found)

    async def refusal_for(self, address: str) -> Refusal | None:
        """Why ``address`` cannot be written to under ``when = "always"`` (RCPT time)."""
        if self.when != "always" or await self._certificates(address):
            return None
        return _no_certificate(address)

    async def protect_outgoing(self, raw: bytes, sender: str,
                               recipients: Sequence[str]) -> list[Copy] | Refusal:
        """The copies to queue for ``recipients``, or why the message cannot leave."""
        if self.when == "never" or not recipients:
            return [Copy(tuple(recipients), raw, False)]
        groups: dict[tuple[bytes, ...], list[str]] = {}
        certificates: dict[tuple[bytes, ...], tuple[x509.Certificate, ...]] = {}
        for address in recipients:
            found = await self._certificates(address)
            if not found and self.when == "always":
                return _no_certificate(address)
            key = tuple(fingerprint for _, fingerprint in found)
            groups.setdefault(key, []).append(address)
            certificates[key] = tuple(c for c, _ in found)
        copies = []
        for key, addresses in groups.items():
            if not key:  # when = "certificate", none found: as it is
                copies.append(Copy(tuple(addresses), raw, False))
                continue
            if self._keys is None:
                return Refusal(451, "4.3.5",
                               "S/MIME keys of this operator are missing (run `mss pki "
                               "operator`); the message was not sent",
                               "Clés S/MIME de l'opérateur absentes ; message non envoyé")
            data = await self._protect(raw, certificates[key])
            copies.append(Copy(tuple(addresses), data, True))
        return copies

    async def _protect(self, raw: bytes, recipients: Sequence[x509.Certificate]) -> bytes:
        keys = self._keys
        assert keys is not None
        # "plus our own" (Direct §4): we can read the copy we keep in our queue.
        to = [*recipients, keys.encryption_certificate]
        if len(raw) <= INLINE_PROTECT_SIZE:
            return protect(raw, keys.signer, to, chain=keys.chain, cipher=self._cipher)
        return await asyncio.to_thread(protect, raw, keys.signer, to, chain=keys.chain,
                                       cipher=self._cipher)


def _no_certificate(address: str) -> Refusal:
    return Refusal(550, "5.7.1",
                   f"S/MIME is required and the directory holds no encryption certificate "
                   f"for {address} or its domain",
                   f"S/MIME obligatoire et aucun certificat de chiffrement pour {address} "
                   f"ni son domaine dans l'annuaire")
