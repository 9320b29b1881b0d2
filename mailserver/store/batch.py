"""Group commit: many writers, one transaction, one fsync.

Each caller hands a unit of work (a synchronous function of a SQLAlchemy
``Connection``); a single task runs every unit waiting at that moment inside one
transaction, each in its own SAVEPOINT (one failing unit does not undo the
others), commits once, then wakes each caller with its own result. A caller is
answered only after the COMMIT returned, so a ``250`` that follows means the
data is on disk.

On SQLite the whole group transaction runs in one call on a dedicated writer
thread with its own pysqlite connection (no thread hop per statement); on
PostgreSQL it runs through asyncpg with ``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from mailserver.store.database import sqlite_writer_engine, writer

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[Connection], Any]
AfterCommit = Callable[[Any], None]


@dataclass
class _Job:
    work: Work
    future: asyncio.Future[Any]
    after_commit: AfterCommit | None


_Outcome = tuple[_Job, Any, BaseException | None]


class StoreClosed(RuntimeError):
    pass


class WriteBatcher:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256) -> None:
        self._engine = writer(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        self._sync_engine = sqlite_writer_engine(engine) if self._sqlite else None
        self._thread = ThreadPoolExecutor(1, "store-writer") if self._sqlite else None
        self._max_batch = max_batch
        self.on_failure: Callable[[], None] | None = None
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
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()

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

    def _run_jobs(self, connection: Connection, jobs: list[_Job]) -> list[_Outcome]:
        """All units in one transaction, no SAVEPOINT each (two statements saved per
        write). When one fails, the whole transaction is rolled back and the units
        are run again one transaction each, so that only the failing one fails."""
        try:
            with connection.begin():  # COMMIT when the block ends
                outcomes: list[_Outcome] = [(job, job.work(connection), None) for job in jobs]
            return outcomes
        except Exception as error:
            if self.on_failure is not None:
                self.on_failure()  # caches may name rows the rollback undid
            if len(jobs) == 1:
                return [(jobs[0], None, error)]
        outcomes = []
        for job in jobs:
            try:
                with connection.begin():
                    outcomes.append((job, job.work(connection), None))
            except Exception as error:  # one unit's failure is its caller's
                if self.on_failure is not None:
                    self.on_failure()
                outcomes.append((job, None, error))
        return outcomes

    def _run_jobs_on_sqlite(self, jobs: list[_Job]) -> list[_Outcome]:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as connection:
            return self._run_jobs(connection, jobs)

    async def _run_batch(self, jobs: list[_Job]) -> None:
        try:
            if self._thread is not None:
                outcomes = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self._run_jobs_on_sqlite, jobs
                )
            else:
                async with self._engine.connect() as connection:
                    outcomes = await connection.run_sync(self._run_jobs, jobs)
        except Exception as error:
            log.exception("store: group transaction of %d writes failed", len(jobs))
            if self.on_failure is not None:
                self.on_failure()
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
