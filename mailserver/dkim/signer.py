"""Sign outgoing mail and verify incoming mail with dkimpy, relaxed/relaxed
(RFC 6376 §3.4.2, §3.4.4)."""

from __future__ import annotations

import logging
from pathlib import Path

import dkim
import dns.exception
import dns.resolver

from mailserver.dkim import keys

log = logging.getLogger("mailserver.dkim")

# RFC 6376 §5.4.1: the header fields a signature should cover.
SIGNED_HEADERS = [
    b"from", b"sender", b"reply-to", b"subject", b"date", b"message-id", b"to", b"cc",
    b"mime-version", b"content-type", b"content-transfer-encoding", b"content-id",
    b"content-description", b"in-reply-to", b"references",
]


class DkimSigner:
    def __init__(self, keys_dir: Path, selector: str, dns_override_dir: Path,
                 dns_timeout: float = 5.0) -> None:
        self._keys_dir = keys_dir
        self._selector = selector.encode("ascii")
        self._override = dns_override_dir
        self._timeout = dns_timeout
        self._cache: dict[str, tuple[str, bytes] | None] = {}

    def _key(self, domain: str) -> tuple[str, bytes] | None:
        if domain not in self._cache:
            try:
                self._cache[domain] = keys.load(self._keys_dir, domain)
            except keys.DkimKeyError:
                self._cache[domain] = None
        return self._cache[domain]

    def sign(self, raw: bytes, domain: str) -> bytes:
        """``raw`` with a DKIM-Signature prepended, or unchanged without a key."""
        domain = domain.lower().rstrip(".")
        loaded = self._key(domain)
        if loaded is None:
            return raw
        algorithm, key = loaded
        try:
            signature = dkim.sign(
                raw, self._selector, domain.encode("ascii"), key,
                canonicalize=(b"relaxed", b"relaxed"), include_headers=SIGNED_HEADERS,
                signature_algorithm=(
                    b"ed25519-sha256" if algorithm == "ed25519" else b"rsa-sha256"
                ),
                linesep=b"\r\n",
            )
        except (dkim.DKIMException, ValueError) as error:
            # A broken key must not stop the mail: it leaves unsigned, loudly.
            log.error("dkim: cannot sign for %s, sent unsigned: %s", domain, error)
            return raw
        return bytes(signature) + raw

    def _txt(self, name: bytes, timeout: int = 5) -> bytes:
        """Public key look-up: an override file first, then DNS."""
        text = name.decode("ascii", "replace").rstrip(".").lower()
        if "/" not in text and not text.startswith("."):
            override = self._override / text
            if override.is_file():
                return override.read_bytes().strip()
        try:
            answer = dns.resolver.resolve(text, "TXT", lifetime=self._timeout)
        except (dns.exception.DNSException, OSError):
            return b""
        return b"".join(b"".join(r.strings) for r in answer)

    def verify(self, raw: bytes) -> str:
        """The ``dkim=`` result for Authentication-Results (RFC 8601 §2.7.1)."""
        header_end = raw.find(b"\r\n\r\n")
        head = raw[:header_end] if header_end >= 0 else raw
        if b"dkim-signature:" not in head.lower():
            return "dkim=none"
        verifier = dkim.DKIM(raw)
        try:
            ok = verifier.verify(dnsfunc=self._txt)
        except dkim.DKIMException as error:
            log.info("dkim: verification error: %s", error)
            ok = False
        domain, selector = _text(verifier.domain), _text(verifier.selector)
        result = "pass" if ok else "fail"
        details = f" header.d={domain}" if domain else ""
        details += f" header.s={selector}" if selector else ""
        return f"dkim={result}{details}"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return "".join(c for c in str(value or "") if c.isalnum() or c in ".-_")
