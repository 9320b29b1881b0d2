"""The MIME parser: structure, verbatim offsets, and bounds on hostile input."""

from __future__ import annotations

import time

from mailserver.mime.fetch import body_structure, envelope, section
from mailserver.mime.parse import MAX_DEPTH, MAX_PARTS, ParsedMessage
from tests.imap_syntax import read_one
from tests.mime_samples import entity, health_message, multipart, rfc_section_example


def test_structure_of_nested_multiparts_and_attached_message() -> None:
    msg = ParsedMessage.from_bytes(rfc_section_example())
    assert msg.is_multipart and len(msg.children) == 4
    three = msg.children[2]
    assert three.is_message and three.message is not None
    assert three.message.is_multipart and len(three.message.children) == 2
    four = msg.children[3]
    assert [c.type.lower() for c in four.children] == ["image", "message"]
    kinds = [f"{e.type}/{e.subtype}".lower() for e in msg.walk()]
    assert kinds.count("text/plain") == 4
    assert "text/richtext" in kinds


def test_offsets_give_back_the_original_bytes() -> None:
    raw = health_message()
    msg = ParsedMessage.from_bytes(raw)
    for e in msg.walk():
        assert raw[e.start : e.end] == e.header_bytes + e.body_bytes
    assert msg.header_bytes + msg.body_bytes == raw


def test_lf_only_message() -> None:
    raw = b"Subject: bare lf\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nhello\n--b--\n"
    msg = ParsedMessage.from_bytes(raw)
    assert msg.header_value("subject") == b"bare lf"
    assert section(msg, (1,), "") == b"hello"


def test_header_without_body_and_body_without_header() -> None:
    only_header = ParsedMessage.from_bytes(b"Subject: no body\r\nFrom: a@b")
    assert only_header.header_value("from") == b"a@b"
    assert only_header.body_bytes == b"" and only_header.lines == 0
    no_header = ParsedMessage.from_bytes(b"\r\nbody only")
    assert no_header.fields == [] and no_header.body_bytes == b"body only"
    garbage = ParsedMessage.from_bytes(b"not a header line\r\nSubject: x\r\n\r\nbody")
    assert garbage.header_value("subject") == b"x"


def test_deeply_nested_multipart_bomb_is_bounded_and_fast() -> None:
    depth = 10_000
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    raw = head + b"\r\nleaf" + tail
    started = time.perf_counter()
    msg = ParsedMessage.from_bytes(raw)
    structure = body_structure(msg, extended=True)
    elapsed = time.perf_counter() - started
    assert elapsed < 5
    assert max(e.depth for e in msg.walk()) == MAX_DEPTH
    assert len(msg.walk()) == MAX_DEPTH + 1
    read_one(structure)  # well-formed
    assert section(msg, (1,) * (MAX_DEPTH + 5), "") is None


def test_deeply_nested_message_rfc822_bomb() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\n" * 10_000 + b"Subject: core\r\n\r\nx"
    started = time.perf_counter()
    msg = ParsedMessage.from_bytes(raw)
    read_one(body_structure(msg, extended=False))
    read_one(envelope(msg))
    assert time.perf_counter() - started < 5
    assert max(e.depth for e in msg.walk()) == MAX_DEPTH


def test_part_count_is_capped() -> None:
    parts = [b"x"] * (MAX_PARTS + 5000)
    raw = multipart("mixed", "p", parts)
    started = time.perf_counter()
    msg = ParsedMessage.from_bytes(raw)
    assert len(msg.walk()) == MAX_PARTS
    read_one(body_structure(msg, extended=True))
    assert time.perf_counter() - started < 5


def test_a_caller_may_build_fewer_entities() -> None:
    body = b"".join(b"--b\r\n\r\npart %d\r\n" % i for i in range(50)) + b"--b--\r\n"
    raw = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body
    assert len(ParsedMessage.from_bytes(raw).walk()) == 51
    for most in (1, 2, 10, 51):
        assert len(ParsedMessage.from_bytes(raw, max_parts=most).walk()) == most
    assert len(ParsedMessage.from_bytes(raw, max_parts=52).walk()) == 51
    first = ParsedMessage.from_bytes(raw, max_parts=3).children[0]
    assert first.body_bytes == b"part 0"  # the parts built are the parts as they are


def test_huge_header_count() -> None:
    headers = [f"X-Trace-{i}: value {i}" for i in range(100_000)]
    raw = entity([*headers, "Subject: found"], b"body")
    started = time.perf_counter()
    msg = ParsedMessage.from_bytes(raw)
    assert msg.header_value("subject") == b"found"
    assert section(msg, (), "HEADER.FIELDS", ["subject"]) == b"Subject: found\r\n\r\n"
    read_one(envelope(msg))
    assert time.perf_counter() - started < 5


def test_adversarial_boundary_lookalikes_are_linear() -> None:
    body = b"\r\n--ab" * 400_000
    raw = b'Content-Type: multipart/mixed; boundary="a"\r\n\r\n' + body
    started = time.perf_counter()
    msg = ParsedMessage.from_bytes(raw)
    assert msg.children == []
    assert time.perf_counter() - started < 2


def test_no_blank_line_and_long_lines() -> None:
    raw = b"Subject: " + b"x" * 2_000_000
    msg = ParsedMessage.from_bytes(raw)
    value = msg.header_value("subject")
    assert value is not None and len(value) == 2_000_000


def test_content_type_parameters_quoting_and_comments() -> None:
    raw = entity(
        ['Content-Type: Text/HTML (a comment) ; charset = "ISO-8859-1" ; name="a;b.html"; bad'],
        b"<p>x</p>",
    )
    msg = ParsedMessage.from_bytes(raw)
    assert (msg.type, msg.subtype) == ("Text", "HTML")
    assert msg.param("charset") == "ISO-8859-1"
    assert msg.param("NAME") == "a;b.html"


def test_attachment_filenames_rfc2231_and_rfc2047() -> None:
    cases = [
        (['Content-Disposition: attachment; filename="CR-BIO.xml"'], "CR-BIO.xml"),
        (["Content-Disposition: attachment; filename*=utf-8''%C3%A9t%C3%A9.pdf"], "été.pdf"),
        (["Content-Disposition: attachment; filename*0*=iso-8859-1'fr'r%E9sum; "
          'filename*1="e final.txt"'], "résume final.txt"),
        (['Content-Type: application/pdf; name="=?utf-8?q?Ordonnance_=C3=A9t=C3=A9?=.pdf"'],
         "Ordonnance été.pdf"),
        (["Content-Type: text/plain"], None),
        (["Content-Disposition: attachment; filename*=bogus''%ZZ%4"], "%ZZ%4"),
    ]
    for headers, expected in cases:
        msg = ParsedMessage.from_bytes(entity(headers, b"x"))
        assert msg.filename == expected, headers


def test_delimiters_found_after_many_near_misses() -> None:
    # more near-delimiters than the find-based scan tolerates: the regex path takes over
    noise = b"\r\n--bx lookalike" * 500
    raw = (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\none' + noise
           + b"\r\n--b\r\n\r\ntwo\r\n--b\r\n\r\nthree\r\n--b--\r\n")
    msg = ParsedMessage.from_bytes(raw)
    assert section(msg, (1,), "") == b"one" + noise
    assert section(msg, (2,), "") == b"two"
    assert section(msg, (3,), "") == b"three"
    assert section(msg, (4,), "") is None
