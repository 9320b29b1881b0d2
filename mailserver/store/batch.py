"""Group commit: many writers, one transaction, one fsync.

Each caller hands a unit of work; a single task runs every unit waiting at that
moment inside one transaction, each in its own SAVEPOINT (one failing unit does
not undo the others), commits once, then wakes each caller with its own result.
A caller is answered only after the COMMIT returned, so a ``250`` that follows
means the data is on disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailserver.store.database import writer

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[Any]]
AfterCommit = Callable[[Any], None]


@dataclass
class _Job:
    work: Work
    future: asyncio.Future[Any]
    after_commit: AfterCommit | None


class StoreClosed(RuntimeError):
    pass


class WriteBatcher:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256) -> None:
        self._engine = writer(engine)
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-writer")

    async def close(self) -> None:
        """Finish every unit already handed in, then stop."""
        self._closing = True
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    async def submit(self, work: Work, after_commit: AfterCommit | None = None) -> Any:
        """Run ``work`` in the next group transaction; return its result once committed.

        ``after_commit`` is called with the result right after the commit, in commit
        order, before the caller wakes (change notifications go there).
        """
        if self._closing:
            raise StoreClosed("the store is shutting down")
        self.start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(work, future, after_commit))
        # Shielded: a caller that goes away (client disconnects) must not cancel a
        # write that is already part of a group transaction.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < self._max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            await self._run_batch(jobs)
            if stop:
                return

    async def _run_batch(self, jobs: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            async with self._engine.connect() as connection:
                transaction = await connection.begin()
                for job in jobs:
                    savepoint = await connection.begin_nested()
                    try:
                        result = await job.work(connection)
                    except Exception as error:  # one unit's failure is its caller's
                        await savepoint.rollback()
                        outcomes.append((job, None, error))
                    else:
                        await savepoint.commit()
                        outcomes.append((job, result, None))
                await transaction.commit()
        except Exception as error:
            log.exception("store: group transaction of %d writes failed", len(jobs))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for job, result, failure in outcomes:
            if failure is None and job.after_commit is not None:
                try:
                    job.after_commit(result)
                except Exception:
                    log.exception("store: after-commit hook failed")
            if job.future.done():
                continue
            if failure is not None:
                job.future.set_exception(failure)
            else:
                job.future.set_result(result)
