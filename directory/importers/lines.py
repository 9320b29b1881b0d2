"""Reading the national directory files: `|`-separated text, one header row, UTF-8,
LF or CRLF, streamed line by line with a bounded line length."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

MAX_LINE_BYTES = 64 * 1024  # the longest real rows are under 1 KiB


class HeaderError(ValueError):
    """The file's header is not the one expected; the message names the columns."""


class Line(NamedTuple):  # a NamedTuple: half a million are made per import
    number: int  # 1-based, the header being line 1
    fields: list[str] | None  # None when the line was rejected
    error: str = ""
    size: int = 0  # bytes consumed, for progress


def split_header(raw: bytes) -> list[str]:
    text = raw.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    names = [name.strip() for name in text.split("|")]
    if names and names[-1] == "":  # a trailing "|" closes the row, as in the RPPS files
        names.pop()
    return names


def check_header(names: list[str], expected: list[str], *, strict: bool) -> list[str]:
    """Raise HeaderError naming what is missing (and, when ``strict``, what is
    unexpected); return the unexpected names otherwise."""
    missing = [name for name in expected if name not in names]
    unexpected = [name for name in names if name not in expected]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    problems = []
    if missing:
        problems.append("missing column(s): " + ", ".join(repr(n) for n in missing))
    if unexpected and strict:
        problems.append("unexpected column(s): " + ", ".join(repr(n) for n in unexpected))
    if duplicated:
        problems.append("duplicated column(s): " + ", ".join(repr(n) for n in duplicated))
    if problems:
        raise HeaderError("; ".join(problems))
    return unexpected


def read_lines(stream: BinaryIO, width: int) -> Iterator[Line]:
    """The data lines after the header (already read), split into ``width`` fields.

    A line that is not UTF-8, too long, or has the wrong number of fields comes back
    with ``fields=None`` and the reason; reading goes on.
    """
    number = 1
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        size = len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                raw = stream.readline(MAX_LINE_BYTES)
                size += len(raw)
            yield Line(number, None, f"line longer than {MAX_LINE_BYTES} bytes", size)
            continue
        body = raw.rstrip(b"\r\n")
        if not body.strip():
            continue  # blank lines (a final empty line) carry nothing
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            yield Line(
                number, None,
                f"not UTF-8: byte 0x{body[error.start]:02X} at position {error.start + 1} "
                "(the file must be saved as UTF-8)",
                size,
            )
            continue
        fields = text.split("|")
        if len(fields) == width + 1 and fields[-1] == "":
            fields.pop()
        if len(fields) != width:
            yield Line(number, None, f"{len(fields)} fields where the header has {width}", size)
            continue
        yield Line(number, list(map(str.strip, fields)), "", size)
