"""Property tests: any bytes, and mutated real-world messages, through every mime function.

Nothing may raise (except UnknownTransferEncoding from BINARY, which is documented), every
FETCH string must be well-formed IMAP, sections must be verbatim slices, and each message
must be handled quickly."""

from __future__ import annotations

import datetime as dt
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.mime.fetch import (
    SECTION_SPECS,
    UnknownTransferEncoding,
    binary,
    binary_size,
    body_structure,
    envelope,
    section,
)
from mailserver.mime.parse import ParsedMessage
from mailserver.mime.search import body_text, contains, full_text, header_text, sent_date
from mailserver.mime.threading import (
    SortItem,
    base_subject,
    format_threads,
    sort_messages,
    thread_item,
    thread_orderedsubject,
    thread_references,
)
from tests.imap_syntax import read_one
from tests.mime_samples import entity, health_message, multipart, rfc_section_example

ARRIVAL = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

TOKENS = [
    b"\r\n", b"\n", b"\r\n\r\n", b"--", b"--b", b"--b--", b"--mixed-b", b"--alt-b--",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: message/rfc822\r\n", b"Content-Type: multipart/digest; boundary=\"b\"\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: x-bogus\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n", b"=?utf-8?b?", b"=?x?q?=FF?=", b"?=",
    b'"', b"\\", b"(", b")", b"<", b">", b"@", b":", b";", b",", b"[", b"]", b"=", b"\x00",
    b"\xff\xfe", "é".encode(), b" ", b"\t", b"From: a@b\r\n", b"To: g: x@y, <z@w>;\r\n",
    b"References: <a@b> <c@d>\r\n", b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%C3; filename*1*=%A9\r\n",
    b"; name*=x'y'%ZZ", b"; filename=\"=?utf-8?b?w6k=?=\"",
]


def part_paths(msg: ParsedMessage, limit: int = 200) -> list[tuple[int, ...]]:
    """Every section part number of a message, following RFC 9051 §6.4.5."""
    out: list[tuple[int, ...]] = []
    top = [(i + 1,) for i in range(len(msg.children))] if msg.is_multipart else [(1,)]
    stack = list(reversed(top))
    while stack and len(out) < limit:
        path = stack.pop()
        out.append(path)
        from mailserver.mime.fetch import resolve_part

        ent = resolve_part(msg, path)
        assert ent is not None, path
        if not ent.is_multipart and ent.message is not None:
            ent = ent.message
            if not ent.is_multipart:
                stack.append((*path, 1))
                continue
        if ent.is_multipart:
            stack.extend((*path, i + 1) for i in reversed(range(len(ent.children))))
    return out


def exercise(raw: bytes) -> None:
    started = time.perf_counter()
    msg = ParsedMessage.from_bytes(raw)
    for utf8 in (False, True):
        read_one(envelope(msg, utf8=utf8))
        read_one(body_structure(msg, extended=False, utf8=utf8))
        read_one(body_structure(msg, extended=True, utf8=utf8))
    assert section(msg, (), "") == raw
    header, text = section(msg, (), "HEADER"), section(msg, (), "TEXT")
    assert header is not None and text is not None and header + text == raw
    fields = section(msg, (), "HEADER.FIELDS", ["from", "subject", "content-type"])
    assert fields is not None and fields.endswith(b"\r\n")
    for path in part_paths(msg):
        for spec in SECTION_SPECS:
            data = section(msg, path, spec, ["content-type"])
            if data is not None:
                assert spec in ("HEADER.FIELDS", "HEADER.FIELDS.NOT") or data in raw
        assert section(msg, path, "") is not None
        try:
            decoded = binary(msg, path)
            assert decoded is not None and binary_size(msg, path) == len(decoded)
        except UnknownTransferEncoding:
            pass
    assert section(msg, (10_000,), "") is None
    for ent in msg.walk()[:100]:
        _ = ent.filename, ent.transfer_encoding, ent.lines, ent.param("charset")
    for name in ("subject", "from", "to", "content-type"):
        header_text(msg, name)
    contains(full_text(msg), "x")
    body_text(msg)
    sent_date(msg)
    ti = thread_item(1, msg, ARRIVAL)
    base_subject(ti.subject)
    format_threads(thread_references([ti, thread_item(2, msg, ARRIVAL)]))
    format_threads(thread_orderedsubject([ti]))
    sort_messages(
        [SortItem(1, msg, ARRIVAL, len(raw))],
        ["REVERSE", "DATE", "SUBJECT", "FROM", "TO", "CC", "DISPLAYFROM", "DISPLAYTO", "SIZE"],
    )
    assert time.perf_counter() - started < 2


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=4000))
def test_random_bytes(raw: bytes) -> None:
    exercise(raw)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from([health_message(), rfc_section_example(), _small()]))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(raw)))
        action = draw(st.integers(0, 2))
        if action == 0:
            raw = raw[:pos] + draw(st.sampled_from(TOKENS)) + raw[pos:]
        elif action == 1:
            raw = raw[:pos] + raw[pos + draw(st.integers(1, 200)) :]
        else:
            raw = raw[:pos] + draw(st.binary(min_size=1, max_size=20)) + raw[pos:]
    return raw


def _small() -> bytes:
    inner = entity(["Subject: in", "Content-Type: multipart/alternative; boundary=b"],
                   b"--b\r\n\r\nx\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>\r\n--b--")
    return multipart("mixed", "o", [entity(["Content-Type: message/rfc822"], inner)],
                     headers=["From: x <a@b>", "To: g: ;"])


@FUZZ
@given(mutated())
def test_mutated_messages(raw: bytes) -> None:
    exercise(raw)


@st.composite
def mime_tree(draw: st.DrawFn, depth: int = 0) -> bytes:
    kind = draw(st.sampled_from(["leaf", "multi", "message"] if depth < 4 else ["leaf"]))
    if kind == "leaf":
        cte = draw(st.sampled_from(["7bit", "base64", "quoted-printable", "8bit", "x-unknown"]))
        ctype = draw(st.sampled_from(["text/plain; charset=utf-8", "application/pdf",
                                      "text/html; charset=iso-8859-1", "image/png"]))
        body = draw(st.binary(max_size=200))
        return entity([f"Content-Type: {ctype}", f"Content-Transfer-Encoding: {cte}"], body)
    if kind == "message":
        return entity(["Content-Type: message/rfc822"],
                      draw(mime_tree(depth + 1)))
    boundary = draw(st.sampled_from(["b", "b1", "=_x", "a b"])) + str(depth)
    parts = draw(st.lists(mime_tree(depth + 1), min_size=0, max_size=3))
    return multipart(draw(st.sampled_from(["mixed", "alternative", "digest"])), boundary, parts)


@FUZZ
@given(mime_tree())
def test_generated_mime_trees(raw: bytes) -> None:
    exercise(raw)


ADDRESS_PIECES = [b"a", b"b.c", b"x@y.example", b"<", b">", b"@", b",", b" ", b"  ", b"\t", b'"',
                  b'\\"', b"Name", b"=?utf-8?q?Jos=C3=A9?=", "é".encode(), b".", b";", b":",
                  b"(c)", b"[1.2.3.4]"]


@FUZZ
@given(st.lists(st.sampled_from(ADDRESS_PIECES), max_size=25))
def test_address_fast_path_agrees_with_full_parser(pieces: list[bytes]) -> None:
    from mailserver.mime.addresses import _fast_parse, _full_parse

    value = b"".join(pieces).strip(b" \t")
    fast = _fast_parse(value)
    if fast is not None:
        assert fast == _full_parse(value)
