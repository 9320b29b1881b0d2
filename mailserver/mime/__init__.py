"""Pure, I/O-free message parsing for IMAP FETCH, SEARCH, SORT and THREAD (and the webmail).

Modules:
- `parse`: `ParsedMessage.from_bytes`, a bounded, never-raising MIME tree keeping byte offsets.
- `fetch`: ENVELOPE, BODY/BODYSTRUCTURE, BODY[section], BINARY[section] (RFC 9051 §7.5.2,
  RFC 3501 §7.4.2, RFC 3516).
- `search`: decoded header/body text and date helpers for SEARCH (RFC 9051 §6.4.4).
- `threading`: RFC 5256 base subject, SORT keys, THREAD=ORDEREDSUBJECT / REFERENCES.
- `imap_format`: IMAP string syntax (quoted, literal, nstring, astring, lists).
- `addresses`, `headers`, `encoded_words`: RFC 5322 / RFC 2045 / RFC 2047 building blocks.

Imports only the standard library.
"""
