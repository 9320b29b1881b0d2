"""The MIME parser's fast paths agree with the general readings they stand in front of
(issue 5): MIME fields found by a search instead of the field index, simple parameter values
read by two regexes instead of the general reader, Content-Types read once per distinct
value, bare Content-Transfer-Encoding tokens looked up. Each property compares the fast
result with the general one on generated input: folding, comments, quoted strings, RFC 2231
continuations, encoded words, odd blanks, bare LF, missing boundaries, nested multiparts."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.mime.headers import _SIMPLE, ParamValue, _parse_param_text, parse_param_value

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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


@FUZZ
@given(st.lists(_PARAM_PIECES, max_size=25))
def test_any_parameter_value_reads_as_the_general_reader_does(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    _same(parse_param_value(raw), _parse_param_text(raw.decode("latin-1")))


_BLANKS = st.sampled_from(["", " ", "\t", "  \t"])


@st.composite
def _usual_value(draw: st.DrawFn) -> bytes:
    """`type/sub; name=value; name="quoted"`, with the odd blank, empty piece or special."""
    text = draw(_BLANKS) + draw(st.sampled_from(["text/plain", "application/pdf", "inline",
                                                 "attachment", "", "a=b", "x/y/z"]))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["charset", "name", "filename*0*", "filename*1", "n=m",
                                     "", "a b", 'q"']))
        value = draw(st.sampled_from(["utf-8", "=?utf-8?q?a?=", "utf-8''%C3%A9", "a=b", "",
                                      "x.pdf", "a b", "a;b", "(c)", "a\\b", "é"]))
        if draw(st.booleans()):
            value = f'"{value}"' if draw(st.booleans()) else f'"{value}'
        text += draw(_BLANKS) + ";" + draw(_BLANKS) + name
        text += draw(st.sampled_from(["=", "", " =", "= "])) + value + draw(_BLANKS)
    return text.encode("latin-1")


@FUZZ
@given(_usual_value())
def test_usual_parameter_values_read_as_the_general_reader_does(raw: bytes) -> None:
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
