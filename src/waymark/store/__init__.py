"""Stores by URL (:mod:`waymark.store.url`): ``sqlite:///path`` (embedded) and
``postgresql://...``."""

from __future__ import annotations

from waymark.pipelines import Pipelines
from waymark.store.base import Store
from waymark.store.url import StoreURL, parse_store_url


def open_store(url: str | StoreURL, pipelines: Pipelines | None = None) -> Store:
    """Open the store a URL names; backends are imported only when asked for.
    :class:`ValueError` if the URL is not a store URL."""
    where = parse_store_url(url) if isinstance(url, str) else url
    if where.kind == "sqlite":
        from waymark.store.sqlite import SQLiteStore

        return SQLiteStore(where, pipelines)
    from waymark.store.postgres import PostgresStore

    return PostgresStore(where, pipelines)


__all__ = ["Store", "StoreURL", "open_store", "parse_store_url"]
