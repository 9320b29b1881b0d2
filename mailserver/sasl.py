"""SASL token mechanisms shared by SMTP and IMAP: OAUTHBEARER (RFC 7628) and
XOAUTH2 (Google's, which many mail clients speak)."""

from __future__ import annotations

from dataclasses import dataclass


class SaslError(ValueError):
    """The client's SASL message is malformed; the message says how."""


@dataclass(frozen=True)
class BearerCredentials:
    authzid: str  # the address the client names ("" when it names none)
    token: str


def _kvpairs(data: bytes) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in data.split(b"\x01"):
        if not item:
            continue
        key, sep, value = item.partition(b"=")
        if not sep:
            raise SaslError("key=value expected")
        pairs[key.decode("ascii", "replace").lower()] = value.decode("utf-8", "replace")
    return pairs


def _bearer(pairs: dict[str, str]) -> str:
    auth = pairs.get("auth", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SaslError('"auth=Bearer <token>" expected')
    return token.strip()


def parse_oauthbearer(message: bytes) -> BearerCredentials:
    """RFC 7628 §3.1: gs2-header, then \\x01-separated key=value pairs, ending \\x01\\x01."""
    if not message.endswith(b"\x01\x01"):
        raise SaslError("OAUTHBEARER message must end with ^A^A (RFC 7628 §3.1)")
    header, sep, rest = message.partition(b"\x01")
    parts = header.split(b",")
    if not sep or len(parts) < 3 or parts[0] not in (b"n", b"y"):
        raise SaslError("bad GS2 header (RFC 7628 §3.1)")
    authzid = ""
    if parts[1].startswith(b"a="):
        authzid = parts[1][2:].decode("utf-8", "replace").replace("=2C", ",").replace("=3D", "=")
    elif parts[1]:
        raise SaslError("bad GS2 authzid")
    return BearerCredentials(authzid, _bearer(_kvpairs(rest)))


def parse_xoauth2(message: bytes) -> BearerCredentials:
    """user=<address>\\x01auth=Bearer <token>\\x01\\x01."""
    pairs = _kvpairs(message)
    return BearerCredentials(pairs.get("user", ""), _bearer(pairs))


# RFC 7628 §3.2.2: the error the server sends before failing the exchange.
OAUTHBEARER_ERROR = b'{"status":"invalid_token","schemes":"bearer"}'
