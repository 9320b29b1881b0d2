"""The directory's migration builds exactly the tables the models describe, on both
backends, and can be undone."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import directory.models  # noqa: F401
from mailserver.store.database import Base, create_engine, writer
from mailserver.store.migrate import alembic_config, upgrade

# Word indexes are backend-specific and declared only in the migration.
BACKEND_ONLY = {"directory_search_fts", "directory_search_vocab", "ix_directory_search_words"}


def _include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    if type_ == "column" and name == "words" and obj.table.name == "directory_search":
        return False  # PostgreSQL's stored tsvector
    return not (name or "").startswith(tuple(BACKEND_ONLY))


def _differences(connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"include_object": _include, "compare_type": True}
    )
    differences = list(compare_metadata(context, Base.metadata))
    # SQLite's reflection loses the name and ON DELETE of a column-level REFERENCES
    # (added with ALTER TABLE ADD COLUMN): the same key seen twice is no difference.
    keys = [(kind, _fk_key(fk)) for kind, fk, *_ in differences if kind.endswith("_fk")]
    return [
        d for d in differences
        if not (d[0].endswith("_fk") and
                ("add_fk" if d[0] == "remove_fk" else "remove_fk", _fk_key(d[1])) in keys)
    ]


def _fk_key(fk: Any) -> tuple[str, ...]:
    return tuple(f"{e.parent.table.name}.{e.parent.name}>{e.target_fullname}"
                 for e in fk.elements)


async def _check(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []

        def down_then_up(connection: Any) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
            command.upgrade(config, "head")

        async with writer(engine).begin() as connection:
            await connection.run_sync(down_then_up)
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()


def test_migration_matches_models_and_downgrades(database_url: str) -> None:
    asyncio.run(_check(database_url))
