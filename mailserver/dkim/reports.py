"""Reports this server writes (DSN, MDN) leave DKIM-signed like any outgoing message
(RFC 6376 §1.1: the signing domain vouches for it): they come from MAILER-DAEMON at
our host name, and are signed with the key of the local domain that host is in."""

from __future__ import annotations

from collections.abc import Sequence

from mailserver.dkim.signer import DkimSigner


def report_domain(hostname: str, domains: Sequence[str]) -> str | None:
    """The local domain the reports' host name belongs to (``mx.sante-b.example`` →
    ``sante-b.example``), the longest if several; else our first domain."""
    host = hostname.lower().rstrip(".")
    matching = [d.lower() for d in domains
                if host == d.lower() or host.endswith("." + d.lower())]
    if matching:
        return max(matching, key=len)
    return domains[0].lower() if domains else None


def sign_report(signer: DkimSigner | None, report: bytes, hostname: str,
                domains: Sequence[str]) -> bytes:
    """``report`` with our DKIM-Signature, or unchanged without a signer or key."""
    domain = report_domain(hostname, domains)
    if signer is None or domain is None:
        return report
    return signer.sign(report, domain)
