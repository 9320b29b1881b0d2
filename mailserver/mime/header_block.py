"""A message's header block read into an ``email.message.Message`` exactly as the
email package's ``BytesHeaderParser(policy=compat32)`` reads it, four times faster
when the block is plain. The pipeline's rules read headers through this object
(``get``, ``get_all``, ``items``).

Plain: every line ends with CRLF (no bare CR or LF, which the email package also
takes as line ends), each line is a field ``name:`` (RFC 5322 §2.2, the name
printable ASCII without ":") or a folded continuation (§2.2.3, starting with a
space or a tab) after one. Then the fields are those the email package would find,
each built by compat32's own ``header_source_parse``. Anything else (an mbox
``From`` line, a line without a name, a continuation first, bare line ends, no
blank line at all) goes to the email package, the reference the tests hold this
reading to (tests/test_header_block.py)."""

from __future__ import annotations

import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

_FIELD = re.compile(r"[\x21-\x39\x3b-\x7e]+:")  # RFC 5322 §3.6.8 field-name, then ":"
_FIELD_START = re.compile(r"\r\n(?![ \t])")  # a line end not followed by folding (§2.2.3)
# RFC 5322 §3.4.1 addr-spec of dot-atoms only (no quoted local part, no domain literal),
# nothing around it: the usual To/Cc value of practice software and of our own senders.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_BARE_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def parse_header_block(raw: bytes) -> Message:
    """The fields of the header block of ``raw`` (it ends at the first empty line,
    RFC 5322 §2.1): the body is not read at all."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return reference_parse(raw)
    block = raw[:end + 2]
    fast = _plain_block(block)
    return fast if fast is not None else reference_parse(raw[:end + 4])


def reference_parse(data: bytes) -> Message:
    """The email package's reading (compat32), headers only."""
    return BytesHeaderParser(policy=compat32).parsebytes(data)


def _plain_block(block: bytes) -> Message | None:
    """The message for a plain ``block`` (its lines, each ending with CRLF), else None."""
    crlf = block.count(b"\r\n")
    if block.count(b"\r") != crlf or block.count(b"\n") != crlf:
        return None  # a bare CR or LF: a line end for the email package too
    # The email package reads bytes as ASCII with surrogate escapes (BytesParser).
    fields = _FIELD_START.split(block[:-2].decode("ascii", "surrogateescape"))
    message = Message(policy=compat32)
    match = _FIELD.match
    for field in fields:
        if match(field) is None:
            return None  # not a field (or a continuation first): the reference's case
        name, _, value = field.partition(":")
        # compat32's header_source_parse: the first line's value stripped of leading
        # blanks, the folded lines kept with their CRLF, the last CRLF dropped.
        message.set_raw(name, value.lstrip(" \t"))
    message.set_payload("")  # the reference's empty body (headers only)
    return message


def addresses(values: list[str]) -> list[tuple[str, str]]:
    """``email.utils.getaddresses(values)``: when every value is one bare addr-spec,
    its (name, address) pairs are ``("", value)``, given without the email package's
    parser (17 µs for one address); anything else is parsed by it (the tests hold the
    two together)."""
    match = _BARE_ADDRESS.fullmatch
    if all(match(value) for value in values):
        return [("", value) for value in values]
    return getaddresses(values)
