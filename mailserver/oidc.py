"""Login by OpenID Connect token (Pro Santé Connect style), for SASL OAUTHBEARER
(RFC 7628) and XOAUTH2 on SMTP and IMAP.

A token is accepted when its signature verifies against the issuer's JWKS with
an allowed algorithm, and its ``iss``, ``aud``, ``exp`` (and ``nbf`` / ``iat``)
hold (RFC 7519 §4.1, OpenID Connect Core §3.1.3.7). The professional's national
identifier claim then names the practitioner whose PER mailbox logs in.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import jwt

from mailserver.settings import Settings

MAX_TOKEN_LENGTH = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024


class TokenError(Exception):
    """The token is refused; the message says why (never the token itself)."""


@dataclass(frozen=True)
class VerifiedToken:
    identifier: str  # the national identifier (e.g. RPPS 810001045367)
    subject: str
    claims: dict[str, Any]


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._oidc = settings.oidc
        self._settings = settings
        self._keys: dict[str, Any] | None = None

    def _load_jwks(self) -> dict[str, Any]:
        source = self._oidc.jwks
        if source.startswith("https://"):
            with urllib.request.urlopen(source, timeout=10) as response:  # noqa: S310
                data = response.read(MAX_JWKS_BYTES + 1)
        else:
            data = self._settings.path(source).read_bytes()
        if len(data) > MAX_JWKS_BYTES:
            raise TokenError("the issuer's key set is too large")
        keys: dict[str, Any] = {}
        for entry in json.loads(data).get("keys", []):
            key = jwt.PyJWK(entry)
            keys[entry.get("kid", "")] = key.key
        if not keys:
            raise TokenError("the issuer's key set holds no usable key")
        return keys

    def _key_for(self, kid: str) -> Any:
        if self._keys is None or kid not in self._keys:
            self._keys = self._load_jwks()  # first use, or the issuer rolled its keys
        key = self._keys.get(kid) or (next(iter(self._keys.values()))
                                      if len(self._keys) == 1 and not kid else None)
        if key is None:
            raise TokenError(f"no key {kid!r} in the issuer's key set")
        return key

    def verify(self, token: str) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self._oidc.algorithms:
                raise TokenError(f"algorithm {header.get('alg')!r} not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key_for(str(header.get("kid", ""))),
                algorithms=self._oidc.algorithms,
                audience=self._oidc.audience,
                issuer=self._oidc.issuer,
                leeway=self._oidc.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise TokenError("token expired") from error
        except jwt.InvalidAudienceError as error:
            raise TokenError("token for another audience") from error
        except jwt.InvalidIssuerError as error:
            raise TokenError("token from another issuer") from error
        except jwt.InvalidSignatureError as error:
            raise TokenError("bad token signature") from error
        except jwt.PyJWTError as error:
            raise TokenError(f"invalid token ({type(error).__name__})") from error
        except (OSError, ValueError) as error:
            raise TokenError(f"cannot read the issuer's key set: {error}") from error
        identifier = claims.get(self._oidc.identifier_claim)
        if not isinstance(identifier, str) or not identifier:
            raise TokenError(f"token has no {self._oidc.identifier_claim} claim")
        return VerifiedToken(identifier, str(claims.get("sub", "")), claims)

