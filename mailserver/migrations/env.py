"""Alembic environment: runs on the connection handed in by mailserver.store.migrate."""

from __future__ import annotations

from alembic import context

import directory.models  # noqa: F401  (registers the directory tables)
import mailserver.queue.models
import mailserver.store.models
import mailserver.trust.models  # noqa: F401  (registers the trust space table)
from mailserver.store.database import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `mss init` / `mss serve` (mailserver.store.migrate)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
