"""The outbound queue's guarantees, on SQLite and PostgreSQL: what is queued is
never lost (a worker that dies after claiming loses its lease, another takes
over), a worker whose lease was lost cannot overwrite the new owner's record,
and queuing is atomic with the local copies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from mailserver.queue.outbound import OutboundQueue, OutboundRecipient, Result
from mailserver.store import Store
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade


async def _open(database_url: str) -> tuple[Store, OutboundQueue]:
    engine = create_engine(database_url)
    await upgrade(engine)
    store = Store(engine)
    return store, OutboundQueue(store, engine.dialect.name)


async def _close(store: Store) -> None:
    await store.close()
    await store._engine.dispose()


def test_lease_expiry_hands_the_message_to_another_worker(database_url: str) -> None:
    async def go() -> None:
        store, queue = await _open(database_url)
        try:
            work = queue.enqueue_work(
                queue_id="Q1", mail_from="a@sante-a.example", data=b"Subject: x\r\n\r\nx\r\n",
                recipients=[OutboundRecipient("b@sante-b.example"),
                            OutboundRecipient("c@sante-b.example")],
            )
            await store.deliver([], b"", also=work)
            slow = await queue.claim("slow-worker", 10, lease_seconds=0.3)
            await queue.renew("slow-worker", [c.id for c in slow], 0.3)  # still working
            await asyncio.sleep(0.2)
            await queue.renew("slow-worker", [c.id for c in slow], 0.3)
            await asyncio.sleep(0.2)  # past the first lease, within the renewed one
            assert await queue.claim("other", 10, lease_seconds=60) == []
            await asyncio.sleep(0.4)
            first = await queue.claim("crashed-worker", 10, lease_seconds=0.3)
            assert sorted(c.recipient for c in first) == ["b@sante-b.example",
                                                           "c@sante-b.example"]
            assert await queue.claim("other", 10, lease_seconds=60) == []  # leased
            await asyncio.sleep(0.4)  # the first worker died: its lease runs out
            second = await queue.claim("other", 10, lease_seconds=60)
            assert sorted(c.id for c in second) == sorted(c.id for c in first)
            # The dead worker's late record is ignored; the owner's counts.
            await queue.record("crashed-worker", [Result(c.id, "delivered") for c in first])
            assert len(await queue.entries()) == 2
            await queue.record("other", [
                Result(second[0].id, "delivered"),
                Result(second[1].id, "deferred", "451 4.4.2 later", time.time() + 60),
            ])
            [left] = await queue.entries()
            assert (left.attempts, left.last_reply) == (1, "451 4.4.2 later")
            assert await queue.claim("other", 10, 60) == []  # not due yet
            await queue.hold(left.id)
            await queue.retry(left.id)
            [again] = await queue.claim("other", 10, 60)
            assert again.id == left.id
            await queue.record("other", [Result(again.id, "failed", "550 5.1.1 no")])
            assert await queue.entries() == []
        finally:
            await _close(store)

    asyncio.run(go())


def test_queue_rows_commit_with_the_local_copies_or_not_at_all(tmp_path: Path) -> None:
    async def go() -> None:
        store, queue = await _open(f"sqlite+aiosqlite:///{tmp_path / 'q.sqlite3'}")
        try:
            work = queue.enqueue_work(
                queue_id="Q2", mail_from="a@sante-a.example", data=b"x",
                recipients=[OutboundRecipient("b@sante-b.example")],
            )
            # The local part fails (no such mailbox): nothing is queued either.
            with pytest.raises(IntegrityError):
                await store.deliver([999_999], b"Subject: y\r\n\r\ny\r\n", also=work)
            assert await queue.entries() == []
        finally:
            await _close(store)

    asyncio.run(go())


def test_queued_messages_are_sealed_and_bound_to_their_row(database_url: str,
                                                            tmp_path: Path) -> None:
    """With encryption at rest, the queue stores ciphertext; a data key moved to
    another row does not open it, and such a row does not hold the others back."""
    from sqlalchemy import text

    from mailserver.store import crypto
    from mailserver.store.vault import Vault

    async def go() -> None:
        engine = create_engine(database_url)
        await upgrade(engine)
        key_file = tmp_path / "master.key"
        crypto.create_master_key(key_file)
        store = Store(engine, vault=Vault(crypto.load_master_key(key_file), engine.dialect.name))
        queue = OutboundQueue(store, engine.dialect.name)
        try:
            for queue_id in ("QA", "QB"):
                body = f"Subject: {queue_id}\r\n\r\nRésultat confidentiel {queue_id}\r\n"
                await store.deliver([], b"", also=queue.enqueue_work(
                    queue_id=queue_id, mail_from="a@sante-a.example", data=body.encode(),
                    recipients=[OutboundRecipient(f"{queue_id.lower()}@sante-b.example")],
                ))
            async with engine.connect() as connection:
                rows = {r.queue_id: r for r in (await connection.execute(text(
                    "SELECT queue_id, data, data_key FROM queue_messages"))).all()}
            assert all(b"confidentiel" not in bytes(r.data) for r in rows.values())
            claimed = {c.queue_id: c for c in await queue.claim("w", 10, 60)}
            assert claimed["QA"].data == "Subject: QA\r\n\r\nRésultat confidentiel QA\r\n".encode()
            [entry, _] = await queue.entries()
            assert entry.size == len(claimed["QA"].data or b"")
            # QB's key given to QA: it does not authenticate.
            async with engine.begin() as connection:
                await connection.execute(text(
                    "UPDATE queue_messages SET data_key = :key WHERE queue_id = 'QA'"),
                    {"key": bytes(rows["QB"].data_key)})
            async with engine.begin() as connection:  # the first worker's lease ends
                await connection.execute(text("UPDATE queue_recipients SET lease_until = NULL"))
            again = {c.queue_id: c for c in await queue.claim("w2", 10, 60)}
            assert again["QA"].data is None and again["QB"].data is not None
            with pytest.raises(crypto.CryptoError, match="does not authenticate"):
                await queue.data(again["QA"].message_pk)
        finally:
            await _close(store)

    asyncio.run(go())
