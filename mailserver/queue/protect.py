"""Where outgoing messages are S/MIME-protected before DKIM signing and queuing."""

from __future__ import annotations


def protect_outgoing(raw: bytes, sender: str, recipients: list[str]) -> bytes:
    """The message as it must leave this server for ``recipients``.

    Returns ``raw`` unchanged for now: the S/MIME issue plugs in here (sign, then
    encrypt for the recipients whose certificate the directory holds, or always
    by policy), so that the pipeline's order stays protect → DKIM-sign → queue.
    """
    return raw
