"""The database: one declarative base for every room, and the async engine.

SQLite (WAL) is the embedded default; PostgreSQL (asyncpg) serves several nodes.
The directory's tables share this metadata, so one Alembic history covers both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import SingletonThreadPool

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


WRITER_OPTION = "mss_writer"
SINGLE_READ_OPTION = "mss_single_read"


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine, marked so that its transactions take the write lock at BEGIN."""
    return engine.execution_options(**{WRITER_OPTION: True})


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _configure_sqlite(sync_engine: Engine, synchronous: str) -> None:
    @event.listens_for(sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN: SAVEPOINT works and writers
        # can take the write lock up front (SQLAlchemy's documented pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _sqlite_begin(connection: Any) -> None:
        # A writer that starts deferred and upgrades later can fail with
        # SQLITE_BUSY_SNAPSHOT; writers therefore BEGIN IMMEDIATE.
        options = connection.get_execution_options()
        if options.get(SINGLE_READ_OPTION, False):
            return  # a one-hop read: each statement reads the latest commit (autocommit)
        immediate = options.get(WRITER_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# The durability asked for each SQLite database, so that the store's writer
# thread opens its own connection with the same settings.
_SQLITE_SYNCHRONOUS: dict[str, str] = {}


def create_engine(url: str, *, sqlite_synchronous: str = "FULL") -> AsyncEngine:
    """An engine for ``url``; SQLite connections get WAL and the durability asked for."""
    if is_sqlite(url):
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=8, max_overflow=8
        )
        _configure_sqlite(engine.sync_engine, sqlite_synchronous)
        _SQLITE_SYNCHRONOUS[url] = sqlite_synchronous
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def sqlite_writer_engine(engine: AsyncEngine) -> Engine:
    """A synchronous pysqlite engine on the same file, for the store's writer thread:
    a whole group transaction then runs in one call, without a thread hop per
    statement. One connection (SQLite has one writer anyway)."""
    url = engine.url.render_as_string(hide_password=False)
    sync = sa_create_engine(
        url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1),
        poolclass=SingletonThreadPool,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    _configure_sqlite(sync, _SQLITE_SYNCHRONOUS.get(url, "FULL"))
    return sync.execution_options(**{WRITER_OPTION: True})


class Reader:
    """Run a synchronous read ``fn(connection)`` off the event loop, in one hop.

    On SQLite a small pool of threads, each with its own pysqlite connection,
    runs the whole read in one call (aiosqlite would hop threads for every cursor
    operation). On PostgreSQL it runs through asyncpg with ``run_sync``.
    """

    def __init__(self, engine: AsyncEngine, threads: int = 2) -> None:
        self._engine = engine
        self._sync: Engine | None = None
        self._pool: ThreadPoolExecutor | None = None
        if engine.dialect.name == "sqlite":
            url = engine.url.render_as_string(hide_password=False)
            self._sync = sa_create_engine(
                url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1),
                poolclass=SingletonThreadPool,
                pool_size=threads + 1,  # the pool's threads and the event loop's
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            _configure_sqlite(self._sync, _SQLITE_SYNCHRONOUS.get(url, "FULL"))
            # No BEGIN / ROLLBACK around a read: two statements saved per call.
            self._sync = self._sync.execution_options(**{SINGLE_READ_OPTION: True})
            self._pool = ThreadPoolExecutor(threads, "store-reader")

    async def run(self, fn: Callable[[Connection], T]) -> T:
        if self._pool is not None:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, fn)
        async with self._engine.connect() as connection:
            return await connection.run_sync(fn)

    async def point(self, fn: Callable[[Connection], T]) -> T:
        """A read by primary key or unique index (a mailbox by address, a thread by
        message id): on SQLite it runs right here, on the event loop's own
        connection — a few tens of microseconds, less than a thread hop, and WAL
        readers never wait for the writer. Anything that scans goes through run()."""
        if self._sync is not None:
            return self._read(fn)
        return await self.run(fn)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as connection:
            return fn(connection)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()
