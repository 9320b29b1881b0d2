"""The pipeline's header block reading is the email package's (compat32), field for
field, whether the block is plain (read directly) or not (the email package reads it)."""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.mime.header_block import (
    _BARE_ADDRESS,
    _plain_block,
    addresses,
    parse_header_block,
    reference_parse,
)


def _state(message: Message) -> tuple[object, ...]:
    """Everything the reading sets (defects by kind: each is a new instance)."""
    return (message._headers, message._unixfrom, message._payload, message._charset,
            message.preamble, message.epilogue, message._default_type,
            [type(defect) for defect in message.defects], message.policy)


def _reference(raw: bytes) -> Message:
    end = raw.find(b"\r\n\r\n")
    return reference_parse(raw if end < 0 else raw[:end + 4])


_NAMES = st.sampled_from([
    "From", "To", "cc", "Subject", "X-MSS-CODECDA", "Content-Type", "Received", "a",
    "Name With Space", "", "From ", "Bad\x7fName", "Ünï", ">From", "X:Y",
])
_VALUES = st.sampled_from([
    "", " ", "  value", "\tvalue", "a@b.example", "caf\xe9", "=?utf-8?q?=C3=A9?=",
    "x:y:z", " <id@x>", "trailing  ", "\x00nul", "\x0bvt\x0cff", "\x85nel",
])
_CONTINUATIONS = st.lists(st.sampled_from([" more", "\tmore", "   ", " x: y", "\t"]),
                          max_size=2)
_ENDS = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n", "\r"])


@st.composite
def _blocks(draw: st.DrawFn) -> bytes:
    lines: list[str] = []
    if draw(st.booleans()) and draw(st.booleans()):
        lines.append(draw(st.sampled_from(["From sender@x Mon Jan  1 00:00:00 2026",
                                           " continuation first", "no colon here", ""])))
    for _ in range(draw(st.integers(0, 8))):
        lines.append(f"{draw(_NAMES)}:{draw(_VALUES)}")
        lines.extend(draw(_CONTINUATIONS))
    text = "".join(line + draw(_ENDS) for line in lines)
    body = draw(st.sampled_from(["\r\nbody\r\n", "\r\n", "", "\r\n\r\nmore\r\n"]))
    return (text + body).encode("utf-8", "surrogateescape")


@settings(max_examples=3000, deadline=None)
@given(_blocks())
def test_header_block_reads_as_the_email_package(raw: bytes) -> None:
    assert _state(parse_header_block(raw)) == _state(_reference(raw))


_PLAIN_NAMES = st.sampled_from(["From", "To", "Subject", "X-MSS-INS", "Content-Type", "a"])


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(_PLAIN_NAMES, _VALUES, _CONTINUATIONS), min_size=1, max_size=10))
def test_plain_blocks_take_the_direct_reading(
        fields: list[tuple[str, str, list[str]]]) -> None:
    """Blocks of fields, folded or not, ending in CRLF: read directly, as the email
    package reads them (so the property above is not only about the fallback)."""
    text = "".join(f"{name}:{value}\r\n" + "".join(c + "\r\n" for c in folded)
                   for name, value, folded in fields)
    raw = (text + "\r\nbody\r\n").encode("utf-8", "surrogateescape")
    direct = _plain_block(raw[:raw.find(b"\r\n\r\n") + 2])
    assert direct is not None
    assert _state(direct) == _state(_reference(raw))


def test_what_the_direct_reading_leaves_to_the_email_package() -> None:
    for block in (b"From a@b Mon Jan  1 00:00:00 2026\r\nTo: x\r\n",  # mbox line
                  b" folded first\r\nTo: x\r\n", b"To: x\nCc: y\r\n", b"To: x\r\r\n",
                  b"no colon\r\n", b":no name\r\n", b"Name With Space: x\r\n"):
        assert _plain_block(block) is None, block
        raw = block + b"\r\nbody"
        assert _state(parse_header_block(raw)) == _state(_reference(raw))


# -- To/Cc addresses: a bare addr-spec without the email package's parser -------------

_ATOMS = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
_BARE = st.builds(lambda local, labels: ".".join(local) + "@" + ".".join(labels),
                  st.lists(_ATOMS, min_size=1, max_size=3),
                  st.lists(st.text(alphabet="abcXYZ019-", min_size=1, max_size=6),
                           min_size=1, max_size=3))
_ANY = st.text(alphabet="ab1.@ <>\",;:()[]\\-'\t=?é", max_size=24)
_AROUND = st.builds(lambda before, address, after: before + address + after,
                    st.sampled_from(["", " ", "\t", "<", '"', "(c)", "x ", "Name <"]), _BARE,
                    st.sampled_from(["", " ", ">", '"', "(c)", ",", " y", ", b@c"]))


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.one_of(_BARE, _AROUND, _ANY), max_size=3))
def test_addresses_read_as_getaddresses(values: list[str]) -> None:
    assert addresses(values) == getaddresses(values)


@settings(max_examples=500, deadline=None)
@given(st.lists(_BARE, min_size=1, max_size=3))
def test_bare_addresses_take_the_direct_reading(values: list[str]) -> None:
    assert all(_BARE_ADDRESS.fullmatch(value) for value in values)
    assert addresses(values) == getaddresses(values) == [("", value) for value in values]
