"""Framing of client commands, with hard limits (RFC 9051 §2.2, §4.3; RFC 7888).

A command is one line, or several lines joined by literals ``{n}`` (synchronising:
the server answers ``+`` before the client sends the bytes) and ``{n+}`` (LITERAL+,
sent at once). Every byte is bounded before it is buffered: a line over the line
limit or a literal over the literal limit is refused without being read.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# RFC 9051 §4.3 literal, RFC 3516 literal8 (~{n}), RFC 7888 non-synchronising (+).
_LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,12})(\+?)\}$")
_CHUNK = 16384


@dataclass(frozen=True)
class Limits:
    line: int  # bytes per line, CRLF included
    literal: int  # bytes per literal, commands other than APPEND
    append_literal: int  # bytes per APPEND literal (APPENDLIMIT)
    command: int  # bytes per command, lines and literals together
    literals: int  # literals per command


# RFC 9051 §2.2 leaves limits to the server; before login nobody gets more than
# a few KiB (issue 4: 8 KiB), so memory per connection stays far under 1 MiB.
PRE_AUTH = Limits(line=8192, literal=8192, append_literal=8192, command=16384, literals=4)


def authenticated_limits(append_limit: int) -> Limits:
    return Limits(
        line=65536,
        literal=1 << 20,
        append_literal=append_limit,
        command=append_limit + (1 << 20),
        literals=1000,
    )


class ConnectionClosed(Exception):
    """The client closed the connection (or it broke)."""


class Refused(Exception):
    """A command refused while framing it; the session answers it.

    ``close``: the connection cannot be resynchronised (the client is sending bytes
    we will not read), so it is closed after the answer.
    """

    def __init__(self, tag: bytes | None, message: str, *, close: bool) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.close = close


class CommandReader:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()

    def discard_buffered(self) -> None:
        """Drop every byte received but not yet read (STARTTLS, RFC 9051 §6.2.1)."""
        self._buffer.clear()
        buffered = getattr(self._reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()

    def has_buffered(self) -> bool:
        return bool(self._buffer)

    async def _fill(self) -> None:
        chunk = await self._reader.read(_CHUNK)
        if not chunk:
            raise ConnectionClosed()
        self._buffer += chunk

    async def read_line(self, limit: int, tag: bytes | None = None) -> bytes:
        """One line without its CRLF (a bare LF is accepted)."""
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if end >= 0:
                if end + 1 > limit:
                    raise Refused(tag, "line too long", close=True)
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            searched = len(self._buffer)
            if searched >= limit:
                raise Refused(tag, "line too long", close=True)
            await self._fill()

    async def read_exact(self, count: int) -> bytes:
        while len(self._buffer) < count:
            await self._fill()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def read_command(
        self, limits: Limits, continuation: Callable[[], Awaitable[None]]
    ) -> bytes:
        """A whole command, literals included as ``{n}\\r\\n<n bytes>``."""
        line = await self.read_line(limits.line)
        head = line.split(b" ", 3)
        tag = head[0] if head and head[0] else None
        words = [w.upper() for w in head[1:3]]
        is_append = bool(words) and (words[0] == b"APPEND")
        command = bytearray()
        literals = 0
        while True:
            command += line
            if len(command) > limits.command:
                raise Refused(tag, "command too long", close=True)
            found = _LITERAL_AT_END.search(line)
            if found is None:
                return bytes(command)
            size = int(found.group(2))
            non_sync = bool(found.group(3))
            literals += 1
            cap = limits.append_literal if is_append else limits.literal
            if size > cap or len(command) + size > limits.command or literals > limits.literals:
                what = "[TOOBIG] literal too large" if size > cap else "[LIMIT] command too large"
                # A synchronising literal was not sent yet: refuse it and carry on
                # (RFC 9051 §4.3). A LITERAL+ one is on its way: close (RFC 7888 §4).
                raise Refused(tag, f"{what} (at most {cap} bytes)", close=non_sync)
            if not non_sync:
                await continuation()
            command += b"\r\n"
            command += await self.read_exact(size)
            line = await self.read_line(limits.line, tag)
