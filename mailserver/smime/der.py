"""A minimal DER writer (X.690 §10) for the structures we emit on the hot path.

asn1crypto builds object trees, which costs far more than the RSA operation of a small
message; what we send is a handful of fixed shapes, so they are written directly here
and checked against asn1crypto, openssl and gpgsm in the tests.
"""

from __future__ import annotations

from asn1crypto import core

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = b"\x05\x00"


def length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    """X.690 §11.6: the elements of a DER SET OF are sorted by their encodings."""
    return tlv(SET, b"".join(sorted(parts)))


def integer(value: int) -> bytes:
    return core.Integer(value).dump()  # type: ignore[no-any-return]


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()  # type: ignore[no-any-return]


def context(number: int, content: bytes, constructed: bool = True) -> bytes:
    """A context-specific tag [number] around ``content`` (EXPLICIT when constructed
    wraps a whole TLV; IMPLICIT callers pass the inner contents)."""
    return tlv((0xA0 if constructed else 0x80) | number, content)


def algorithm(dotted: str, parameters: bytes | None = None) -> bytes:
    """AlgorithmIdentifier (RFC 5280 §4.1.1.2)."""
    return sequence(oid(dotted), parameters) if parameters is not None else sequence(oid(dotted))
