"""``mss keys``: the master key of encryption at rest."""

from __future__ import annotations

import asyncio

import click

from mailserver.queue.outbound import queue_uses_key, rewrap_queued_keys
from mailserver.settings import Settings, load_settings
from mailserver.store.crypto import CryptoError
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade
from mailserver.store.vault import destroy_retired_key, rotate_master_key


@click.group("keys")
def keys_group() -> None:
    """The master key that wraps every mailbox key and queued message (encryption at rest)."""


@keys_group.command("rotate")
@click.pass_context
def rotate(context: click.Context) -> None:
    """Re-wrap every mailbox key and queued message's key under a new master key
    (bodies are not re-encrypted).

    The replaced key is kept as master.key.old until no mailbox key uses it; a
    second rotation, or restarting the servers then rotating again, destroys it.
    Best run with the servers stopped (a running server keeps working: it reloads
    the keys when it meets a row wrapped by the new one).
    """
    data_dir = context.obj.get("data_dir")
    if data_dir is None:
        raise click.UsageError("give --data-dir DIR or set MSS_DATA_DIR")
    settings: Settings = load_settings(data_dir)
    if not settings.storage.encrypt_at_rest:
        raise click.ClickException("encryption at rest is off (storage.encrypt_at_rest)")

    async def go() -> tuple[str, str, int, int, bool]:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            destroyed = await destroy_retired_key(settings, engine, also=[queue_uses_key])
            old, new, count, queued = await rotate_master_key(
                settings, engine, also=[rewrap_queued_keys])
            return old, new, count, queued, destroyed
        finally:
            await engine.dispose()

    try:
        old, new, count, queued, destroyed = asyncio.run(go())
    except (CryptoError, OSError) as error:
        raise click.ClickException(str(error)) from error
    if destroyed:
        click.echo("Destroyed the master key retired by the previous rotation")
    click.echo(f"Master key {old} → {new}: {count} mailbox keys and {queued} queued "
               "messages re-wrapped")
