"""Alembic environment: migrate the connection :mod:`waymark.store.migrate` hands over."""

from __future__ import annotations

from alembic import context

from waymark.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `waymark migrate`, which supplies the connection")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
