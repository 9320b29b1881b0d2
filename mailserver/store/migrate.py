"""Bring the database schema to the latest Alembic revision."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from mailserver.store.database import writer


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "mailserver:migrations")
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every pending migration (idempotent; safe on each start)."""

    def run(connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with writer(engine).begin() as connection:
        await connection.run_sync(run)
