"""Header field building blocks: unfolding and RFC 2045 parameterised values.

Values are handled as `str` decoded from Latin-1, a lossless byte-for-byte mapping, so that the
bytes a header holds are given back verbatim when encoded to Latin-1 again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .encoded_words import decode_header, decode_text

__all__ = ["ParamValue", "decoded_param", "parse_param_value", "split_list", "unfold"]

def unfold(value: bytes) -> bytes:
    """RFC 5322 §2.2.3: remove the CRLF of each folded line; strip surrounding whitespace.

    Inside a field every line end is followed by whitespace (else a new field would start),
    so removing every CR and LF is exactly unfolding.
    """
    value = value.strip(b" \t\r\n")
    if 10 in value or 13 in value:  # LF, CR; `b"\n" in` costs ten times more (3.11)
        value = value.replace(b"\r", b"").replace(b"\n", b"")
    return value


class ParamValue:
    """`value; name=val; ...` as in Content-Type and Content-Disposition (RFC 2045 §5.1).

    `value` is the token before the first `;` (e.g. `text/plain` or `attachment`), `params`
    the (name, value) pairs in order, names and values as written (quotes removed).
    """

    __slots__ = ("params", "value")

    def __init__(self, value: str, params: Sequence[tuple[str, str]]) -> None:
        # Read-only (a Sequence, a tuple when built here): mime.parse shares one
        # ParamValue among the messages that carry the same Content-Type.
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


_QUOTED_OR_SEP = {
    sep: re.compile(r'"(?:[^"\\]|\\.)*"?|' + re.escape(sep), re.DOTALL) for sep in ";,"
}


def split_list(text: str, sep: str) -> list[str]:
    """Split on `sep` (";" or ",") outside quoted strings."""
    if '"' not in text:
        return text.split(sep)
    parts: list[str] = []
    last = 0
    for m in _QUOTED_OR_SEP[sep].finditer(text):
        if m.group(0) == sep:
            parts.append(text[last : m.start()])
            last = m.end()
    parts.append(text[last:])
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


# The usual shape, `type/sub; a=b; c="d"` (RFC 2045 §5.1) without comments, quoted-pairs
# or stray quotes: read by two regexes. `(`, `)` or `\` anywhere sends the value to the
# general reading, which gives the same result on this shape (tests/test_mime_fast.py).
_SIMPLE = re.compile(
    r'[ \t]*([^;"()\\ \t]*)[ \t]*'
    r'((?:;[ \t]*(?:[^;="()\\ \t]+=(?:"[^"()\\]*"|[^;"()\\ \t]*)[ \t]*)?)*)'
)
_SIMPLE_MAX = 2048
_SIMPLE_PARAM = re.compile(r';[ \t]*([^;="()\\ \t]+)=(?:"([^"()\\]*)"|([^;"()\\ \t]*))')


def parse_param_value(raw: bytes) -> ParamValue:
    """Parse an unfolded `value; a=b; c="d"` header value; tolerant of any malformation."""
    text = raw.decode("latin-1")
    # long values (hostile ones) go to the general reader without a try of the regexes
    simple = _SIMPLE.fullmatch(text) if len(text) <= _SIMPLE_MAX else None
    if simple is None:
        return _parse_param_text(text)
    params = tuple([(name, quoted or token)
                    for name, quoted, token in _SIMPLE_PARAM.findall(text, simple.start(2))])
    return ParamValue(simple.group(1), params)


def _parse_param_text(text: str) -> ParamValue:
    """The general reading of `parse_param_value`: comments removed, then `;` split outside
    quoted strings; pieces without `=` or with a malformed name are dropped."""
    text = _strip_comments(text)
    pieces = split_list(text, ";")
    value = pieces[0].strip(" \t")
    params: list[tuple[str, str]] = []
    for piece in pieces[1:]:
        name, eq, val = piece.partition("=")
        name = name.strip(" \t")
        if not eq or not name or any(c in name for c in ' \t"'):
            continue
        params.append((name, _unquote(val)))
    return ParamValue(value, tuple(params))


# RFC 2231 §3-4: name*N (continuation), name* (charset'lang'%XX), name*N* (both)
_CONTINUATION = re.compile(r"^(?P<name>[^*]+)(?:\*(?P<index>\d+))?(?P<enc>\*)?$")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")


def decoded_param(pv: ParamValue, name: str) -> str | None:
    """A parameter's value with RFC 2231 continuations joined and its charset applied
    (`name*0*=utf-8''%C3%A9t; name*1=e`), else the plain value with RFC 2047 words decoded
    (as many mailers write filenames). None when absent. Never raises."""
    wanted = name.lower()
    pieces: list[tuple[int, bool, str]] = []
    for key, value in pv.params:
        m = _CONTINUATION.match(key)
        if m is None or m.group("name").lower() != wanted:
            continue
        if m.group("index") is None and m.group("enc") is None:
            continue  # the plain parameter: used only when there is no RFC 2231 form
        index = int(m.group("index")) if m.group("index") else 0
        pieces.append((index, m.group("enc") is not None, value))
    if pieces:
        pieces.sort(key=lambda p: p[0])
        charset: str | None = None
        data = bytearray()
        for position, (_, encoded, value) in enumerate(pieces):
            if encoded and position == 0 and value.count("'") >= 2:
                charset, _lang, value = value.split("'", 2)  # RFC 2231 §4
            if encoded:
                data += _PCT.sub(lambda m: chr(int(m.group(1), 16)), value).encode("latin-1")
            else:
                data += value.encode("latin-1")
        return decode_text(bytes(data), charset or None)
    plain = pv.get(name)
    if plain is None:
        return None
    return decode_header(plain.encode("latin-1"))
