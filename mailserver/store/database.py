"""The database: one declarative base for every room, and the async engine.

SQLite (WAL) is the embedded default; PostgreSQL (asyncpg) serves several nodes.
The directory's tables share this metadata, so one Alembic history covers both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase

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


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine, marked so that its transactions take the write lock at BEGIN."""
    return engine.execution_options(**{WRITER_OPTION: True})


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, sqlite_synchronous: str = "FULL") -> AsyncEngine:
    """An engine for ``url``; SQLite connections get WAL and the durability asked for."""
    if is_sqlite(url):
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=8, max_overflow=8
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, emit BEGIN: SAVEPOINT works and writers
            # can take the write lock up front (SQLAlchemy's documented aiosqlite recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # A writer that starts deferred and upgrades later can fail with
            # SQLITE_BUSY_SNAPSHOT; writers therefore BEGIN IMMEDIATE.
            immediate = connection.get_execution_options().get(WRITER_OPTION, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
