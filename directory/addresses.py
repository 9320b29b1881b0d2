"""Mailbox addresses as the directory stores them, and the directory's error (plain
Python: the parsing process of the importers uses them without the database layer)."""

from __future__ import annotations


class DirectoryError(Exception):
    """A directory operation cannot be done; the message says why and what to do."""


def normalize_address(address: str) -> str:
    """Addresses are compared case-insensitively; the domain is IDNA-normalised."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise DirectoryError(f"{address!r} is not an address (expected local-part@domain)")
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError as error:
        raise DirectoryError(f"{address!r}: invalid domain name ({error})") from error
    return f"{local.lower()}@{domain.lower()}"
