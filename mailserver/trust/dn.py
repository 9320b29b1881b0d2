"""Distinguished names compared parsed (RFC 4514), never as strings.

``CN=db1.111.example.fr,OU=31598513500187,O=editeur,ST=Paris (75),C=FR`` and
``cn=DB1.111.example.fr, ou=31598513500187, o=Editeur, st=Paris (75), c=FR`` are the
same name: attribute types by OID, values compared case-insensitively with inner
white space collapsed (RFC 4518 §2.6 caseIgnoreMatch, simplified).
"""

from __future__ import annotations

import re

from cryptography import x509

Canonical = tuple[frozenset[tuple[str, str]], ...]


class InvalidDN(ValueError):
    pass


_UNESCAPED_SEPARATOR = re.compile(r"(?<!\\)\s*([,+])\s*")


def _tidy(text: str) -> str:
    """Lists as published write ``cn=x, o=y``: attribute types are case-insensitive
    (RFC 4512 §2.5) and spaces around separators are tolerated, as RFC 2253 §4
    allowed; the strict RFC 4514 parser then reads the result."""
    parts = _UNESCAPED_SEPARATOR.split(text.strip())
    out = []
    for index, part in enumerate(parts):
        if index % 2:  # a separator
            out.append(part)
            continue
        kind, equals, value = part.partition("=")
        kind = kind.strip()
        out.append((kind if kind[:1].isdigit() else kind.upper()) + equals + value.strip())
    return "".join(out)


def parse_dn(text: str) -> x509.Name:
    text = text.strip()
    if not text:
        raise InvalidDN("empty distinguished name")
    try:
        # RFC 4514 §2.1: the string lists RDNs from the last to the first.
        return x509.Name.from_rfc4514_string(_tidy(text))
    except ValueError as error:
        raise InvalidDN(f"{text!r} is not an RFC 4514 distinguished name ({error})") from error


def _value(value: str | bytes) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(value.split()).casefold()


def canonical(name: x509.Name) -> Canonical:
    return tuple(
        frozenset((attribute.oid.dotted_string, _value(attribute.value)) for attribute in rdn)
        for rdn in name.rdns
    )


def same_dn(a: x509.Name, b: x509.Name) -> bool:
    return canonical(a) == canonical(b)
