"""Pure, I/O-free message parsing for IMAP FETCH, SEARCH, SORT and THREAD (and the webmail).

Imports only the standard library. Modules:

- `parse`: `ParsedMessage.from_bytes(raw)`, a MIME tree over the original bytes (offsets, so
  sections come back verbatim). Never raises; bounded (`MAX_DEPTH` 64 levels, `MAX_PARTS`
  10,000 entities); linear time (delimiters found by the regex engine).
- `fetch`: `envelope`, `body_structure`, `section`, `binary`, `binary_size`,
  `UnknownTransferEncoding`, `resolve_part`, `decode_content`.
- `search`: `header_text`, `body_text`, `full_text`, `contains`, `sent_date`.
- `threading`: `base_subject`, `SortItem` / `sort_key` / `sort_messages`, `ThreadItem` /
  `thread_item`, `thread_orderedsubject`, `thread_references`, `Thread`, `format_threads`.
- `imap_format`: `quoted`, `literal`, `nstring`, `astring`, `paren_list`.
- `addresses`, `headers`, `encoded_words`: RFC 5322 / RFC 2045 / RFC 2047 building blocks.

What is implemented, and how far: see README.md beside this file.
"""
