"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), for IMAP4rev1 clients.

IMAP4rev2 and UTF8=ACCEPT sessions use UTF-8 names (RFC 9051 §5.1, RFC 6855 §3).
"""

from __future__ import annotations

import base64


class BadEncoding(ValueError):
    pass


def encode(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
                       + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(name):
        char = name[index]
        if char != "&":
            if not 0x20 <= ord(char) <= 0x7E:
                raise BadEncoding("8-bit characters in a modified UTF-7 name")
            out.append(char)
            index += 1
            continue
        end = name.find("-", index)
        if end < 0:
            raise BadEncoding("unterminated '&' sequence")
        chunk = name[index + 1:end]
        if not chunk:
            out.append("&")
        else:
            text = chunk.replace(",", "/")
            try:
                raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
                out.append(raw.decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError) as error:
                raise BadEncoding("invalid modified UTF-7") from error
        index = end + 1
    return "".join(out)
