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


def remote_only_within_trust_space(context: RecipientContext) -> Decision:
    """Remote recipients: never through port 25 (no open relay, RFC 5321 §3.9),
    never from a patient, and only in a domain of the operators' trust space."""
    recipient = context.recipient
    if recipient.kind is not PartyKind.REMOTE:
        return ACCEPT
    if context.sender.door is Door.RELAY:
        return Reject(
            550, "5.7.1",
            f"Relaying denied: {recipient.domain} is not a domain of this server",
            f"Relais refusé : {recipient.domain} n'est pas un domaine de ce serveur",
            "remote_only_within_trust_space",
        )
    author = context.sender.authenticated or context.sender.sender
    if author is not None and author.kind is PartyKind.PATIENT:
        return Reject(
            550, "5.7.1",
            "A patient writes only to the professionals of this server",
            "Un patient n'écrit qu'aux professionnels de ce serveur",
            "remote_only_within_trust_space",
        )
    if not recipient.trusted:
        return Reject(
            550, "5.7.1",
            f"{recipient.domain} is not in the trust space (operators' white list)",
            f"{recipient.domain} n'est pas dans l'espace de confiance (liste blanche)",
            "remote_only_within_trust_space",
        )
    return ACCEPT


def relay_peer_in_trust_space(context: SenderContext) -> Decision:
    """Port 25 is the trust space's door: a client certificate whose DN is the
    sending domain's DNCertificatOperateur, checked before DATA."""
    peer = context.peer
    if context.door is not Door.RELAY or peer is None or not peer.required:
        return ACCEPT
    if not peer.certificate:
        return Reject(
            530, "5.7.0",
            "Operator certificate required: STARTTLS with the client certificate "
            "of an operator of the trust space",
            "Certificat d'opérateur requis : STARTTLS avec le certificat client d'un "
            "opérateur de l'espace de confiance",
            "relay_peer_in_trust_space",
        )
    domain = context.mail_from.rpartition("@")[2].lower()
    if not peer.sender_listed:
        return Reject(
            550, "5.7.1", f"{domain} is not in the trust space",
            f"{domain} n'est pas dans l'espace de confiance", "relay_peer_in_trust_space",
        )
    if not peer.dn_matches:
        where = domain or "any operator"
        return Reject(
            550, "5.7.1",
            f"Certificate {peer.subject} is not the operator certificate of {where}: "
            "not in the trust space",
            f"Le certificat {peer.subject} n'est pas celui de l'opérateur de {where} : "
            "hors de l'espace de confiance",
            "relay_peer_in_trust_space",
        )
    return ACCEPT
