"""FETCH ENVELOPE / BODY / BODYSTRUCTURE / BODY[section] / BINARY on real-world-shaped mail,
checked against the RFCs' own examples and against Python's email package."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest

from mailserver.mime.fetch import (
    UnknownTransferEncoding,
    binary,
    binary_size,
    body_structure,
    envelope,
    section,
)
from mailserver.mime.parse import ParsedMessage
from tests.imap_syntax import read_one
from tests.mime_samples import (
    CDA,
    entity,
    health_message,
    multipart,
    rfc_bodystructure_message,
    rfc_section_example,
    xdm_zip,
)

RFC3501_BODY = (
    b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)("TEXT" "PLAIN" '
    b'("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" '
    b'"Compiled diff" "BASE64" 4554 73) "MIXED")'
)
RFC3501_ENVELOPE = (
    b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'((NIL NIL "imap" "cac.washington.edu")) '
    b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
    b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
)


def parse(raw: bytes) -> ParsedMessage:
    return ParsedMessage.from_bytes(raw)


# -- the RFCs' examples -------------------------------------------------------------------------


def test_body_matches_rfc3501_example() -> None:
    msg = parse(rfc_bodystructure_message())
    assert body_structure(msg, extended=False) == RFC3501_BODY


def test_bodystructure_adds_extension_data_to_rfc_example() -> None:
    msg = parse(rfc_bodystructure_message())
    value = read_one(body_structure(msg, extended=True))
    assert isinstance(value, list)
    text1, text2, subtype, params, dsp, lang, loc = value
    assert subtype == b"MIXED" and params == [b"boundary", b"xyz"]
    assert (dsp, lang, loc) == (None, None, None)
    # non-multipart extension data: md5, disposition, language, location
    assert text1 == [b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT", 1152, 23,
                     None, None, None, None]
    assert isinstance(text2, list) and text2[6:8] == [4554, 73]


def test_envelope_matches_rfc3501_example() -> None:
    msg = parse(rfc_bodystructure_message())
    assert envelope(msg) == RFC3501_ENVELOPE


# -- ENVELOPE -----------------------------------------------------------------------------------


def test_envelope_groups_encoded_words_and_defaults() -> None:
    env = read_one(envelope(parse(health_message())))
    assert isinstance(env, list)
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = env
    assert date == b"Tue, 05 Mar 2024 09:12:00 +0100"
    # RFC 2047 words are returned as they are, not decoded
    assert subject == b"=?utf-8?b?Q29tcHRlIHJlbmR1IGQnaG9zcGl0YWxpc2F0aW9u?="
    assert from_ == [[b"=?utf-8?q?Dr_Jos=C3=A9?= Martin", None, b"jose.martin",
                      b"hopital.mssante.fr"]]
    assert sender == from_ and reply_to == from_  # RFC 3501 §7.4.2 defaults
    assert to == [
        [b"Dupont, Anne", None, b"anne.dupont", b"medecin.mssante.fr"],
        [None, None, b"patient-team", None],  # start of group
        [None, None, b"p1", b"x.fr"],
        [b"no name", None, b"p2", b"x.fr"],  # the comment serves as the name
        [None, None, None, None],  # end of group
    ]
    assert cc == [[None, None, b"secretariat", b"hopital.mssante.fr"]]
    assert (bcc, in_reply_to) == (None, None)
    assert message_id == b"<cr-1@hopital.mssante.fr>"


def test_envelope_of_message_without_headers_is_all_nil() -> None:
    assert envelope(parse(b"\r\njust a body\r\n")) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    assert envelope(parse(b"")) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_envelope_odd_addresses() -> None:
    raw = entity(
        [
            "From: undisclosed-recipients:;",
            "Sender: <@relay.example,@other.example:bounce@lists.example>",
            "Reply-To: ",
            "To: bare-user, \"quoted \\\"name\\\"\" <q@x.example>, Jean.Q.Public <jqp@x.example>",
            "Cc: =?iso-8859-1?q?Andr=E9?= <andre@x.example> (Dr), broken <no-close@x.example",
            "Bcc: group1: ; group2: a@b.example;",
            "In-Reply-To: <parent@x.example>",
        ],
        b"body",
    )
    env = read_one(envelope(parse(raw)))
    assert isinstance(env, list)
    assert env[2] == [[None, None, b"undisclosed-recipients", None], [None, None, None, None]]
    assert env[3] == [[None, b"@relay.example,@other.example", b"bounce", b"lists.example"]]
    assert env[4] == env[2]  # empty Reply-To defaults to From
    assert env[5] == [
        [None, None, b"bare-user", b".MISSING-HOST-NAME."],
        [b'quoted "name"', None, b"q", b"x.example"],
        [b"Jean.Q.Public", None, b"jqp", b"x.example"],
    ]
    assert env[6] == [
        [b"=?iso-8859-1?q?Andr=E9?=", None, b"andre", b"x.example"],
        [b"broken", None, b"no-close", b"x.example"],
    ]
    assert env[7] == [
        [None, None, b"group1", None], [None, None, None, None],
        [None, None, b"group2", None], [None, None, b"a", b"b.example"], [None, None, None, None],
    ]
    assert env[8] == b"<parent@x.example>"


def test_envelope_utf8_headers_literal_unless_utf8_accept() -> None:
    raw = entity(["Subject: Résultats d'analyse", "From: Zoé <zoe@hôpital.example>"], b"x")
    plain = envelope(parse(raw))
    subject = "Résultats d'analyse".encode()
    assert b"{%d}\r\n" % len(subject) + subject in plain
    utf8 = envelope(parse(raw), utf8=True)
    assert b'"' + subject + b'"' in utf8
    assert b'(("Zo\xc3\xa9" NIL "zoe" "h\xc3\xb4pital.example"))' in utf8
    assert read_one(plain) == read_one(utf8)


def test_envelope_unfolds_folded_subject() -> None:
    raw = b"Subject: a long\r\n  folded\r\n\tsubject\r\nFrom: a@b\r\n\r\nx"
    env = read_one(envelope(parse(raw)))
    assert isinstance(env, list) and env[1] == b"a long  folded\tsubject"


# -- BODYSTRUCTURE ------------------------------------------------------------------------------


def test_bodystructure_health_message() -> None:
    value = read_one(body_structure(parse(health_message()), extended=True))
    assert isinstance(value, list)
    alt, cda, zip_part = value[:3]
    assert value[3] == b"mixed"
    assert isinstance(alt, list) and alt[2] == b"alternative"
    assert isinstance(cda, list)
    assert cda[:3] == [b"text", b"xml", [b"charset", b"utf-8", b"name", b"CR-BIO.xml"]]
    assert cda[9] == [b"attachment", [b"filename", b"CR-BIO.xml"]]
    assert isinstance(zip_part, list)
    assert zip_part[:2] == [b"application", b"zip"]
    assert zip_part[4] == b"=?utf-8?q?Dossier_m=C3=A9dical?="  # Content-Description, raw
    assert zip_part[5] == b"base64"
    # application/*: no line count; then md5, disposition, language, location
    assert zip_part[7:] == [None, [b"attachment", [b"filename", b"IHE_XDM.ZIP"]], b"fr", None]


def test_bodystructure_message_rfc822_has_envelope_body_and_lines() -> None:
    inner = entity(["From: inner@x.example", "Subject: inner"], b"line1\r\nline2\r\n")
    raw = multipart("mixed", "outer", [
        entity(["Content-Type: text/plain"], b"see attached"),
        entity(["Content-Type: message/rfc822", 'Content-Disposition: attachment'], inner),
    ], headers=["From: outer@x.example"])
    value = read_one(body_structure(parse(raw), extended=False))
    assert isinstance(value, list)
    att = value[1]
    assert isinstance(att, list)
    assert att[:7] == [b"message", b"rfc822", None, None, None, b"7bit", len(inner)]
    env = att[7]
    assert isinstance(env, list) and env[1] == b"inner"
    assert att[8] == [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit", 14, 2]
    assert att[9] == inner.count(b"\n")
    # text/* without a charset parameter: the RFC 2045 default is written out, as Dovecot does
    assert value[0] == [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit", 12, 1]


def test_bodystructure_language_list_location_md5() -> None:
    raw = entity(
        [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Language: fr, en-GB",
            "Content-Location: https://x.example/doc.txt",
            "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
            "Content-ID: <id1@x>",
        ],
        b"texte",
    )
    value = read_one(body_structure(parse(raw), extended=True))
    assert value == [b"text", b"plain", [b"charset", b"utf-8"], b"<id1@x>", None, b"7bit", 5, 1,
                     b"Q2hlY2sgSW50ZWdyaXR5IQ==", None, [b"fr", b"en-GB"],
                     b"https://x.example/doc.txt"]


def test_broken_mime_degrades_like_dovecot() -> None:
    # multipart without a boundary parameter: text/plain
    no_boundary = entity(["Content-Type: multipart/mixed"], b"--x\r\nhello\r\n--x--\r\n")
    assert read_one(body_structure(parse(no_boundary), extended=False)) == [
        b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit", 19, 3]
    # a boundary that never occurs: one empty text/plain part
    absent = entity(['Content-Type: multipart/mixed; boundary="nowhere"'], b"hello\r\n")
    assert body_structure(parse(absent), extended=False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")')
    # an invalid Content-Type: text/plain; charset=us-ascii (RFC 2045 §5.2)
    invalid = entity(["Content-Type: garbage"], b"x")
    assert body_structure(parse(invalid), extended=False) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 1)')


def test_missing_final_boundary_last_part_runs_to_end() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\n\r\nfirst\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>last</p>\r\n")
    msg = parse(raw)
    assert [c.subtype for c in msg.children] == ["plain", "html"]
    assert section(msg, (1,), "") == b"first"
    assert section(msg, (2,), "") == b"<p>last</p>\r\n"


def test_boundary_with_transport_padding_and_prefix_lookalikes() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b  \r\n\r\none\r\n--bb not a delimiter\r\n--b\r\n\r\ntwo\r\n--b--  \r\nepilogue")
    msg = parse(raw)
    assert section(msg, (1,), "") == b"one\r\n--bb not a delimiter"
    assert section(msg, (2,), "") == b"two"
    assert section(msg, (3,), "") is None


def test_multipart_digest_parts_default_to_message_rfc822() -> None:
    m1 = entity(["Subject: first"], b"one")
    raw = multipart("digest", "d", [b"\r\n" + m1])
    value = read_one(body_structure(parse(raw), extended=False))
    assert isinstance(value, list) and isinstance(value[0], list)
    assert value[0][:2] == [b"message", b"rfc822"]
    assert section(parse(raw), (1, 1), "") == b"one"
    assert section(parse(raw), (1,), "HEADER") == b"Subject: first\r\n\r\n"


# -- BODY[section] ------------------------------------------------------------------------------


def test_sections_follow_rfc9051_part_numbering() -> None:
    raw = rfc_section_example()
    msg = parse(raw)
    header = section(msg, (), "HEADER")
    text = section(msg, (), "TEXT")
    assert header is not None and text is not None and header + text == raw
    assert header.startswith(b"From: Top") and header.endswith(b"\r\n\r\n")
    assert section(msg, (), "") == raw
    assert section(msg, (1,), "") == b"part 1"
    assert binary(msg, (2,)) == b"part two bytes"
    three = section(msg, (3,), "")
    assert three is not None and three.startswith(b"Subject: part three")
    assert section(msg, (3,), "HEADER") == (
        b"Subject: part three\r\nFrom: a@b.example\r\n"
        b'Content-Type: multipart/mixed; boundary="b3"\r\n\r\n')
    text3 = section(msg, (3,), "TEXT")
    assert text3 is not None and three.endswith(text3) and text3.startswith(b"--b3")
    assert section(msg, (3, 1), "") == b"part 3.1"
    assert binary(msg, (3, 2)) == b"\x00\x01three-two"
    assert section(msg, (4,), "MIME") == b'Content-Type: multipart/mixed; boundary="b4"\r\n\r\n'
    assert binary(msg, (4, 1)) == b"GIF89a..."
    assert section(msg, (4, 1), "MIME") == (
        b"Content-Type: IMAGE/GIF\r\nContent-Transfer-Encoding: BASE64\r\n\r\n")
    assert section(msg, (4, 2), "HEADER", ) is not None
    assert section(msg, (4, 2), "HEADER.FIELDS", ["subject"]) == b"Subject: part four two\r\n\r\n"
    assert section(msg, (4, 2, 1), "") == b"part 4.2.1"
    assert section(msg, (4, 2, 2, 1), "") == b"part 4.2.2.1"
    assert section(msg, (4, 2, 2, 2), "") == b"<bold>4.2.2.2</bold>"
    assert section(msg, (4, 2, 2, 2), "MIME") == b"Content-Type: TEXT/RICHTEXT\r\n\r\n"
    # parts that do not exist, and specs that do not apply
    assert section(msg, (5,), "") is None
    assert section(msg, (4, 2, 3), "") is None
    assert section(msg, (1, 1), "") is None
    assert section(msg, (0,), "") is None
    assert section(msg, (), "MIME") is None
    assert section(msg, (1,), "HEADER") is None  # part 1 is not a message/rfc822
    assert section(msg, (), "BOGUS") is None


def test_single_part_message_part_one_is_its_body() -> None:
    raw = b"From: a@b.example\r\nSubject: hi\r\n\r\nthe body\r\n"
    msg = parse(raw)
    assert section(msg, (1,), "") == b"the body\r\n"
    assert section(msg, (1,), "MIME") == b"From: a@b.example\r\nSubject: hi\r\n\r\n"
    assert section(msg, (2,), "") is None
    assert section(msg, (1, 1), "") is None
    assert binary(msg, (1,)) == b"the body\r\n"


def test_header_fields_and_not_keep_lines_verbatim() -> None:
    raw = (b"Received: from a\r\n\tby b\r\nSubject: Folded\r\n subject\r\nFrom: x@y\r\n"
           b"X-Other: 1\r\nsubject: second\r\n\r\nbody")
    msg = parse(raw)
    assert section(msg, (), "HEADER.FIELDS", ["SUBJECT", "from"]) == (
        b"Subject: Folded\r\n subject\r\nFrom: x@y\r\nsubject: second\r\n\r\n")
    assert section(msg, (), "HEADER.FIELDS.NOT", ["received", "subject"]) == (
        b"From: x@y\r\nX-Other: 1\r\n\r\n")
    assert section(msg, (), "HEADER.FIELDS", ["absent"]) == b"\r\n"


# -- BINARY -------------------------------------------------------------------------------------


def test_binary_decodes_xdm_zip_cda_and_quoted_printable() -> None:
    msg = parse(health_message())
    assert binary(msg, (3,)) == xdm_zip()
    assert binary_size(msg, (3,)) == len(xdm_zip())
    assert binary(msg, (2,)) == CDA
    assert binary(msg, (1, 1)) == "Bonjour Docteur,\r\nvoici le compte rendu de l'été.Fin.".encode()
    assert binary(msg, (1, 2)) == "<p>Bonjour Docteur, voici le compte rendu de l'été.</p>".encode()
    assert binary(msg, (9,)) is None and binary_size(msg, (9,)) is None
    assert binary(msg, ()) == health_message()


def test_binary_unknown_transfer_encoding() -> None:
    raw = entity(["Content-Transfer-Encoding: x-uuencode"], b"begin 644 f\r\nend\r\n")
    with pytest.raises(UnknownTransferEncoding):
        binary(parse(raw), (1,))
    # BODY[] is unaffected
    assert section(parse(raw), (1,), "") == b"begin 644 f\r\nend\r\n"


def test_binary_lenient_base64() -> None:
    raw = entity(["Content-Transfer-Encoding: Base64"], b"aGVs\r\n bG8g*d29y\r\nbGQ")
    assert binary(parse(raw), (1,)) == b"hello world"
    commented = entity(["Content-Transfer-Encoding: BASE64 (as usual)"], b"aGVsbG8=")
    assert binary(parse(commented), (1,)) == b"hello"


def _email_leaves(msg: Message) -> list[bytes]:
    out: list[bytes] = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() == "message":
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out.append(payload)
    return out


def _our_leaves(msg: ParsedMessage) -> list[bytes]:
    from mailserver.mime.fetch import decode_content

    return [
        decode_content(e, e.body_bytes)
        for e in msg.walk()
        if not e.is_multipart and e.message is None
    ]


@pytest.mark.parametrize("make", [health_message, rfc_section_example, rfc_bodystructure_message])
def test_part_contents_agree_with_python_email(make: object) -> None:
    assert callable(make)
    raw = make()
    ours = _our_leaves(parse(raw))
    theirs = _email_leaves(email.message_from_bytes(raw, policy=email.policy.compat32))
    assert ours == theirs


def test_text_parts_get_default_charset_parameter() -> None:
    html = entity(['Content-Type: text/html; format="flowed"'], b"<p>x</p>")
    value = read_one(body_structure(parse(html), extended=False))
    assert isinstance(value, list)
    assert value[2] == [b"format", b"flowed", b"charset", b"us-ascii"]
    pdf = entity(["Content-Type: application/pdf"], b"%PDF")
    value = read_one(body_structure(parse(pdf), extended=False))
    assert isinstance(value, list) and value[2] is None
