"""Helpers shared by the ``mss`` commands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import click

from directory.service import Directory
from mailserver.settings import Settings
from mailserver.store import Store
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade


def read_password(password_file: Any, password: str | None) -> str:
    """From a file (first line), from --password (tests/demo), else a prompt."""
    if password_file is not None and password is not None:
        raise click.UsageError("give --password-file or --password, not both")
    if password_file is not None:
        secret = password_file.readline().rstrip("\r\n")
    elif password is not None:
        secret = password
    else:
        secret = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(secret) < 8:
        raise click.ClickException("the password must have at least 8 characters")
    return str(secret)


@asynccontextmanager
async def open_directory(settings: Settings) -> AsyncIterator[tuple[Directory, Store]]:
    engine = create_engine(settings.database_url,
                           sqlite_synchronous=settings.database.sqlite_synchronous)
    store = Store(engine)
    try:
        await upgrade(engine)
        yield Directory(engine), store
    finally:
        await store.close()
        await engine.dispose()

