"""A small reader of IMAP response data (lists, strings, literals, atoms) for the tests: it
checks that what mailserver/mime writes is well-formed and gives it back as Python values."""

from __future__ import annotations

import re

Value = bytes | None | int | list["Value"]

_ATOM = re.compile(rb"[^\x00-\x20\x7f()\"{\\]+")


class SyntaxErr(ValueError):
    pass


def read(data: bytes) -> list[Value]:
    """Parse a sequence of IMAP values; raise SyntaxErr on any malformation."""
    pos = 0
    stack: list[list[Value]] = [[]]
    n = len(data)
    while pos < n:
        c = data[pos : pos + 1]
        if c == b" ":
            pos += 1
        elif c == b"(":
            stack.append([])
            pos += 1
        elif c == b")":
            if len(stack) < 2:
                raise SyntaxErr(f"unbalanced ) at {pos}")
            done = stack.pop()
            stack[-1].append(done)
            pos += 1
        elif c == b'"':
            pos += 1
            out = bytearray()
            while True:
                if pos >= n:
                    raise SyntaxErr("unterminated quoted string")
                ch = data[pos]
                if ch == 0x5C:
                    if pos + 1 >= n or data[pos + 1] not in b'"\\':
                        raise SyntaxErr("bad escape")
                    out.append(data[pos + 1])
                    pos += 2
                elif ch == 0x22:
                    pos += 1
                    break
                elif ch in b"\r\n\x00":
                    raise SyntaxErr("CR/LF/NUL in quoted string")
                else:
                    out.append(ch)
                    pos += 1
            stack[-1].append(bytes(out))
        elif c in (b"{", b"~"):
            m = re.compile(rb"~?\{(\d+)\}\r\n").match(data, pos)
            if m is None:
                raise SyntaxErr(f"bad literal at {pos}")
            size = int(m.group(1))
            start = m.end()
            if start + size > n:
                raise SyntaxErr("literal runs past the end")
            value = data[start : start + size]
            if c == b"{" and b"\x00" in value:
                raise SyntaxErr("NUL in a literal (only literal8 may hold it)")
            stack[-1].append(value)
            pos = start + size
        else:
            m = _ATOM.match(data, pos)
            if m is None:
                raise SyntaxErr(f"unexpected byte {c!r} at {pos}")
            atom = m.group(0)
            pos = m.end()
            if atom == b"NIL":
                stack[-1].append(None)
            elif atom.isdigit():
                stack[-1].append(int(atom))
            else:
                raise SyntaxErr(f"unexpected atom {atom!r}")
    if len(stack) != 1:
        raise SyntaxErr("unbalanced (")
    return stack[0]


def read_one(data: bytes) -> Value:
    values = read(data)
    if len(values) != 1:
        raise SyntaxErr(f"expected one value, got {len(values)}")
    return values[0]
