"""Results of S/MIME processing as values, and their ``Authentication-Results`` rendering.

Nothing that comes from the network raises out of this package: every outcome, hostile
input included, is a result with a status and a human-readable reason.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailserver.memo import short_values


class Status(enum.Enum):
    """RFC 7281 §3 result values of the ``smime`` Authentication-Results method."""

    PASS = "pass"  # noqa: S105 — signature valid, signer trusted, unrevoked, and the From address
    FAIL = "fail"  # signature or digest wrong, signer untrusted, expired or revoked
    POLICY = "policy"  # valid maths, refused by policy (weak algorithm, signer ≠ From)
    PERMERROR = "permerror"  # malformed CMS / MIME
    NONE = "none"  # not signed


@dataclass(frozen=True)
class Signer:
    addresses: tuple[str, ...]  # rfc822Name subjectAltNames (RFC 8550 §3)
    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    serial: int
    # dNSNames of a domain-bound certificate (Direct Project Applicability Statement
    # §4.1); filled when the certificate names no address.
    domains: tuple[str, ...] = ()

    @property
    def identifier(self) -> str:
        return self.addresses[0] if self.addresses else (self.domains[0] if self.domains else "")

    @functools.cached_property
    def _names(self) -> tuple[frozenset[str], frozenset[str]]:
        # Computed once per Signer (a signer is checked against two From fields).
        return (frozenset(a.lower() for a in self.addresses),
                frozenset(d.lower().rstrip(".") for d in self.domains))

    def speaks_for(self, from_addresses: Sequence[str]) -> bool:
        """RFC 8550 §3: the signer's address is the From address; for a domain-bound
        certificate, the From address is in its domain."""
        names, domains = self._names
        for address in from_addresses:
            lower = address.lower()
            if lower in names or (domains and lower.rpartition("@")[2] in domains):
                return True
        return False

    @functools.cached_property
    def result_properties(self) -> tuple[str, ...]:
        """RFC 7281 §3 ``body.smime-*`` properties: the same for every message of a
        signer."""
        found = [f"body.smime-identifier={_quoted(self.identifier)}"] if self.identifier \
            else []
        found.append(f"body.smime-serial={self.serial:X}")
        found.append(f"body.smime-issuer={_quoted(self.issuer)}")
        return tuple(found)


@dataclass(frozen=True)
class VerifyResult:
    status: Status
    reason: str
    signer: Signer | None = None
    content: bytes | None = None  # the signed MIME entity (CRLF), when it could be read

    @property
    def ok(self) -> bool:
        return self.status is Status.PASS


class DecryptStatus(enum.Enum):
    OK = "ok"
    NOT_ENCRYPTED = "not-encrypted"
    NOT_FOR_US = "not-for-us"  # no recipientInfo matches any of our certificates
    FAILED = "failed"  # wrong key, tampered or swapped ciphertext, bad tag
    MALFORMED = "malformed"


@dataclass(frozen=True)
class DecryptResult:
    status: DecryptStatus
    reason: str
    content: bytes | None = None  # the decrypted MIME entity
    algorithm: str = ""  # e.g. "AuthEnvelopedData aes256_gcm"

    @property
    def ok(self) -> bool:
        return self.status is DecryptStatus.OK


@dataclass(frozen=True)
class UnprotectResult:
    """What :func:`unprotect` found: decryption, then signature, then the inner message."""

    decrypt: DecryptResult
    verify: VerifyResult
    message: bytes  # what to deliver: the inner message with an Authentication-Results field
    notes: list[str] = field(default_factory=list)


_UNSAFE_COMMENT = re.compile(r"[()\\\r\n\x00-\x1f\x7f]")


def _comment(text: str) -> str:
    # isprintable() is false for every character the pattern replaces but ( ) and backslash.
    if not (text.isprintable() and "(" not in text and ")" not in text and "\\" not in text):
        text = _UNSAFE_COMMENT.sub(" ", text)
    return text[:300].strip()


_CONTROL = re.compile(r"[\r\n\x00-\x1f\x7f]")


@short_values(max_len=1024, maxsize=1024)  # a certificate's names: long ones never kept
def _quoted(text: str) -> str:
    """A quoted-string (RFC 5322 §3.2.4); the values are a signer's names, which recur."""
    cleaned = _CONTROL.sub(" ", text)
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authentication_results(result: VerifyResult, authserv_id: str,
                           extra_comment: str = "", others: Sequence[str] = ()) -> str:
    """The field ``Authentication-Results: <authserv-id>; smime=<result> ...`` (RFC 8601,
    method and ``body.smime-*`` properties from RFC 7281 §3), without the final CRLF.
    ``others`` are results of other methods (e.g. ``dkim=pass header.d=…``) put first,
    each its own resinfo (RFC 8601 §2.2)."""
    # What was done (decrypted, unwrapped) first, then the verdict's reason.
    comment = result.reason if not extra_comment else f"{extra_comment}; {result.reason}"
    head = f"Authentication-Results: {authserv_id};"
    theirs = [f"{other};" for other in others]
    # ``_value_``: the member's value without the enum descriptor's call.
    ours = [f"smime={result.status._value_} ({_comment(comment)})"]
    if result.signer is not None:
        ours += result.signer.result_properties
    joined = " ".join([head, *theirs, *ours])
    if len(joined) <= 76:
        return joined
    # RFC 5322 §2.2.3: fold long fields at whitespace (ours start with none).
    return "\r\n\t".join([head, *[item.lstrip() for item in theirs], *ours])
