"""Tokens of a framed command (RFC 9051 §9 formal syntax).

A command's bytes become: ``Atom`` (a str subclass; also holds ``BODY[...]<...>``
fetch items whole), ``bytes`` (quoted string or literal), ``Literal8`` (``~{n}``,
RFC 3516), and lists (parenthesised, nested). Anything else is a ``SyntaxFault``
that the session answers with ``BAD`` and a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union


class SyntaxFault(Exception):
    """The command does not follow the grammar; the message says where."""


class Atom(str):
    """An atom as sent (case kept); compare with ``.upper()``."""


class Literal8(bytes):
    """RFC 3516 literal8: binary data in APPEND."""


Token = Union[Atom, bytes, "list[Token]"]

_LITERAL = re.compile(rb"(~?)\{(\d{1,12})\+?\}\r\n")
# RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">
_TAG = re.compile(rb"^[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c\x7e]+$")
_ATOM_STOP = frozenset(b' ()"{\r\n')
MAX_DEPTH = 32


@dataclass
class Command:
    tag: str
    name: str  # upper case; "UID FETCH" for the UID forms
    args: list[Token]


def split_tag(data: bytes) -> tuple[str | None, bytes]:
    """The tag (None if there is no valid one) and the rest after its space."""
    tag, _, rest = data.partition(b" ")
    if not _TAG.match(tag):
        return None, rest
    return tag.decode("ascii"), rest


def parse_command(data: bytes) -> Command:
    tag, rest = split_tag(data)
    if tag is None:
        raise SyntaxFault("missing or invalid tag")
    name, _, rest = rest.partition(b" ")
    if not name or not name.isalpha():
        raise SyntaxFault("missing or invalid command name")
    upper = name.decode("ascii").upper()
    if upper == "UID":
        sub, _, rest = rest.partition(b" ")
        if not sub.isalpha():
            raise SyntaxFault("UID must be followed by a command")
        upper = "UID " + sub.decode("ascii").upper()
    return Command(tag, upper, tokenize(rest))


def tokenize(data: bytes) -> list[Token]:
    lexer = _Lexer(data)
    tokens = lexer.sequence(0)
    if lexer.pos != len(data):
        raise SyntaxFault("unexpected ')'")
    return tokens


class _Lexer:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def sequence(self, depth: int) -> list[Token]:
        if depth > MAX_DEPTH:
            raise SyntaxFault("lists nested too deeply")
        tokens: list[Token] = []
        data = self.data
        while self.pos < len(data):
            byte = data[self.pos]
            if byte == 0x20:  # SP
                self.pos += 1
                continue
            if byte == 0x29:  # ')'
                if depth == 0:
                    raise SyntaxFault("unexpected ')'")
                return tokens
            if byte == 0x28:  # '('
                self.pos += 1
                inner = self.sequence(depth + 1)
                if self.pos >= len(data) or data[self.pos] != 0x29:
                    raise SyntaxFault("missing ')'")
                self.pos += 1
                tokens.append(inner)
                continue
            if byte == 0x22:  # '"'
                tokens.append(self.quoted())
                continue
            if byte in (0x7B, 0x7E):  # '{' or '~{'
                literal = self.literal()
                if literal is not None:
                    tokens.append(literal)
                    continue
            tokens.append(self.atom())
        if depth:
            raise SyntaxFault("missing ')'")
        return tokens

    def quoted(self) -> bytes:
        out = bytearray()
        data = self.data
        self.pos += 1
        while self.pos < len(data):
            byte = data[self.pos]
            self.pos += 1
            if byte == 0x22:
                return bytes(out)
            if byte == 0x5C:  # backslash: only \\ and \" (RFC 9051 §9 quoted-specials)
                if self.pos >= len(data) or data[self.pos] not in (0x22, 0x5C):
                    raise SyntaxFault("invalid escape in quoted string")
                out.append(data[self.pos])
                self.pos += 1
                continue
            if byte in (0x0D, 0x0A, 0x00):
                raise SyntaxFault("CR, LF or NUL in quoted string")
            out.append(byte)
        raise SyntaxFault("unterminated quoted string")

    def literal(self) -> bytes | None:
        found = _LITERAL.match(self.data, self.pos)
        if found is None:
            return None
        size = int(found.group(2))
        start = found.end()
        if start + size > len(self.data):
            raise SyntaxFault("literal shorter than announced")
        self.pos = start + size
        value = self.data[start:self.pos]
        return Literal8(value) if found.group(1) else value

    def atom(self) -> Atom:
        data = self.data
        start = self.pos
        while self.pos < len(data):
            byte = data[self.pos]
            if byte == 0x5B:  # '[': a section, possibly with spaces and lists inside
                end = self._closing_bracket(self.pos)
                self.pos = end + 1
                continue
            if byte in _ATOM_STOP or byte < 0x20 or byte == 0x7F:
                break
            self.pos += 1
        if self.pos == start:
            raise SyntaxFault(f"unexpected character {chr(data[start])!r}")
        try:
            return Atom(data[start:self.pos].decode("utf-8"))
        except UnicodeDecodeError as error:
            raise SyntaxFault("atom is not valid UTF-8") from error

    def _closing_bracket(self, start: int) -> int:
        depth = 0
        for index in range(start, min(len(self.data), start + 8192)):
            byte = self.data[index]
            if byte == 0x5B:
                depth += 1
            elif byte == 0x5D:
                depth -= 1
                if depth == 0:
                    return index
            elif byte in (0x0D, 0x0A):
                break
        raise SyntaxFault("missing ']'")


# ---- typed readers of tokens ----------------------------------------------------


def is_atom(token: object, *names: str) -> bool:
    return isinstance(token, Atom) and (not names or token.upper() in names)


def astring(token: Token, what: str) -> str:
    """An astring (atom, quoted or literal) as text (UTF-8, RFC 9051 §9)."""
    if isinstance(token, list):
        raise SyntaxFault(f"{what}: expected a string, got a list")
    if isinstance(token, Atom):
        return str(token)
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SyntaxFault(f"{what}: not valid UTF-8") from error


def number(token: Token, what: str, *, maximum: int = 0xFFFFFFFF) -> int:
    if not isinstance(token, Atom) or not token.isdigit() or len(token) > 20:
        raise SyntaxFault(f"{what}: expected a number")
    value = int(token)
    if value > maximum:
        raise SyntaxFault(f"{what}: number too large")
    return value


def modseq_value(token: Token, what: str) -> int:
    # RFC 7162 §7: mod-sequence-value = 1*DIGIT, up to 2^63-1
    return number(token, what, maximum=(1 << 63) - 1)
