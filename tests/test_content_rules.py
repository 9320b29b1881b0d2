"""The content rules of the message stage, from bytes to decision: the pipeline's
analysis (bounded MIME walk, sniffing) and the pure rules, with the operator's
``[attachments]`` settings."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import policies
from mailserver.health.content import analyse, needs_content_check
from mailserver.settings import AttachmentSettings, load_settings
from policies.context import Door, MessageContext, Party, PartyKind, SenderContext
from tests import xdm_fixtures as fx

LABO = Party("labo@hopital.example", PartyKind.PROFESSIONAL, 1, "APP", True)
DR = Party("dr.a@hopital.example", PartyKind.PROFESSIONAL, 2, "PER", True)


def attachment_settings(tmp_path: Path, **environ: str) -> AttachmentSettings:
    return load_settings(tmp_path, environ={f"MSS_ATTACHMENTS_{k.upper()}": v
                                            for k, v in environ.items()}).attachments


def decide(raw: bytes, settings: AttachmentSettings) -> policies.Decision:
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    rule_headers = {k.lower(): (str(v),) for k, v in headers.items()}
    content = analyse(raw, settings, rule_headers) if needs_content_check(headers) else None
    context = MessageContext(SenderContext(Door.SUBMISSION, LABO, LABO.address, LABO), (DR,),
                             rule_headers, (DR,), content=content)
    return policies.decide_message(context)


def nested(depth: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\nfond\r\n"
    for level in range(depth):
        body = (f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'
                ).encode() + body + f"\r\n--b{level}--\r\n".encode()
    return b"From: labo@hopital.example\r\nTo: dr.a@hopital.example\r\nMIME-Version: 1.0\r\n" + body


def test_plain_mail_is_not_parsed_and_passes(tmp_path: Path) -> None:
    raw = b"From: a@b.example\r\nSubject: x\r\n\r\n#!/bin/sh\r\n"
    assert not needs_content_check(BytesHeaderParser(policy=compat32).parsebytes(raw))
    assert decide(raw, attachment_settings(tmp_path)) == policies.ACCEPT


def test_allowed_kinds_come_from_the_settings(tmp_path: Path) -> None:
    raw = fx.message(LABO.address, DR.address, headers={"X-MSS-CODECDA": "", "X-MSS-INS": ""},
                     subject="Page", attachments=(("page.html", "text/html", b"<html>x</html>"),))
    refused = decide(raw, attachment_settings(tmp_path))
    assert isinstance(refused, policies.Reject) and refused.rule == "attachments_are_allowed"
    assert decide(raw, attachment_settings(tmp_path, allowed="pdf,html")) == policies.ACCEPT
    small = decide(raw, attachment_settings(tmp_path, allowed="pdf,html",
                                            max_attachment_size="20"))
    assert isinstance(small, policies.Reject) and (small.code, small.status) == (552, "5.3.4")


def test_mime_depth_and_part_count_are_bounded(tmp_path: Path) -> None:
    settings = attachment_settings(tmp_path)
    assert decide(nested(5), settings) == policies.ACCEPT
    deep = decide(nested(40), settings)
    assert isinstance(deep, policies.Reject) and "MIME-DEPTH" in deep.reason_en
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(300))
    many = (b'From: x@y.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + parts + b"--b--\r\n")
    refused = decide(many, settings)
    assert isinstance(refused, policies.Reject) and "MIME-PARTS" in refused.reason_en


def _multipart(parts: int) -> bytes:
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(parts))
    return (b'From: x@y.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + body + b"--b--\r\n")


def test_part_count_limit_is_exact(tmp_path: Path) -> None:
    settings = attachment_settings(tmp_path)
    limit = settings.max_mime_parts  # entities, the multipart itself included
    assert decide(_multipart(limit - 1), settings) == policies.ACCEPT
    refused = decide(_multipart(limit), settings)
    assert isinstance(refused, policies.Reject) and "MIME-PARTS" in refused.reason_en


def test_dash_lines_that_are_no_delimiters_do_not_count_as_parts(tmp_path: Path) -> None:
    # A plain attachment full of lines starting with "--" (a signature separator, a
    # list, SQL comments) is one part, whatever the number of such lines.
    lines = b"".join(b"-- note %d\r\n" % i for i in range(2000))
    raw = (b'From: x@y.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\n" + lines + b"--b--\r\n")
    assert decide(raw, attachment_settings(tmp_path)) == policies.ACCEPT


def test_smime_signature_parts_are_not_attachments(tmp_path: Path) -> None:
    raw = fx.message(LABO.address, DR.address, headers={"X-MSS-CODECDA": "", "X-MSS-INS": ""},
                     subject="Signé", attachments=(("smime.p7s", "application/pkcs7-signature",
                                                    b"\x30\x82\x01\x00" + bytes(60)),))
    assert decide(raw, attachment_settings(tmp_path)) == policies.ACCEPT


def test_structured_facts_for_the_record(tmp_path: Path) -> None:
    raw = fx.message(LABO.address, DR.address, xdm=fx.package())
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    facts = analyse(raw, attachment_settings(tmp_path),
                    {k.lower(): (str(v),) for k, v in headers.items()})
    assert facts.structured is not None and facts.structured.problems == ()
    assert facts.structured.type_codes == ("11502-2",)
    assert facts.structured.patient == f"{fx.CLAIRE}^^^&1.2.250.1.213.1.4.8&ISO"
    assert [(a.filename, a.kind) for a in facts.attachments] == [
        ("resultats.pdf", "pdf"), ("IHE_XDM.zip", "xdm")]


def test_encrypted_structured_message_is_not_refused_for_what_it_hides(tmp_path: Path) -> None:
    envelope = b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03" + bytes(64)
    raw = fx.message(LABO.address, DR.address, attachments=(
        ("smime.p7m", "application/pkcs7-mime", envelope),))
    assert decide(raw, attachment_settings(tmp_path)) == policies.ACCEPT
    no_package = fx.message(LABO.address, DR.address)
    refused = decide(no_package, attachment_settings(tmp_path))
    assert isinstance(refused, policies.Reject) and "MSS-NOPACKAGE" in refused.reason_en


def test_executables_are_found_under_any_transfer_encoding(tmp_path: Path) -> None:
    """The content is sniffed after its transfer encoding is undone: base64,
    quoted-printable, and the old uuencode that mail clients still decode."""
    import base64
    import binascii
    import quopri

    program = b"MZ\x90\x00" + bytes(60) + b"PE\x00\x00" + bytes(200)
    uu = b"begin 644 notes.txt\r\n" + b"".join(
        binascii.b2a_uu(program[i:i + 45]).replace(b"\n", b"\r\n")
        for i in range(0, len(program), 45)) + b"`\r\nend\r\n"
    encoded = {"base64": base64.encodebytes(program).replace(b"\n", b"\r\n"),
               "quoted-printable": quopri.encodestring(program).replace(b"\n", b"\r\n"),
               "x-uuencode": uu}
    settings = attachment_settings(tmp_path)
    for encoding, body in encoded.items():
        raw = (b"From: labo@hopital.example\r\nTo: dr.a@hopital.example\r\nMIME-Version: 1.0\r\n"
               b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
               b"Content-Type: text/plain\r\n\r\nCi-joint\r\n--b\r\n"
               b'Content-Type: text/plain; name="notes.txt"\r\n'
               b"Content-Disposition: attachment; filename=notes.txt\r\n"
               + f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode()
               + body + b"\r\n--b--\r\n")
        refused = decide(raw, settings)
        assert isinstance(refused, policies.Reject), encoding
        assert refused.rule == "attachments_are_safe", (encoding, refused)
