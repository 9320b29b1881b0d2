"""What a delivered message does to its thread (a pure decision the pipeline applies).

- A professional opens a thread by writing to one or more patients.
- A professional's message in a thread adds its recipients as participants and
  closes the thread with ``X-MSS-MES: FIN``, or (re)opens it without.
- A patient's reply joins the thread and changes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.context import MessageContext, PartyKind


@dataclass(frozen=True)
class ThreadEffect:
    thread_id: int | None  # None: open a new thread
    opened_by: str | None
    add_participants: frozenset[str]
    status: str | None  # "open" | "closed" | None (unchanged)
    closed_by: str | None = None


def closes_thread(context: MessageContext) -> bool:
    value = context.header("x-mss-mes")
    return value is not None and value.strip().upper() == "FIN"


def thread_effect(context: MessageContext) -> ThreadEffect | None:
    author = context.author
    if author is None:
        return None
    if author.kind is PartyKind.PATIENT:
        if context.thread is None:
            return None
        return ThreadEffect(context.thread.id, None, frozenset(), None)
    if author.kind is not PartyKind.PROFESSIONAL:
        return None
    everyone = (*context.recipients, *context.header_recipients)
    participants = frozenset({author.address, *(p.address for p in everyone)})
    fin = closes_thread(context)
    status = "closed" if fin else "open"
    closed_by = author.address if fin else None
    if context.thread is not None:
        return ThreadEffect(context.thread.id, None, participants, status, closed_by)
    if any(p.kind is PartyKind.PATIENT for p in everyone):
        return ThreadEffect(None, author.address, participants, status, closed_by)
    return None
