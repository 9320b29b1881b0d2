"""IMAP string syntax (RFC 9051 §4.3) as the protocol engine writes it on the wire."""

from __future__ import annotations

from mailserver.mime.imap_format import astring, literal, nstring, paren_list, quoted


def test_quoted_escapes_backslash_and_dquote() -> None:
    assert quoted(b"plain") == b'"plain"'
    assert quoted(b'say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert quoted(b"") == b'""'


def test_quoted_falls_back_to_literal_for_cr_lf_nul() -> None:
    assert quoted(b"a\r\nb") == b"{4}\r\na\r\nb"


def test_nul_never_reaches_the_wire() -> None:
    # NUL is allowed in no IMAP string, not even a literal: Dovecot's 0x80 stands in for it
    assert quoted(b"a\x00b") == b"{3}\r\na\x80b"
    assert quoted(b"a\x00b", utf8=True) == b"{3}\r\na\x80b"
    assert quoted(b"a\x00\r\n") == b"{4}\r\na\x80\r\n"


def test_quoted_eight_bit_needs_utf8_accept() -> None:
    value = "été".encode()
    assert quoted(value) == b"{5}\r\n" + value
    assert quoted(value, utf8=True) == b'"' + value + b'"'
    # invalid UTF-8 never goes in a quoted string, even with UTF8=ACCEPT
    assert quoted(b"\xe9t\xe9", utf8=True) == b"{3}\r\n\xe9t\xe9"


def test_nstring() -> None:
    assert nstring(None) == b"NIL"
    assert nstring(b"NIL") == b'"NIL"'
    assert nstring("é".encode(), utf8=True) == b'"\xc3\xa9"'


def test_astring_atom_or_quoted() -> None:
    assert astring(b"INBOX") == b"INBOX"
    assert astring(b"Sent]") == b"Sent]"  # resp-specials are ASTRING-CHARs
    assert astring(b"My Folder") == b'"My Folder"'
    assert astring(b"a*b") == b'"a*b"'
    assert astring(b"") == b'""'
    assert astring(b"{5}") == b'"{5}"'
    assert astring(b"x\ny") == b"{3}\r\nx\ny"


def test_literal_and_literal8() -> None:
    assert literal(b"hello") == b"{5}\r\nhello"
    assert literal(b"\x00\x01", binary=True) == b"~{2}\r\n\x00\x01"
    assert literal(b"") == b"{0}\r\n"


def test_paren_list() -> None:
    assert paren_list([b"A", b"B"]) == b"(A B)"
    assert paren_list([]) == b"()"
    assert paren_list(x for x in [b'"x"']) == b'("x")'
