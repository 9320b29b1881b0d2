"""A structured health message (IHE XDM, MSSanté headers and subject) must be what
its sender declares (RFC 3463 §3.7 X.6.0 for a content error)."""

from __future__ import annotations

from policies.context import MessageContext
from policies.decision import ACCEPT, Decision, Reject


def structured_message_is_consistent(context: MessageContext) -> Decision:
    """A structured message must be what it says: a valid XDM package, the CDA type
    codes and INS flag its headers declare, one patient, the patient of its subject."""
    content = context.content
    if content is None or content.structured is None or not content.structured.problems:
        return ACCEPT
    first = content.structured.problems[0]
    more = len(content.structured.problems) - 1
    tail_en = f" (and {more} more)" if more else ""
    tail_fr = f" (et {more} autre{'s' if more > 1 else ''})" if more else ""
    return Reject(554, "5.6.0",
                  f"Inconsistent structured message: {first.code} {first.en}{tail_en}",
                  f"Message structuré incohérent : {first.code} {first.fr}{tail_fr}",
                  "structured_message_is_consistent")
