"""PostgreSQL's change feed: each append announces the traces it changed with
``pg_notify`` in its own transaction (so the notice goes out exactly when it commits,
and never for one that rolls back), and each API process listens on one connection of
its own, so that processes writing directly to one database hear each other's commits:
``?wait`` wakes at once and live streams carry every change, whichever replica stored it.

A notice is JSON: ``{"s": schema, "o": origin, "t": tenant, "i": [trace_id, ...]}``,
under PostgreSQL's 8,000-byte limit (a large append sends several). ``s`` keeps stores
of different schemas of one database apart (the channel is database-wide); ``o`` is the
announcing store's origin, so a process passes over its own notices (it has told its
watcher already). Notices are not durable: those sent while a listener is reconnecting
are lost to it, and ``?wait``'s own looks (every second) still find such changes for
the traces someone waits on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence

import orjson
import psycopg

log = logging.getLogger("waymark.store")

CHANNEL = "waymark_changes"
#: under PostgreSQL's 8,000 bytes a notice's payload may hold
PAYLOAD_BYTES = 7800

ANNOUNCE = f"SELECT pg_notify('{CHANNEL}', payload) FROM unnest(%s::text[]) AS payload"

Key = tuple[str, str]  # (tenant, trace_id)
Changed = Callable[[list[Key]], None]


def payloads(schema: str, origin: str, keys: Sequence[Key]) -> Iterator[str]:
    """The notices that announce ``keys`` (sorted by tenant), each under
    :data:`PAYLOAD_BYTES`."""
    head = {"s": schema, "o": origin}
    batch: list[str] = []
    tenant: str | None = None
    size = 0
    for key_tenant, trace_id in keys:
        cost = len(orjson.dumps(trace_id)) + 1
        if batch and (key_tenant != tenant or size + cost > PAYLOAD_BYTES):
            yield orjson.dumps({**head, "t": tenant, "i": batch}).decode()
            batch = []
        if not batch:
            tenant = key_tenant
            size = len(orjson.dumps({**head, "t": tenant, "i": []}))
        batch.append(trace_id)
        size += cost
    if batch:
        yield orjson.dumps({**head, "t": tenant, "i": batch}).decode()


def changed_keys(payload: str, schema: str, origin: str) -> list[Key]:
    """The traces a notice announces, unless it is of another schema or of ``origin``
    itself (or not a notice of ours at all)."""
    try:
        notice = orjson.loads(payload)
        if notice["s"] != schema or notice["o"] == origin:
            return []
        return [(str(notice["t"]), str(trace_id)) for trace_id in notice["i"]]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        log.warning("a notice on %s that is not a change: %.100r", CHANNEL, payload)
        return []


def listener_name(origin: str) -> str:
    """The ``application_name`` of the listening connection of a store of ``origin``."""
    return f"waymark-changes-{origin[:16]}"


async def follow(
    target: str, schema: str, origin: str, changed: Changed, *, max_backoff_s: float = 5.0
) -> None:
    """Call ``changed`` with the traces other processes' appends changed, as their
    transactions commit, until cancelled; reconnect (with backoff) when the connection
    is lost."""
    delay = 0.1
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                target, autocommit=True, application_name=listener_name(origin)
            ) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                delay = 0.1
                async for notice in conn.notifies():
                    keys = changed_keys(notice.payload, schema, origin)
                    if keys:
                        changed(keys)
        except psycopg.OperationalError as exc:
            log.warning(
                "listening for changes on PostgreSQL failed, again in %.1f s: %s", delay, exc
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff_s)
