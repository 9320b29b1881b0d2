"""Pure rules: ``(context) -> Decision``. No I/O, no SQL, nothing of mailserver.

The pipeline resolves the context and calls the three stages below; each stage
runs its rules in order and the first refusal wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from policies.attachments import (
    attachments_are_allowed,
    attachments_are_safe,
    mime_structure_is_bounded,
)
from policies.context import MessageContext, RecipientContext, SenderContext
from policies.decision import ACCEPT, Accept, Decision, Reject
from policies.envelope import (
    recipient_is_known,
    relay_peer_in_trust_space,
    remote_only_within_trust_space,
    sender_owned_by_login,
)
from policies.patients import (
    patient_replies_within_thread,
    patient_sends_through_submission,
    patient_space_is_open,
    patient_writes_only_to_professionals,
)
from policies.structured import structured_message_is_consistent

C = TypeVar("C")
Rule = Callable[[C], Decision]

SENDER_RULES: tuple[Rule[SenderContext], ...] = (
    sender_owned_by_login,
    relay_peer_in_trust_space,
    patient_sends_through_submission,
)
RECIPIENT_RULES: tuple[Rule[RecipientContext], ...] = (
    recipient_is_known,
    remote_only_within_trust_space,
    patient_writes_only_to_professionals,
    patient_space_is_open,
)
MESSAGE_RULES: tuple[Rule[MessageContext], ...] = (
    patient_replies_within_thread,
    mime_structure_is_bounded,
    attachments_are_safe,
    attachments_are_allowed,
    structured_message_is_consistent,
)


def _first_refusal(rules: Sequence[Rule[C]], context: C) -> Decision:
    for rule in rules:
        decision = rule(context)
        if isinstance(decision, Reject):
            return decision
    return ACCEPT


def decide_sender(context: SenderContext) -> Decision:
    return _first_refusal(SENDER_RULES, context)


def decide_recipient(context: RecipientContext) -> Decision:
    return _first_refusal(RECIPIENT_RULES, context)


def decide_message(context: MessageContext) -> Decision:
    return _first_refusal(MESSAGE_RULES, context)


__all__ = [
    "ACCEPT", "Accept", "Decision", "Reject",
    "decide_message", "decide_recipient", "decide_sender",
]
