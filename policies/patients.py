"""The patient rule of Mon Espace Santé: a patient only replies, inside a thread a
professional opened and has not closed, to the professionals of that thread."""

from __future__ import annotations

from policies.context import Door, MessageContext, PartyKind, RecipientContext, SenderContext
from policies.decision import ACCEPT, Decision, Reject

OPEN = "open"


def _refuse(reason_en: str, reason_fr: str, rule: str, code: int = 550,
            status: str = "5.7.1") -> Reject:
    return Reject(code, status, reason_en, reason_fr, rule)


def patient_sends_through_submission(context: SenderContext) -> Decision:
    """A patient's address as envelope sender from another server is a forgery:
    patients send only after logging in here."""
    if context.door is Door.RELAY and context.sender is not None and (
        context.sender.kind is PartyKind.PATIENT
    ):
        return _refuse(
            "Patient addresses of this server send only through authenticated submission",
            "Les adresses patients de ce serveur n'envoient qu'après authentification",
            "patient_sends_through_submission",
        )
    return ACCEPT


def patient_writes_only_to_professionals(context: RecipientContext) -> Decision:
    """Envelope alone: a patient never writes to a patient (nor to anyone remote,
    which the relay rule already refuses)."""
    author = context.sender.authenticated or context.sender.sender
    if author is None or author.kind is not PartyKind.PATIENT:
        return ACCEPT
    if context.recipient.kind is PartyKind.PATIENT:
        return _refuse(
            "A patient may not write to another patient",
            "Un patient ne peut pas écrire à un autre patient",
            "patient_writes_only_to_professionals",
        )
    return ACCEPT


def patient_space_is_open(context: RecipientContext) -> Decision:
    """Nobody writes to a patient whose space is closed or opposed."""
    recipient = context.recipient
    if recipient.kind is PartyKind.PATIENT and recipient.patient_status not in (None, OPEN):
        return _refuse(
            f"The patient's space <{recipient.address}> is {recipient.patient_status}",
            f"L'espace santé du patient <{recipient.address}> est "
            f"{'fermé' if recipient.patient_status == 'closed' else 'en opposition'}",
            "patient_space_is_open", status="5.1.1",
        )
    return ACCEPT


def patient_replies_within_thread(context: MessageContext) -> Decision:
    author = context.author
    if author is None or author.kind is not PartyKind.PATIENT:
        return ACCEPT
    rule = "patient_replies_within_thread"
    if author.patient_status not in (None, OPEN):
        return _refuse("Your space is closed or opposed: sending is not possible",
                       "Votre espace est fermé ou en opposition : l'envoi est impossible", rule)
    if context.has_bcc:
        return _refuse("A patient may not add hidden (Bcc) recipients",
                       "Un patient ne peut pas ajouter de destinataires cachés (Cci)", rule)
    thread = context.thread
    if thread is None:
        return _refuse(
            "A patient may only reply to a message a professional sent them",
            "Un patient peut seulement répondre à un message qu'un professionnel lui a envoyé",
            rule,
        )
    if not thread.open:
        return _refuse("The professional has closed this conversation to replies",
                       "Le professionnel a clos cette conversation aux réponses", rule)
    for party in (*context.recipients, *context.header_recipients):
        if party.address == author.address and party in context.header_recipients:
            continue  # the patient's own address in To/Cc of a reply-all
        if party.kind is PartyKind.PATIENT:
            return _refuse("A patient may not write to another patient",
                           "Un patient ne peut pas écrire à un autre patient", rule)
        if party.address not in thread.participants:
            return _refuse(
                f"<{party.address}> did not take part in this conversation",
                f"<{party.address}> ne participe pas à cette conversation",
                rule,
            )
    return ACCEPT
