"""Authentication-Results (RFC 8601): strip forged ones, add ours."""

from __future__ import annotations

import re

_NAME = b"authentication-results"
_SAFE = re.compile(r"[^\x21-\x7e]")


def header_block(raw: bytes) -> tuple[bytes, bytes]:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[: end + 2], raw[end + 2:]


def _fields(header: bytes) -> list[bytes]:
    """Header fields with their folded continuation lines (RFC 5322 §2.2.3)."""
    fields: list[bytes] = []
    for line in header.split(b"\r\n")[:-1] if header.endswith(b"\r\n") else header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields


def authserv_id_of(field: bytes) -> str:
    """The authserv-id of an Authentication-Results field (RFC 8601 §2.2)."""
    value = field.partition(b":")[2].decode("utf-8", "replace")
    value = re.sub(r"\([^()]*\)", " ", value)  # comments
    return value.split(";", 1)[0].split()[0].lower() if value.split(";", 1)[0].split() else ""


def strip_ours(raw: bytes, authserv_id: str) -> bytes:
    """RFC 8601 §5: remove incoming Authentication-Results that claim our
    authserv-id (only we may write those). Other bytes stay verbatim."""
    header, body = header_block(raw)
    if _NAME not in header.lower():
        return raw
    ours = authserv_id.lower()
    kept = [
        f for f in _fields(header)
        if not (f.split(b":", 1)[0].strip().lower() == _NAME and authserv_id_of(f) == ours)
    ]
    return b"".join(f + b"\r\n" for f in kept) + body


def result_header(authserv_id: str, results: list[str]) -> str:
    """``Authentication-Results: id; dkim=pass header.d=…`` (RFC 8601 §2.2)."""
    body = ";\r\n\t".join(results) if results else "none"
    return f"Authentication-Results: {_SAFE.sub('', authserv_id)};\r\n\t{body}"
