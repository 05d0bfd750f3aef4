"""Stores by URL scheme: ``sqlite:///path`` (embedded) and ``postgresql://...``."""

from __future__ import annotations

from waymark.pipelines import Pipelines
from waymark.store.base import Store


def open_store(url: str, pipelines: Pipelines | None = None) -> Store:
    """Open the store a URL names; backends are imported only when asked for."""
    if url.startswith("sqlite:"):
        from waymark.store.sqlite import SQLiteStore

        return SQLiteStore(url, pipelines)
    if url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        from waymark.store.postgres import PostgresStore

        return PostgresStore(url, pipelines)
    raise ValueError(
        f"unsupported store URL {url!r}: use sqlite:///path/to/file.db or postgresql://..."
    )


__all__ = ["Store", "open_store"]
