"""A minimal DER writer (X.690 §10) for the structures we emit on the hot path.

asn1crypto builds object trees, which costs far more than the RSA operation of a small
message; what we send is a handful of fixed shapes, so they are written directly here
and checked against asn1crypto, openssl and gpgsm in the tests.
"""

from __future__ import annotations

import functools

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
    """X.690 §8.1: identifier, definite length (short form below 128, else the fewest
    octets), contents; the usual sizes built in one step (this runs for every TLV)."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    if size < 0x100:
        return bytes((tag, 0x81, size)) + content
    if size < 0x10000:
        return bytes((tag, 0x82, size >> 8, size & 0xFF)) + content
    return bytes([tag]) + length(size) + content


def header(tag: int, size: int) -> bytes:
    """The identifier and length octets of a TLV whose contents are ``size`` long
    (``tlv(tag, c) == header(tag, len(c)) + c``), to write large contents once."""
    if size < 0x80:
        return bytes((tag, size))
    return bytes([tag]) + length(size)


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    """X.690 §11.6: the elements of a DER SET OF are sorted by their encodings."""
    return tlv(SET, b"".join(sorted(parts)))


def integer(value: int) -> bytes:
    """X.690 §8.3: two's complement, minimal length (room for the sign bit)."""
    size = max(1, (value.bit_length() + 8) // 8)
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


@functools.lru_cache(maxsize=128)
def oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()  # type: ignore[no-any-return]


def context(number: int, content: bytes, constructed: bool = True) -> bytes:
    """A context-specific tag [number] around ``content`` (EXPLICIT when constructed
    wraps a whole TLV; IMPLICIT callers pass the inner contents)."""
    return tlv((0xA0 if constructed else 0x80) | number, content)


def algorithm(dotted: str, parameters: bytes | None = None) -> bytes:
    """AlgorithmIdentifier (RFC 5280 §4.1.1.2)."""
    return sequence(oid(dotted), parameters) if parameters is not None else sequence(oid(dotted))


# -- reading (DER only; the general asn1crypto path handles BER) -----------------------------

class DerError(ValueError):
    """Not the DER shape the fast path expects (the caller falls back, or reports)."""


def read(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``offset``, bounded by ``end``
    (X.690 §8.1.2-8.1.3: low tag numbers; definite lengths of at most four octets)."""
    if offset + 2 > end:
        raise DerError("truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag number")
    size = data[offset + 1]
    position = offset + 2
    if size & 0x80:
        if size == 0x81:  # the long forms that occur, read without int.from_bytes
            if position + 1 > end:
                raise DerError("bad length")
            size = data[position]
            position += 1
        elif size == 0x82:
            if position + 2 > end:
                raise DerError("bad length")
            size = data[position] << 8 | data[position + 1]
            position += 2
        elif size == 0x80:
            raise DerError("indefinite length")
        else:
            count = size & 0x7F
            if count > 4 or position + count > end:
                raise DerError("bad length")
            size = int.from_bytes(data[position:position + count], "big")
            position += count
    if position + size > end:
        raise DerError("truncated")
    return tag, position, position + size


def children(data: bytes, start: int, end: int,
             limit: int = 4096) -> list[tuple[int, int, int, int]]:
    """[(tag, content start, content end, TLV start)] of the TLVs in data[start:end]
    (``read`` applied in turn; more than ``limit`` of them is an error)."""
    found: list[tuple[int, int, int, int]] = []
    append = found.append
    offset = start
    while offset < end:
        # read() inlined: this loop runs for every TLV on the hot path.
        if offset + 2 > end:
            raise DerError("truncated")
        tag = data[offset]
        if tag & 0x1F == 0x1F:
            raise DerError("high tag number")
        size = data[offset + 1]
        position = offset + 2
        if size & 0x80:
            if size == 0x81:
                if position + 1 > end:
                    raise DerError("bad length")
                size = data[position]
                position += 1
            elif size == 0x82:
                if position + 2 > end:
                    raise DerError("bad length")
                size = data[position] << 8 | data[position + 1]
                position += 2
            elif size == 0x80:
                raise DerError("indefinite length")
            else:
                count = size & 0x7F
                if count > 4 or position + count > end:
                    raise DerError("bad length")
                size = int.from_bytes(data[position:position + count], "big")
                position += count
        offset = position + size
        if offset > end:
            raise DerError("truncated")
        append((tag, position, offset, start))
        start = offset
        if len(found) > limit:
            raise DerError("too many elements")
    return found
