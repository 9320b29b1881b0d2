"""IDLE at scale: many sessions of one folder, woken once what changed is ready."""

from __future__ import annotations

import asyncio
import smtplib

from mailserver.store.notify import PREPARE_FROM, ChangeBus, FolderChange
from tests.conftest import ServerThread
from tests.imap_support import ALICE, BOB, PASSWORD, Raw, message


def _idling(server: ServerThread, count: int) -> list[Raw]:
    sessions = []
    for index in range(count):
        raw = Raw(server, tls=True)
        raw.command(f'l LOGIN {ALICE} "{PASSWORD}"'.encode())
        raw.command(b"s SELECT INBOX")
        raw.send(f"i{index} IDLE\r\n".encode())
        assert raw.line().startswith(b"+ ")
        sessions.append(raw)
    return sessions


def test_every_idle_session_of_a_folder_hears_each_delivery(server: ServerThread) -> None:
    server.add_mailbox(ALICE, PASSWORD)
    server.add_mailbox(BOB, PASSWORD)
    sessions = _idling(server, PREPARE_FROM + 4)  # enough for the prepared path
    heard: list[list[bytes]] = [[] for _ in sessions]
    for expected in (1, 2):
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as smtp:
            smtp.sendmail(BOB, [ALICE], message(subject=f"n{expected}"))
        for raw, lines in zip(sessions, heard, strict=True):
            lines.extend(_until(raw, f"* {expected} EXISTS".encode()))
    for index, (raw, lines) in enumerate(zip(sessions, heard, strict=True)):
        raw.send(b"DONE\r\n")
        lines.extend(_until(raw, f"i{index} OK IDLE terminated".encode()))
        assert raw.command(b"f UID FETCH 1:* (FLAGS)")[-1] == b"f OK UID FETCH completed"
    # RFC 3501 §2.3.2: each new message is \Recent for one session only.
    recent = [line for lines in heard for line in lines if line.endswith(b" RECENT")]
    assert len(recent) == 2, recent


def _until(raw: Raw, wanted: bytes) -> list[bytes]:
    """The lines read up to ``wanted`` (which is read too)."""
    lines = []
    while (line := raw.line()) != wanted:
        lines.append(line)
    return lines


def test_own_append_is_reported_before_ok_while_others_idle(server: ServerThread) -> None:
    server.add_mailbox(ALICE, PASSWORD)
    idlers = _idling(server, PREPARE_FROM + 1)
    writer = Raw(server, tls=True)
    writer.command(f'l LOGIN {ALICE} "{PASSWORD}"'.encode())
    writer.command(b"s SELECT INBOX")
    lines = writer.command(b"a APPEND INBOX {12+}\r\nSubject: 1\r\n")
    assert lines[0] == b"* 1 EXISTS" and lines[-1].startswith(b"a OK [APPENDUID")
    for raw in idlers:
        _until(raw, b"* 1 EXISTS")


async def test_bus_prepares_once_then_wakes_the_many() -> None:
    bus = ChangeBus()
    asked: list[tuple[int, int]] = []
    woken_before_ready: list[bool] = []
    ready = asyncio.Event()

    async def prepare(folder_id: int, since: int) -> None:
        asked.append((folder_id, since))
        await ready.wait()

    bus.prepare = prepare
    many = [bus.subscribe(3, since=10) for _ in range(PREPARE_FROM)]
    few = bus.subscribe(4, since=10)
    bus.publish(FolderChange(3, "exists", (11,), 11))
    bus.publish(FolderChange(4, "exists", (11,), 11))
    assert few.changed  # below the threshold: woken at once, nothing prepared
    await asyncio.sleep(0.01)
    woken_before_ready.extend(w.changed for w in many)
    ready.set()
    await asyncio.wait_for(asyncio.gather(*(w.wait() for w in many)), 2)
    assert asked == [(3, 10)] and not any(woken_before_ready)
