"""Rules the envelope alone decides: sender ownership, known recipients, no relaying."""

from __future__ import annotations

from policies.context import Door, PartyKind, RecipientContext, SenderContext
from policies.decision import ACCEPT, Decision, Reject


def sender_owned_by_login(context: SenderContext) -> Decision:
    """On submission, MAIL FROM must be the authenticated mailbox's own address."""
    if context.door is not Door.SUBMISSION:
        return ACCEPT
    login = context.authenticated
    if login is None:  # the SMTP layer asks for AUTH before this
        return Reject(530, "5.7.0", "Authentication required", "Authentification requise",
                      "sender_owned_by_login")
    if context.mail_from.lower() != login.address:
        return Reject(
            553, "5.7.1",
            f"Sender <{context.mail_from}> is not owned by {login.address}",
            f"L'expéditeur <{context.mail_from}> n'appartient pas à {login.address}",
            "sender_owned_by_login",
        )
    return ACCEPT


def recipient_is_known(context: RecipientContext) -> Decision:
    """A recipient in one of our domains must be an existing, open mailbox."""
    recipient = context.recipient
    if recipient.kind is PartyKind.LOCAL_UNKNOWN or (recipient.is_local and not recipient.active):
        return Reject(
            550, "5.1.1",
            f"No such mailbox <{recipient.address}> here",
            f"Boîte aux lettres <{recipient.address}> inconnue",
            "recipient_is_known",
        )
    return ACCEPT


def local_delivery_only(context: RecipientContext) -> Decision:
    """No relaying: until the trust space exists, only local mailboxes receive mail."""
    recipient = context.recipient
    if recipient.kind is PartyKind.REMOTE:
        return Reject(
            550, "5.7.1",
            f"Relaying denied: {recipient.domain} is not a domain of this server "
            "and relaying between operators is not enabled",
            f"Relais refusé : {recipient.domain} n'est pas un domaine de ce serveur "
            "et le relais entre opérateurs n'est pas activé",
            "local_delivery_only",
        )
    return ACCEPT
