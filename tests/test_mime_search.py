"""Text that SEARCH matches against: decoded headers and bodies (RFC 9051 §6.4.4)."""

from __future__ import annotations

import datetime

from mailserver.mime.parse import ParsedMessage
from mailserver.mime.search import body_text, contains, full_text, header_text, sent_date
from tests.mime_samples import entity, health_message, multipart


def test_header_text_decodes_rfc2047_and_unfolds() -> None:
    msg = ParsedMessage.from_bytes(health_message())
    assert header_text(msg, "Subject") == ["Compte rendu d'hospitalisation"]
    assert header_text(msg, "from") == ["Dr José Martin <jose.martin@hopital.mssante.fr>"]
    assert header_text(msg, "x-absent") == []
    raw = (b"Subject: =?utf-8?q?caf=C3?=\r\n =?utf-8?q?=A9?= au lait\r\n"
           b"Comments: one\r\nComments: two\r\n\r\n")
    msg = ParsedMessage.from_bytes(raw)
    # a character split across two encoded-words survives; the space between words goes
    assert header_text(msg, "subject") == ["café au lait"]
    assert header_text(msg, "comments") == ["one", "two"]


def test_header_text_raw_utf8_and_latin1() -> None:
    raw = "Subject: Résultats\r\nX-Old: ".encode() + b"caf\xe9\r\n\r\n"
    msg = ParsedMessage.from_bytes(raw)
    assert header_text(msg, "subject") == ["Résultats"]
    assert header_text(msg, "x-old") == ["café"]


def test_body_text_decodes_transfer_encoding_and_charset() -> None:
    msg = ParsedMessage.from_bytes(health_message())
    text = body_text(msg)
    assert "voici le compte rendu de l'été" in text  # quoted-printable UTF-8
    assert "Compte rendu d'hospitalisation été" in text  # base64 CDA XML (text/xml)
    assert "IHE XDM" not in text  # the zip is not text
    latin = entity(["Content-Type: text/plain; charset=iso-8859-1",
                    "Content-Transfer-Encoding: quoted-printable"], b"d=E9j=E0 vu")
    assert body_text(ParsedMessage.from_bytes(latin)) == "déjà vu"
    bogus = entity(["Content-Type: text/plain; charset=x-unknown-charset"], "naïf".encode())
    assert body_text(ParsedMessage.from_bytes(bogus)) == "naïf"
    odd = entity(["Content-Type: text/plain; charset=base64"], b"plain words")
    assert body_text(ParsedMessage.from_bytes(odd)) == "plain words"


def test_body_text_includes_attached_message() -> None:
    inner = entity(["Subject: =?utf-8?q?R=C3=A9ponse?="], b"inner words")
    raw = multipart("mixed", "b", [entity([], b"outer words"),
                                   entity(["Content-Type: message/rfc822"], inner)])
    text = body_text(ParsedMessage.from_bytes(raw))
    assert "outer words" in text and "inner words" in text and "Réponse" in text


def test_full_text_has_headers_and_body() -> None:
    text = full_text(ParsedMessage.from_bytes(health_message()))
    assert contains(text, "DUPONT, anne")
    assert contains(text, "hospitalisation")
    assert contains(text, "COMPTE RENDU DE L'ÉTÉ")


def test_contains_is_case_insensitive_with_unicode_folding() -> None:
    assert contains("Straße und Résumé", "STRASSE")
    assert contains("Straße und Résumé", "résumé")
    assert not contains("abc", "abd")
    assert contains("anything", "")


def test_sent_date() -> None:
    msg = ParsedMessage.from_bytes(health_message())
    assert sent_date(msg) == datetime.date(2024, 3, 5)
    # the date in the message's own zone, not converted to UTC
    late = ParsedMessage.from_bytes(b"Date: Sun, 31 Dec 2023 23:30:00 -0500\r\n\r\n")
    assert sent_date(late) == datetime.date(2023, 12, 31)
    assert sent_date(ParsedMessage.from_bytes(b"Date: not a date\r\n\r\n")) is None
    assert sent_date(ParsedMessage.from_bytes(b"Subject: x\r\n\r\n")) is None
