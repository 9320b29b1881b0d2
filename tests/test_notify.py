"""Change notifications reach watchers in this process and in the other worker
processes sharing the data directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailserver.store.notify import ChangeBus, FolderChange


async def test_change_reaches_watchers_here_and_in_peer_buses(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first, second, third = ChangeBus(), ChangeBus(), ChangeBus()
    for bus in (first, second, third):
        bus.join_peers(run)
    try:
        here = first.subscribe(7)
        there = second.subscribe(7)
        elsewhere = third.subscribe(8)  # another folder: hears nothing
        first.publish(FolderChange(7, "exists", (41, 42), 99))
        assert here.take() and here.last == FolderChange(7, "exists", (41, 42), 99)
        assert await asyncio.wait_for(there.wait(), 2) == FolderChange(7, "exists", (41, 42), 99)
        await asyncio.sleep(0.05)
        assert not elsewhere.changed
        # A huge expunge travels as "re-read the folder" rather than being lost.
        first.publish(FolderChange(7, "expunge", tuple(range(1, 20_000)), 100))
        change = await asyncio.wait_for(there.wait(), 2)
        assert change is not None and change.uids == ()
    finally:
        for bus in (first, second, third):
            bus.close()
    assert list(run.glob("bus-*.sock")) == []


async def test_gone_peer_is_forgotten_and_garbage_is_ignored(tmp_path: Path) -> None:
    import socket

    run = tmp_path / "run"
    alive, gone = ChangeBus(), ChangeBus()
    alive.join_peers(run)
    gone.join_peers(run)
    watcher = alive.subscribe(1)
    stale = next(p for p in run.glob("bus-*.sock") if p != alive._path)
    gone._socket.close()  # type: ignore[union-attr]  # dies without cleaning up
    gone._socket = None
    alive.publish(FolderChange(1, "flags", (3,), 5))
    assert not stale.exists()  # refused once, then removed
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as intruder:
        intruder.sendto(b"\xff not json", str(alive._path))
        intruder.sendto(b'{"f": 1, "k": "drop table", "u": [], "m": 1}', str(alive._path))
    await asyncio.sleep(0.05)
    assert watcher.take() and watcher.last is not None and watcher.last.kind == "flags"
    assert not watcher.changed
    alive.close()
