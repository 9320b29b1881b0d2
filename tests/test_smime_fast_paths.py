"""The shortcuts taken for speed on the S/MIME hot path give exactly what the plain
code gives: canonical form, base64 both ways, per-object caches of certificate parts."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.pki.local_ca import create_ca
from mailserver.smime import der, mime, signed


def _reference_canonical(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


@given(st.binary(max_size=64).map(lambda b: b.translate(bytes.maketrans(b"\x00\x01", b"\r\n"))))
@settings(max_examples=2000)
def test_canonical_check_agrees_with_the_definition(data: bytes) -> None:
    # RFC 8551 §3.1.1: canonical iff converting every line end to CRLF changes nothing.
    assert mime.is_canonical(data) == (_reference_canonical(data) == data)
    assert mime.canonical(data) == _reference_canonical(data)


_BASE64_ALPHABET = st.sampled_from(list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        b"0123456789+/=\r\n\t !-_\x00\xff"))


def _outcome(function: object, data: bytes) -> bytes | str:
    try:
        return function(data)  # type: ignore[operator, no-any-return]
    except binascii.Error:
        return "error"


@given(st.lists(_BASE64_ALPHABET, max_size=40).map(bytes))
@settings(max_examples=3000)
def test_base64_decoding_agrees_with_binascii(data: bytes) -> None:
    """RFC 2045 §6.8 as binascii reads it, hostile input included (data after padding,
    characters outside the alphabet)."""
    assert _outcome(mime.base64_decode, data) == _outcome(binascii.a2b_base64, data)


@given(st.binary(max_size=400))
def test_base64_lines_are_76_characters_with_crlf(data: bytes) -> None:
    encoded = mime._base64_lines(data)
    lines = encoded.split(b"\r\n")
    assert lines[-1] == b"" and all(len(line) <= 76 for line in lines)
    assert all(len(line) == 76 for line in lines[:-2])
    assert encoded.replace(b"\r\n", b"") == base64.b64encode(data)
    assert mime.base64_decode(encoded) == data


def test_certificate_parts_follow_each_object() -> None:
    """Cached by object identity: two certificates never share an entry, and the parts
    are those of the certificate (DER, RFC 5652 §10.2.4 IssuerAndSerialNumber)."""
    first = create_ca("Premiere AC", "a.example")[1]
    second = create_ca("Seconde AC", "b.example")[1]
    for certificate in (first, second, first):
        encoded, issuer_and_serial = signed.certificate_parts(certificate)
        assert encoded == certificate.public_bytes(serialization.Encoding.DER)
        assert issuer_and_serial == der.sequence(certificate.issuer.public_bytes(),
                                                 der.integer(certificate.serial_number))
