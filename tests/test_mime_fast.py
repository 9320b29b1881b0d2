"""The MIME parser's fast paths agree with the general readings they stand in front of
(issue 5): MIME fields found by a search instead of the field index, simple parameter values
read by two regexes instead of the general reader, Content-Types read once per distinct
value, bare Content-Transfer-Encoding tokens looked up. Each property compares the fast
result with the general one on generated input: folding, comments, quoted strings, RFC 2231
continuations, encoded words, odd blanks, bare LF, missing boundaries, nested multiparts."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.mime import parse
from mailserver.mime.headers import _SIMPLE, ParamValue, _parse_param_text, parse_param_value
from mailserver.mime.parse import ParsedMessage
from tests.test_mime_fuzz import mutated

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- parameter values (RFC 2045 §5.1, RFC 2231, RFC 2047) ---------------------------------

_PARAM_PIECES = st.sampled_from([
    b"text/plain", b"multipart/mixed", b"attachment", b"a", b"name", b"filename", b"charset",
    b"boundary", b"name*", b"name*0*", b"name*1", b"utf-8''%C3%A9t%C3%A9.pdf", b"x.pdf",
    b"=?utf-8?q?r=C3=A9sum=C3=A9?=", b"=?utf-8?b?w6k=?=", b"=_x==", b'"', b'""', b"\\",
    b"\\\"", b";", b"=", b" ", b"\t", b"  ", b"(", b")", b"(c)", b"(a (b) c)", b"/", b",",
    b"\xe9", b"\x00", b"\r\n", b"\n", b"\r", b"\x0b", b"a;b", b"'",
])


def _same(fast: ParamValue, slow: ParamValue) -> None:
    assert (fast.value, fast.params) == (slow.value, slow.params)


@MANY
@given(st.lists(_PARAM_PIECES, max_size=25))
def test_any_parameter_value_reads_as_the_general_reader_does(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    _same(parse_param_value(raw), _parse_param_text(raw.decode("latin-1")))


_BLANKS = st.sampled_from(["", "", " ", "\t", "  \t"])
# Mostly the usual shape (the fast path), with one odd piece now and then (the general one).
_USUAL_NAMES = ["charset", "name", "filename", "filename*0*", "filename*1", "boundary", "n"]
_ODD_NAMES = ["n=m", "", "a b", 'q"', "a\\b", "(c)", "a(b", "x)"]
_USUAL_VALUES = ["utf-8", "=?utf-8?q?a?=", "utf-8''%C3%A9", "a=b", "", "x.pdf", "é", "=_x=="]
_QUOTED_VALUES = ["a;b", "a b", "a\tb", ";", "=", "a,b", "=?utf-8?b?w6k=?=", "x.pdf", "",
                  "a\\b", "(c)", 'a\\"b', "a(b", "é"]
_ODD_VALUES = ["(c)", "(c)x", "a(b", "x)", "a\\b", 'a"b', "\\", '"']


@st.composite
def _usual_value(draw: st.DrawFn) -> bytes:
    """`type/sub; name=value; name="quoted"`, with the odd blank, empty piece or special."""
    text = draw(_BLANKS) + draw(st.sampled_from(["text/plain", "application/pdf", "inline",
                                                 "attachment", "", "a=b", "x/y/z"]))
    for _ in range(draw(st.integers(0, 4))):
        odd = draw(st.integers(0, 9)) == 0
        name = draw(st.sampled_from(_ODD_NAMES if odd else _USUAL_NAMES))
        odd = draw(st.integers(0, 9)) == 0
        value = draw(st.sampled_from(_ODD_VALUES if odd else _USUAL_VALUES))
        quoting = draw(st.integers(0, 9))
        if quoting < 4:
            value = draw(st.sampled_from(_QUOTED_VALUES))
            value = f'"{value}"' if quoting else f'"{value}'  # unterminated now and then
        text += draw(_BLANKS) + ";" + draw(_BLANKS) + name
        equals = "=" if draw(st.integers(0, 9)) else draw(st.sampled_from(["", " =", "= "]))
        text += equals + value + draw(_BLANKS)
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.sampled_from([";", "; ", "(c)", '"', "\\"]))
    return text.encode("latin-1")


@MANY
@given(_usual_value())
def test_usual_parameter_values_read_as_the_general_reader_does(raw: bytes) -> None:
    _same(parse_param_value(raw), _parse_param_text(raw.decode("latin-1")))


@pytest.mark.parametrize("raw", [
    b'a; n="a\\b"', b'a; n="a\\"b"; m=c', b'a; q"=x; n=v', b'a; n=(c)x', b"a; n=x(c)",
    b'a; n="(c)"', b"a; n=x  ; m=y\t", b'a; n="x"y', b'a; n="x" y; m=z', b"a; n = x",
    b"a;; ;n=x;", b"a; n==x", b"a; =x", b"a; n", b"a b; n=x", b"a\\b; n=x", b'a; n="x',
    b"a; n=\"a;b\"; m=c", b"a/b; n*0*=utf-8''%C3%A9; n*1=t", b"a; n=x\r\n y",
])
def test_tricky_parameter_values_read_as_the_general_reader_does(raw: bytes) -> None:
    _same(parse_param_value(raw), _parse_param_text(raw.decode("latin-1")))


def test_the_usual_values_take_the_fast_path() -> None:
    for raw in ('application/pdf; name="CR.pdf"', 'multipart/mixed; boundary="==_1=="',
                "text/plain; charset=utf-8;", " attachment ; filename=x.pdf ", "base64",
                "attachment; filename*0*=utf-8''%C3%A9; filename*1=t.pdf"):
        assert _SIMPLE.fullmatch(raw) is not None, raw


def test_a_hostile_parameter_value_is_read_in_linear_time() -> None:
    for raw in (b"a/b; n=" + b"x" * 200_000 + b'"', b"a/b" + b"; n=x " * 40_000 + b"(",
                b'a/b; n="' + b";" * 200_000):
        started = time.perf_counter()
        _same(parse_param_value(raw), _parse_param_text(raw.decode("latin-1")))
        assert time.perf_counter() - started < 2.0


# -- whole messages: the fast paths against the field index and the general reader -------

_TOKEN_BAD = re.compile(r'[\x00-\x20\x7f-\uffff()<>@,;:\\"/\[\]?=]')


def _is_token(text: str) -> bool:
    return bool(text) and _TOKEN_BAD.search(text) is None


def _general_media_type(value: bytes) -> tuple[str, str, ParamValue] | None:
    """Content-Type as read before the fast paths: general reader, partition, tokens."""
    pv = _parse_param_text(value.decode("latin-1"))
    maintype, slash, subtype = pv.value.partition("/")
    maintype, subtype = maintype.strip(" \t"), subtype.strip(" \t")
    if slash and _is_token(maintype) and _is_token(subtype):
        return maintype, subtype, pv
    return None


@contextmanager
def _general_paths() -> Iterator[None]:
    """Every fast path of mailserver.mime.parse replaced by the general reading."""
    saved = (parse._media_type, parse._MECHANISMS,
             parse.parse_param_value, ParsedMessage._direct_value)

    def indexed(self: ParsedMessage, name: str, _patterns: object) -> bytes | None:
        return self._indexed_value(name)

    parse._media_type = _general_media_type
    parse._MECHANISMS = {}
    parse.parse_param_value = lambda raw: _parse_param_text(raw.decode("latin-1"))
    ParsedMessage._direct_value = indexed  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        (parse._media_type, parse._MECHANISMS,
         parse.parse_param_value, ParsedMessage._direct_value) = saved  # type: ignore[method-assign]


_MIME_FIELDS = ("content-type", "content-disposition", "content-transfer-encoding")


def _observed(msg: ParsedMessage, fields_first: bool) -> list[tuple[object, ...]]:
    """What callers see of each entity. `fields_first` splits the header block before any
    question, so that header_value answers from the index."""
    seen: list[tuple[object, ...]] = []
    for e in msg.walk():
        if fields_first:
            assert isinstance(e.fields, list)
        ct = e.content_type
        seen.append((
            e.start, e.header_end, e.body_start, e.end, e.type, e.subtype,
            None if ct is None else (ct.value, ct.params), len(e.children),
            e.message is None, [e.header_value(n) for n in _MIME_FIELDS],
            [e.header_value(n.upper()) for n in _MIME_FIELDS], e.transfer_encoding,
            e.filename, e.param("boundary"), e.param("charset"), e.is_multipart,
            e.is_message, [tuple(f) for f in e.fields],
        ))
        # the direct search takes each entity to start a line: the message or after "\n"
        assert e.start == 0 or msg.raw[e.start - 1 : e.start] == b"\n" or e.start == e.end
    return seen


def _agree(raw: bytes) -> None:
    fast = _observed(ParsedMessage.from_bytes(raw), fields_first=False)
    fast_indexed = _observed(ParsedMessage.from_bytes(raw), fields_first=True)
    with _general_paths():
        general = _observed(ParsedMessage.from_bytes(raw), fields_first=False)
    assert fast == general
    assert fast_indexed == general
    for limit in (1, 2, 3):  # max_parts semantics kept exactly
        fast = _observed(ParsedMessage.from_bytes(raw, max_parts=limit), fields_first=False)
        with _general_paths():
            assert fast == _observed(ParsedMessage.from_bytes(raw, max_parts=limit), False)


_NAMES = st.sampled_from([
    "Content-Type", "content-type", "CONTENT-TYPE", "cOnTeNt-TyPe", "Content-Type ",
    "Content-Type\t", "Content-Type \t ", " Content-Type", "\tContent-Type", "Content Type",
    "X-Content-Type", "Content-Types", "Content-Type-X", "Content-Disposition",
    "content-disposition ", "Content-Transfer-Encoding", "CONTENT-TRANSFER-ENCODING",
    "Content-Transfer-Encoding\t", "Subject", "MIME-Version", "From ", "Content-\xe9Type",
    "Content-Type\x00", "",
])
_VALUES = st.sampled_from([
    "text/plain", "multipart/mixed", "multipart/digest", "message/rfc822", "message/global",
    "application/pdf", "Multipart/Alternative", "text / plain", "text/", "/plain", "x/y/z",
    "; boundary=b", '; boundary="b"', "; BOUNDARY=b", '; boundary="b', "; boundary=",
    "; charset=utf-8", '; name="x.pdf"', "; name*0*=utf-8''%C3%A9; name*1=t.pdf",
    '; filename="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="', "; filename=a.pdf", " (comment)",
    "(a(b)c)", '"', "\\", ";", "=", " ", "\t", "\r\n ", "\n\t", "\r\n\t", "base64", "Base64",
    "7BIT", "quoted-printable", "x-uuencode", "attachment", "inline", "\xe9", ":",
])


@st.composite
def _header_block(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        line = draw(_NAMES) + draw(st.sampled_from([":", ":", " :", ""]))
        line += "".join(draw(st.lists(_VALUES, max_size=5)))
        lines.append(line + draw(st.sampled_from(["\r\n", "\n", "\r\n", "\r\n "])))
    return "".join(lines).encode("latin-1")


@st.composite
def _entity(draw: st.DrawFn, depth: int = 0) -> bytes:
    head = draw(_header_block())
    blank = draw(st.sampled_from([b"\r\n", b"\n", b"\r\n", b""]))
    body = draw(st.sampled_from([b"", b"body\r\n", b"QUJD\r\nREVG\r\n", b"x\n"]))
    if depth < 3 and draw(st.booleans()):  # delimiters for boundary "b", used or not
        for _ in range(draw(st.integers(0, 3))):
            body += draw(st.sampled_from([b"--b\r\n", b"--b \t\r\n", b"--b\n", b"--bx\r\n"]))
            body += draw(_entity(depth + 1)) + b"\r\n"
        body += draw(st.sampled_from([b"--b--\r\n", b"--b--", b"", b"--b-- \r\n"]))
    return head + blank + body


@FUZZ
@given(_entity())
def test_generated_messages_read_as_the_general_paths_read_them(raw: bytes) -> None:
    _agree(raw)


@FUZZ
@given(mutated())
def test_mutated_messages_read_as_the_general_paths_read_them(raw: bytes) -> None:
    _agree(raw)


@FUZZ
@given(st.binary(max_size=600))
def test_any_bytes_read_as_the_general_paths_read_them(raw: bytes) -> None:
    _agree(raw)


def test_usual_message_takes_the_fast_paths() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
           b'Content-Disposition: attachment; filename="x.pdf"\r\n\r\nQUJD\r\n--b--\r\n')
    msg = ParsedMessage.from_bytes(raw)
    part = msg.children[0]
    assert (part.filename, part.transfer_encoding) == ("x.pdf", "base64")
    assert msg._fields is None and part._fields is None  # no header block split
