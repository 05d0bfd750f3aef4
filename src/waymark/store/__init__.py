"""Stores by URL scheme: ``sqlite:///path`` (embedded) and ``postgresql://...``."""

from __future__ import annotations

import logging

from waymark.errors import Unavailable
from waymark.pipelines import Pipelines
from waymark.store.base import Store

log = logging.getLogger("waymark.store")


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


def log_durability_warnings(store: Store) -> list[str]:
    """Log each of the store's :meth:`~Store.durability_warnings` as a warning, and return
    them; a store that cannot be asked now is logged as such and reports none."""
    try:
        warnings = store.durability_warnings()
    except Unavailable as exc:
        log.warning("store durability settings could not be read: %s", exc.detail)
        return []
    for warning in warnings:
        log.warning("store durability: %s", warning)
    return warnings


__all__ = ["Store", "log_durability_warnings", "open_store"]
