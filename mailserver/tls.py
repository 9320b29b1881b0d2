"""TLS contexts for the listeners (RFC 8314, RFC 7525 / BCP 195 settings)."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996: no TLS 1.0 / 1.1
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS")
    context.load_cert_chain(cert, key)
    return context


def relay_server_context(cert: Path, key: Path, anchors_pem: str) -> ssl.SSLContext:
    """Port 25: like ``server_context``, and asks the peer operator for its client
    certificate, verified against the trust anchors (mutual TLS of the trust
    space). A peer without a certificate still completes the handshake; the
    pipeline then refuses it at MAIL FROM with a clear reply."""
    context = server_context(cert, key)
    if anchors_pem:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=anchors_pem)
    return context
