"""Header field building blocks: unfolding and RFC 2045 parameterised values.

Values are handled as `str` decoded from Latin-1, a lossless byte-for-byte mapping, so that the
bytes a header holds are given back verbatim when encoded to Latin-1 again.
"""

from __future__ import annotations

import re

__all__ = ["ParamValue", "parse_param_value", "split_list", "unfold"]

_FOLD = re.compile(rb"\r?\n(?=[ \t])|\r?\n\Z|\r(?=[ \t])")


def unfold(value: bytes) -> bytes:
    """RFC 5322 §2.2.3: remove the CRLF of each folded line; strip surrounding whitespace."""
    if b"\n" in value or b"\r" in value:
        value = _FOLD.sub(b"", value)
        value = value.replace(b"\r", b"").replace(b"\n", b"")
    return value.strip(b" \t")


class ParamValue:
    """`value; name=val; ...` as in Content-Type and Content-Disposition (RFC 2045 §5.1).

    `value` is the token before the first `;` (e.g. `text/plain` or `attachment`), `params`
    the (name, value) pairs in order, names and values as written (quotes removed).
    """

    __slots__ = ("params", "value")

    def __init__(self, value: str, params: list[tuple[str, str]]) -> None:
        self.value = value
        self.params = params

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, val in self.params:
            if key.lower() == name:
                return val
        return None


def _strip_comments(text: str) -> str:
    """Remove RFC 5322 comments `( ... )` outside quoted strings (nesting bounded by length)."""
    if "(" not in text:
        return text
    out: list[str] = []
    depth = 0
    in_quote = False
    escape = False
    for ch in text:
        if escape:
            escape = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\" and (in_quote or depth):
            escape = True
            if depth == 0:
                out.append(ch)
            continue
        if in_quote:
            out.append(ch)
            if ch == '"':
                in_quote = False
            continue
        if ch == "(":
            depth += 1
            continue
        if ch == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            if ch == '"':
                in_quote = True
            out.append(ch)
    return "".join(out)


def split_list(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quoted strings."""
    if '"' not in text:
        return text.split(sep)
    parts: list[str] = []
    cur: list[str] = []
    in_quote = False
    escape = False
    for ch in text:
        if escape:
            cur.append(ch)
            escape = False
        elif in_quote and ch == "\\":
            cur.append(ch)
            escape = True
        elif ch == '"':
            in_quote = not in_quote
            cur.append(ch)
        elif ch == sep and not in_quote:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unquote(text: str) -> str:
    text = text.strip(" \t")
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" in inner:
            inner = re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)
        return inner
    if text.startswith('"'):  # unterminated quote: keep what there is
        return text[1:]
    return text


def parse_param_value(raw: bytes) -> ParamValue:
    """Parse an unfolded `value; a=b; c="d"` header value; tolerant of any malformation."""
    text = _strip_comments(raw.decode("latin-1"))
    pieces = split_list(text, ";")
    value = pieces[0].strip(" \t")
    params: list[tuple[str, str]] = []
    for piece in pieces[1:]:
        name, eq, val = piece.partition("=")
        name = name.strip(" \t")
        if not eq or not name or any(c in name for c in ' \t"'):
            continue
        params.append((name, _unquote(val)))
    return ParamValue(value, params)
