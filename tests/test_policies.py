"""The rules alone: pure functions of plain contexts (no server, no database)."""

from __future__ import annotations

import policies
from policies.context import (
    Door,
    MessageContext,
    Party,
    PartyKind,
    RecipientContext,
    SenderContext,
    ThreadState,
)
from policies.decision import Accept, Reject
from policies.threads import thread_effect

DOC = Party("doc@h.example", PartyKind.PROFESSIONAL, 1, "PER", True)
NURSE = Party("nurse@h.example", PartyKind.PROFESSIONAL, 2, "PER", True)
PAT = Party("p1@pat.example", PartyKind.PATIENT, 3, "PAT", True, "open")
PAT2 = Party("p2@pat.example", PartyKind.PATIENT, 4, "PAT", True, "open")
REMOTE = Party("x@remote.example", PartyKind.REMOTE)


def submission(author: Party) -> SenderContext:
    return SenderContext(Door.SUBMISSION, author, author.address, author)


def message(author: Party, *recipients: Party, thread: ThreadState | None = None,
            headers: dict[str, tuple[str, ...]] | None = None,
            header_recipients: tuple[Party, ...] = (), bcc: bool = False) -> MessageContext:
    return MessageContext(submission(author), recipients, headers or {}, header_recipients,
                          bcc, thread)


OPEN_THREAD = ThreadState(7, True, DOC.address, frozenset({DOC.address, PAT.address}))


def test_every_refusal_names_its_rule_with_both_languages() -> None:
    decision = policies.decide_message(message(PAT, DOC))
    assert isinstance(decision, Reject)
    assert decision.rule == "patient_replies_within_thread"
    assert decision.reason_en and decision.reason_fr and decision.reason_en != decision.reason_fr
    assert decision.smtp_reply().startswith("550 5.7.1 ")


def test_patient_in_open_thread_to_its_professional() -> None:
    assert isinstance(policies.decide_message(message(PAT, DOC, thread=OPEN_THREAD)), Accept)


def test_patient_refusals() -> None:
    closed = ThreadState(7, False, DOC.address, OPEN_THREAD.participants)
    cases = {
        "no thread": message(PAT, DOC),
        "closed": message(PAT, DOC, thread=closed),
        "bcc": message(PAT, DOC, thread=OPEN_THREAD, bcc=True),
        "stranger": message(PAT, DOC, NURSE, thread=OPEN_THREAD),
        "stranger in Cc": message(PAT, DOC, thread=OPEN_THREAD, header_recipients=(NURSE,)),
        "patient in Cc": message(PAT, DOC, thread=OPEN_THREAD, header_recipients=(PAT2,)),
        "remote": message(PAT, REMOTE, thread=OPEN_THREAD),
        "space closed": message(Party(PAT.address, PartyKind.PATIENT, 3, "PAT", True, "closed"),
                                DOC, thread=OPEN_THREAD),
    }
    for name, context in cases.items():
        assert isinstance(policies.decide_message(context), Reject), name


def test_recipient_stage() -> None:
    def rcpt(author: Party, recipient: Party) -> object:
        return policies.decide_recipient(RecipientContext(submission(author), recipient))

    assert isinstance(rcpt(PAT, PAT2), Reject)
    assert isinstance(rcpt(PAT, DOC), Accept)
    opposed = Party(PAT2.address, PartyKind.PATIENT, 4, "PAT", True, "opposed")
    decision = rcpt(DOC, opposed)
    assert isinstance(decision, Reject) and decision.status == "5.1.1"
    assert isinstance(rcpt(DOC, REMOTE), Reject)
    unknown = Party("ghost@h.example", PartyKind.LOCAL_UNKNOWN)
    decision = rcpt(DOC, unknown)
    assert isinstance(decision, Reject) and decision.status == "5.1.1"


def test_sender_stage() -> None:
    forged = SenderContext(Door.SUBMISSION, DOC, NURSE.address, NURSE)
    assert isinstance(policies.decide_sender(forged), Reject)
    relay_as_patient = SenderContext(Door.RELAY, None, PAT.address, PAT)
    assert isinstance(policies.decide_sender(relay_as_patient), Reject)
    relay = SenderContext(Door.RELAY, None, REMOTE.address, REMOTE)
    assert isinstance(policies.decide_sender(relay), Accept)


def test_thread_effects() -> None:
    opening = thread_effect(message(DOC, PAT))
    assert opening is not None and opening.thread_id is None
    assert opening.add_participants == {DOC.address, PAT.address}
    assert opening.status == "open" and opening.opened_by == DOC.address
    fin = thread_effect(message(DOC, PAT, thread=OPEN_THREAD, headers={"x-mss-mes": (" fin ",)}))
    assert fin is not None and (fin.thread_id, fin.status, fin.closed_by) == (7, "closed",
                                                                              DOC.address)
    reply = thread_effect(message(PAT, DOC, thread=OPEN_THREAD))
    assert reply is not None and reply.status is None and not reply.add_participants
    assert thread_effect(message(DOC, NURSE)) is None  # no patient: no thread
