"""Rules on attachments, by what their bytes are, never by their declared type.

Codes: RFC 3463 §3.7 X.6.0 other media error, X.6.1 media not supported; §3.8 X.7.1
delivery not authorized (a dangerous attachment); §3.4 X.3.4 message too big.
"""

from __future__ import annotations

from policies.context import MessageContext
from policies.decision import ACCEPT, Decision, Reject


def mime_structure_is_bounded(context: MessageContext) -> Decision:
    content = context.content
    if content is None or content.problem is None:
        return ACCEPT
    found = content.problem
    return Reject(554, "5.6.0", f"{found.en} ({found.code})", f"{found.fr} ({found.code})",
                  "mime_structure_is_bounded")


def attachments_are_safe(context: MessageContext) -> Decision:
    """Never an executable, a script or a macro document, whatever its name or type;
    never an archive that could not be checked (zip bomb, nested too deep)."""
    content = context.content
    if content is None:
        return ACCEPT
    rule = "attachments_are_safe"
    for attachment in content.attachments:
        name = attachment.filename or attachment.declared_type
        if attachment.dangerous:
            return Reject(554, "5.7.1",
                          f"Attachment {name} refused: {attachment.dangerous}",
                          f"Pièce jointe {name} refusée : contenu exécutable "
                          f"({attachment.dangerous})", rule)
        if attachment.problem is not None:
            found = attachment.problem
            return Reject(554, "5.7.1" if found.code.startswith("ZIP-") else "5.6.0",
                          f"Attachment {name} refused: {found.en} ({found.code})",
                          f"Pièce jointe {name} refusée : {found.fr} ({found.code})", rule)
    return ACCEPT


def attachments_are_allowed(context: MessageContext) -> Decision:
    """Only the kinds the operator allows, each within the size limit."""
    content = context.content
    if content is None or content.policy is None:
        return ACCEPT
    policy = content.policy
    rule = "attachments_are_allowed"
    if len(content.attachments) > policy.max_count:
        return Reject(554, "5.6.0", f"More than {policy.max_count} attachments",
                      f"Plus de {policy.max_count} pièces jointes", rule)
    for attachment in content.attachments:
        name = attachment.filename or attachment.declared_type
        if attachment.size > policy.max_size:
            return Reject(552, "5.3.4",
                          f"Attachment {name} is larger than {policy.max_size} bytes",
                          f"La pièce jointe {name} dépasse {policy.max_size} octets", rule)
        if attachment.kind not in policy.allowed:
            allowed = ", ".join(sorted(policy.allowed))
            return Reject(554, "5.6.1",
                          f"Attachment {name}: type {attachment.kind} not allowed "
                          f"(allowed: {allowed})",
                          f"Pièce jointe {name} : type {attachment.kind} non autorisé "
                          f"(autorisés : {allowed})", rule)
    return ACCEPT
