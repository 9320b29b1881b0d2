"""MIME framing of S/MIME (RFC 8551 §3): canonical form, header fields kept verbatim,
``multipart/signed`` (RFC 1847) and ``application/pkcs7-mime`` parts.

Signed bytes must be the bytes received: nothing here re-serialises a part through the
``email`` package; parts are cut out of the raw message.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import os
import re
import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import pybase64

from mailserver.bytescan import PatternSet
from mailserver.mime.base64_plain import decode_plain

MAX_HEADER_FIELDS = 1000
_LINE_END = re.compile(rb"\r\n|\r|\n")
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")


class MimeError(Exception):
    """The message cannot be framed as S/MIME (the message says why)."""


# A CR before another byte than LF, an LF after another byte than CR: both looked for
# in one Hyperscan pass (Python's re took one pass for each, three times as long).
_BARE_LINE_ENDS = PatternSet([rb"\r[^\n]", rb"[^\r]\n"])


def is_canonical(data: bytes) -> bool:
    """Does every line end with CRLF, with no CR or LF elsewhere?"""
    if data[:1] == b"\n" or data[-1:] == b"\r":
        return False  # bare, with no byte on their other side for the patterns to see
    return not _BARE_LINE_ENDS.found_in(data)


def canonical(data: bytes) -> bytes:
    """RFC 8551 §3.1.1: lines end with CRLF (bare LF and bare CR become CRLF)."""
    if is_canonical(data):
        return data  # already canonical (the usual case: SMTP delivers CRLF)
    return _LINE_END.sub(b"\r\n", data)


def canonical_head(data: bytes) -> bytes:
    """The header block in canonical form and the body as it is: enough to read a
    base64 body (whose line ends do not matter) without scanning it."""
    first_line_end = data.find(b"\n")
    if first_line_end > 0 and data[first_line_end - 1] == 0x0D:
        index = data.find(b"\r\n\r\n")
        if index >= 0:
            head = data[:index + 2]
            line_feeds = head.count(b"\n")
            if line_feeds == head.count(b"\r") == head.count(b"\r\n"):
                return data  # the usual case: nothing to change, nothing copied
    found = [(index, len(separator)) for separator in (b"\r\n\r\n", b"\n\n", b"\r\r")
             if (index := data.find(separator)) >= 0]
    if not found:
        return canonical(data)
    index, size = min(found)
    return canonical(data[:index + size // 2]) + b"\r\n" + data[index + size:]


def split(data: bytes) -> tuple[bytes, bytes]:
    """(header block with its final CRLF, body) of a canonical message or entity."""
    head, body_start = split_at(data)
    return head, data[body_start:]


def split_at(data: bytes, start: int = 0, end: int | None = None) -> tuple[bytes, int]:
    """``split(data[start:end])`` as (header block, where the body starts in ``data``):
    the body, ``data[body_start:end]``, is left in place (sliced, or viewed, by the
    caller that needs it)."""
    stop = len(data) if end is None else end
    if data.startswith(b"\r\n", start, stop):
        return b"", start + 2
    index = data.find(b"\r\n\r\n", start, stop)
    if index < 0:  # no body: all of it is the header block
        head = data[start:stop]
        return (head if head.endswith(b"\r\n") else head + b"\r\n"), stop
    return data[start:index + 2], index + 4


CACHED_HEAD = 16384  # header blocks up to this size are parsed once (they recur per message)


def fields(head: bytes) -> tuple[tuple[str, bytes], ...]:
    """Header fields as (lower-case name, raw bytes with folding and final CRLF)."""
    return _cached_fields(head) if len(head) <= CACHED_HEAD else tuple(_fields(head))


@functools.lru_cache(maxsize=256)
def _cached_fields(head: bytes) -> tuple[tuple[str, bytes], ...]:
    return tuple(_fields(head))


def read_fields(head: bytes) -> list[tuple[str, bytes]]:
    """``fields`` of a header block met once, a message's own: read without the cache,
    which keeps the blocks that recur (entity and part heads)."""
    return _fields(head)


def _fields(head: bytes) -> list[tuple[str, bytes]]:
    # RFC 5322 §2.2: lines end with CRLF; a line starting with WSP continues the field
    # before it (§2.2.3); a line that is not "name:" is not a field and is dropped.
    result: list[tuple[str, bytes]] = []
    known = _LOWER_NAMES
    lines = head.split(b"\r\n")
    if not lines[-1]:
        lines.pop()  # the final CRLF (or an empty head)
    for line in lines:
        # A name as written before the first colon, seen before, is a field name: no
        # regex for it (the names recur, the values do not).
        colon = line.find(b":")
        name = known.get(line[:colon]) if colon > 0 else None
        if name is None:
            if line[:1] in (b" ", b"\t") and result:
                name, raw = result[-1]
                result[-1] = (name, raw + line + b"\r\n")
                continue
            match = _FIELD_NAME.match(line)
            if match is None:
                continue  # not a header field: dropped (RFC 5322 §2.2)
            name = _remember_name(line[:colon], match.group(1))
        result.append((name, line + b"\r\n"))
        if len(result) > MAX_HEADER_FIELDS:
            raise MimeError("too many header fields")
    return result


# Field names as written before the colon (trailing WSP included), lower-cased: only
# names the field-name regex accepted are kept, so finding one here is that regex's yes.
_LOWER_NAMES: dict[bytes, str] = {}


_REMEMBERED_NAME = 64  # bytes: longer names (hostile ones) are read each time, never kept


def _remember_name(written: bytes, name: bytes) -> str:
    lower = name.decode("ascii").lower()
    if len(written) <= _REMEMBERED_NAME:  # bounded in size as in count
        if len(_LOWER_NAMES) >= 4096:
            _LOWER_NAMES.clear()
        _LOWER_NAMES[written] = lower
    return lower


# RFC 2045 §5.1 parameter = attribute "=" value, value a token or a quoted-string
# (RFC 5322 §3.2.4), the latter read as an unrolled loop (one regex step per run of
# plain characters rather than per character).
_PARAMETER = re.compile(
    r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("[^"\\]*(?:\\.[^"\\]*)*"|[^;\s]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")


Fields = Sequence[tuple[str, bytes]]  # what ``fields`` and ``read_fields`` give


def values(head: bytes, field_name: str) -> list[str]:
    """Unfolded values of every ``field_name`` field (RFC 5322 §2.2.3)."""
    return values_in(fields(head), field_name)


def values_in(read: Fields, field_name: str) -> list[str]:
    """``values`` of the header block whose fields are ``read``."""
    wanted = field_name.lower()
    found = []
    for name, raw in read:
        if name == wanted:
            text = raw.split(b":", 1)[1].decode("utf-8", "replace")
            found.append(" ".join(text.split()))
    return found


def raw_fields(read: Fields, *field_names: str) -> list[bytes]:
    """The raw bytes of the fields of these lower-case names, in their order: two header
    blocks with the same list hold the same ``values`` and ``addresses`` of each name (a
    field's bytes carry its name)."""
    return [raw for name, raw in read if name in field_names]


def header_value(head: bytes, field_name: str) -> str | None:
    """The unfolded value of the first ``field_name`` field (``values(...)[0]``)."""
    return header_value_in(fields(head), field_name)


def header_value_in(read: Fields, field_name: str) -> str | None:
    """``header_value`` of the header block whose fields are ``read``."""
    wanted = field_name.lower()
    for name, raw in read:
        if name == wanted:
            return " ".join(raw.split(b":", 1)[1].decode("utf-8", "replace").split())
    return None


def content_type(head: bytes) -> tuple[str, Mapping[str, str]]:
    """(lower-case type/subtype, parameters with lower-case names) of the Content-Type
    field; text/plain when absent or unreadable (RFC 2045 §5.2)."""
    ours = _OUR_MULTIPART_SIGNED.fullmatch(head)
    if ours is not None:  # a new boundary each message: nothing for the cache to find
        return "multipart/signed", MappingProxyType({
            "protocol": "application/pkcs7-signature", "micalg": "sha-256",
            "boundary": ours.group(1).decode("ascii")})
    return _cached_content_type(head) if len(head) <= CACHED_HEAD else _content_type(head)


# The head ``multipart_signed`` writes (RFC 8551 §3.5.3), read by one regex: what the
# general reading gives for it, as tests/test_smime_fast_paths.py checks.
_OUR_MULTIPART_SIGNED = re.compile(
    rb'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
    rb'\tmicalg=sha-256; boundary="([0-9A-Za-z=_-]{1,70})"\r\n')


@functools.lru_cache(maxsize=256)
def _cached_content_type(head: bytes) -> tuple[str, Mapping[str, str]]:
    return _content_type(head)


def _content_type(head: bytes) -> tuple[str, Mapping[str, str]]:
    value = header_value(head, "content-type")
    if value is None:
        return "text/plain", {}
    kind, _, rest = value.partition(";")
    kind = kind.strip().lower()
    if kind.count("/") != 1:
        return "text/plain", {}
    parameters: dict[str, str] = {}
    for name, raw in _PARAMETER.findall(";" + rest):
        if raw.startswith('"'):
            raw = raw[1:-1]
            if "\\" in raw:
                raw = _QUOTED_PAIR.sub(r"\1", raw)
        parameters.setdefault(name.lower(), raw)
    return kind, MappingProxyType(parameters)


def is_content_field(name: str) -> bool:
    return name.startswith("content-")


def addresses(head: bytes, field_name: str) -> tuple[str, ...]:
    """The addr-specs of every ``field_name`` field, lower-cased."""
    if len(head) <= CACHED_HEAD:
        return _cached_addresses(head, field_name)
    return _addresses(head, field_name)


@functools.lru_cache(maxsize=256)
def _cached_addresses(head: bytes, field_name: str) -> tuple[str, ...]:
    return _addresses(head, field_name)


def _addresses(head: bytes, field_name: str) -> tuple[str, ...]:
    return addresses_in(fields(head), field_name)


def addresses_in(read: Fields, field_name: str) -> tuple[str, ...]:
    """``addresses`` of the header block whose fields are ``read``."""
    found = values_in(read, field_name)
    simple = _simple_addresses(found)
    if simple is not None:
        return simple
    return tuple(address.lower() for _, address in email.utils.getaddresses(found) if address)


# The usual shapes, ``local@domain`` or ``Display Name <local@domain>``, each part dot
# atoms of RFC 5322 §3.2.3 atext: read by one regex instead of the email package's
# parser (a tenth of a millisecond per message). A field holding anything else (quotes,
# comments, groups, routes, domain literals, encoded words) goes to ``getaddresses``;
# tests/test_smime_fast_paths.py checks that both give the same on these shapes.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_SIMPLE_MAILBOX = re.compile(
    rf" ?(?:({_ADDR_SPEC})|(?:{_ATOM}(?: {_ATOM})* ?)?<({_ADDR_SPEC})>) ?")


def _simple_addresses(found: list[str]) -> tuple[str, ...] | None:
    result = []
    for value in found:
        for mailbox in value.split(","):
            match = _SIMPLE_MAILBOX.fullmatch(mailbox)
            if match is None:
                return None
            result.append((match.group(1) or match.group(2)).lower())
    return tuple(result)


_DEFAULT_ENTITY_HEAD = b"Content-Type: text/plain; charset=us-ascii\r\n"


def entity_of(message: bytes) -> tuple[bytes, bytes]:
    """Split a message into (outer fields, MIME entity to protect): the entity keeps the
    Content-* fields and the body (RFC 8551 §3.1); MIME-Version stays outside."""
    head, body = split(message)
    outer = b""
    inner = b""
    for name, raw in fields(head):
        if is_content_field(name):
            inner += raw
        elif name != "mime-version":
            outer += raw
    return outer, (inner or _DEFAULT_ENTITY_HEAD) + b"\r\n" + body


def entity_head_of(read: Fields) -> bytes:
    """The header block of the entity ``entity_of`` makes of a message whose header
    fields are ``read``: its Content-* fields (``entity_of(m)[1] == entity_head_of(
    fields(h)) + CRLF + body``)."""
    return b"".join([raw for name, raw in read if name.startswith("content-")]) \
        or _DEFAULT_ENTITY_HEAD


def join(outer: bytes, entity: bytes) -> bytes:
    """A message from outer fields and a MIME entity."""
    return outer + b"MIME-Version: 1.0\r\n" + entity


def _boundary() -> str:
    return "----=_smime_" + base64.b32encode(os.urandom(15)).decode("ascii").lower()


@functools.lru_cache(maxsize=64)
def _lines_of_76(count: int) -> struct.Struct:
    return struct.Struct("76s" * count)


def _base64_lines(data: bytes) -> bytes:
    encoded = pybase64.b64encode(data)  # RFC 2045 §6.8: lines of at most 76 characters
    full, rest = divmod(len(encoded), 76)
    # One C call cuts the full lines (a slice per line costs more than the encoding).
    lines = list(_lines_of_76(full).unpack_from(encoded)) if full <= 4096 else \
        [encoded[i:i + 76] for i in range(0, full * 76, 76)]
    if rest:
        lines.append(encoded[full * 76:])
    return b"\r\n".join(lines) + b"\r\n"


def multipart_signed(entity: bytes, signature: bytes) -> bytes:
    """RFC 8551 §3.5.3: a multipart/signed entity (Content-Type field + body)."""
    boundary = _boundary()
    return (
        f'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        f'\tmicalg=sha-256; boundary="{boundary}"\r\n\r\n'
        f"This is an S/MIME signed message\r\n\r\n--{boundary}\r\n"
    ).encode("ascii") + entity + (
        f"\r\n--{boundary}\r\n"
        "Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=smime.p7s\r\n\r\n"
    ).encode("ascii") + _base64_lines(signature) + f"\r\n--{boundary}--\r\n".encode("ascii")


def pkcs7_mime(der: bytes, smime_type: str) -> bytes:
    """RFC 8551 §3.2: an application/pkcs7-mime entity."""
    return (
        f"Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=smime.p7m\r\n\r\n"
    ).encode("ascii") + _base64_lines(der)


def split_multipart_signed(head: bytes, body: bytes) -> tuple[bytes, bytes, bytes]:
    """(signed entity as received, signature part head, signature part body)."""
    return multipart_signed_parts(body, 0, content_type(head)[1])


def multipart_signed_parts(data: bytes, start: int, parameters: Mapping[str, str],
                           ) -> tuple[bytes, bytes, bytes]:
    """``split_multipart_signed`` of the body ``data[start:]``, whose head's Content-Type
    parameters are ``parameters``: the body is not copied first."""
    boundary = parameters.get("boundary", "")
    if not 0 < len(boundary) <= 70:
        raise MimeError("multipart/signed without a valid boundary")
    delimiter = b"--" + boundary.encode("ascii", "replace")
    # RFC 2046 §5.1.1: a delimiter is CRLF "--" boundary at the start of a line; the CRLF
    # before it belongs to the delimiter, not to the part. The first one may open the
    # body. Positions below are of the delimiter itself (after its CRLF).
    line_delimiter = b"\r\n" + delimiter
    size = len(delimiter)
    if data.startswith(delimiter, start):
        first = start
    else:
        first = data.find(line_delimiter, start)
        if first < 0:
            raise MimeError("multipart/signed must hold exactly two parts")
        first += 2
    second = data.find(line_delimiter, first + size)
    third = data.find(line_delimiter, second + 2 + size) if second >= 0 else -1
    if third < 0:
        raise MimeError("multipart/signed must hold exactly two parts")
    second += 2
    third += 2
    # Each part starts after the rest of its delimiter line and ends before the CRLF of
    # the next delimiter.
    signed_start = data.find(b"\r\n", first + size)
    signature_start = data.find(b"\r\n", second + size)
    if signed_start < 0 or signed_start + 2 > second \
            or signature_start < 0 or signature_start + 2 > third:
        raise MimeError("truncated multipart/signed")
    if not data.startswith(b"--", third + size):
        raise MimeError("multipart/signed must hold exactly two parts")
    signature_head, body_start = split_at(data, signature_start + 2, third - 2)
    signature_body = data[body_start:third - 2]
    return data[signed_start + 2:second - 2], signature_head, signature_body


def base64_decode(data: bytes) -> bytes:
    """RFC 2045 §6.8: characters outside the base64 alphabet are ignored. pybase64
    (SIMD) decodes the usual shape, padding at the end only, ten times faster than
    binascii; anything else goes to binascii, whose result is the reference (the two
    differ on data after padding)."""
    plain = decode_plain(data)
    # Anything else: binascii says what is wrong, or accepts what it accepts.
    return plain if plain is not None else binascii.a2b_base64(data)


@functools.lru_cache(maxsize=256)
def _transfer_encoding(head: bytes) -> str:
    return _read_transfer_encoding(head)  # a part's head recurs (the shape we write)


def _read_transfer_encoding(head: bytes) -> str:
    return (header_value(head, "content-transfer-encoding") or "binary").strip().lower()


def decode_body(head: bytes, body: bytes) -> bytes:
    """The body of a part per its Content-Transfer-Encoding (base64 or binary)."""
    encoding = _transfer_encoding(head) if len(head) <= CACHED_HEAD else \
        _read_transfer_encoding(head)
    if encoding == "base64":
        try:
            return base64_decode(body)
        except binascii.Error as error:
            raise MimeError(f"invalid base64: {error}") from error
    if encoding in ("binary", "8bit", "7bit"):
        return body
    raise MimeError(f"unexpected Content-Transfer-Encoding {encoding} for a CMS part")
