"""Stores by URL (:mod:`waymark.store.url`): ``sqlite:///path`` (embedded) and
``postgresql://...``."""

from __future__ import annotations

import logging

from waymark.errors import Unavailable
from waymark.pipelines import Pipelines
from waymark.store.base import Store
from waymark.store.url import StoreURL, parse_store_url

log = logging.getLogger("waymark.store")


def open_store(url: str | StoreURL, pipelines: Pipelines | None = None) -> Store:
    """Open the store a URL names; backends are imported only when asked for.
    :class:`ValueError` if the URL is not a store URL."""
    where = parse_store_url(url) if isinstance(url, str) else url
    if where.kind == "sqlite":
        from waymark.store.sqlite import SQLiteStore

        return SQLiteStore(where, pipelines)
    from waymark.store.postgres import PostgresStore

    return PostgresStore(where, pipelines)


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


__all__ = ["Store", "StoreURL", "log_durability_warnings", "open_store", "parse_store_url"]
