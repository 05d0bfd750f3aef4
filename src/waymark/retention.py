"""Retention: removing traces whose last event is older than a limit.

A prune walks each tenant's traces oldest first (:meth:`Store.stale_traces
<waymark.store.base.Store.stale_traces>`) and removes them in small transactions
(:meth:`Store.delete_traces <waymark.store.base.Store.delete_traces>`): at most
:data:`BATCH_TRACES` traces and about :data:`BATCH_EVENTS` events each, so that no
transaction holds the store's write locks long enough to stall ingestion. A trace that an
append made newer since it was listed is passed by.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from waymark.jetstream import STREAM_MAX_AGE_S
from waymark.model import now_us
from waymark.store.base import StaleTrace, Store

BATCH_TRACES = 100  # traces one transaction removes at most
BATCH_EVENTS = 5000  # about the most events one transaction removes (at least one trace)
#: how long a deleted trace's tombstone holds (:func:`delete`): as long as the bus keeps a
#: message, so that no event of the trace received before its deletion can still arrive.
TOMBSTONE_US = int(STREAM_MAX_AGE_S * 1_000_000)

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> int:
    """An age such as ``30d``, ``12h``, ``90m`` or ``45s``, in microseconds; ValueError
    naming the expected shape otherwise."""
    match = _AGE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not an age: give a positive number and s, m, h or d (30d)")
    return int(float(match.group(1)) * _UNIT_S[match.group(2)] * 1_000_000)


def delete(store: Store, tenant: str, trace_id: str) -> bool:
    """Remove one trace and everything derived from it, and lay its tombstone for
    :data:`TOMBSTONE_US`; False if nothing of it was stored."""
    return store.delete_traces([(tenant, trace_id)], tombstone_until_us=now_us() + TOMBSTONE_US) > 0


@dataclass(frozen=True, slots=True)
class Pruned:
    """One transaction's worth of a prune (or, dry, one page of what it would remove)."""

    tenant: str
    traces: int
    events: int


def batches(stale: list[StaleTrace]) -> Iterator[list[StaleTrace]]:
    """``stale`` cut into groups of at most :data:`BATCH_TRACES` traces and about
    :data:`BATCH_EVENTS` events (a larger trace is a group of its own)."""
    group: list[StaleTrace] = []
    events = 0
    for trace in stale:
        if group and (len(group) >= BATCH_TRACES or events + trace.event_count > BATCH_EVENTS):
            yield group
            group, events = [], 0
        group.append(trace)
        events += trace.event_count
    if group:
        yield group


def prune(
    store: Store,
    before_us: int,
    *,
    tenant: str,
    domain: str | None = None,
    dry_run: bool = False,
    pause_s: float = 0.0,
) -> Iterator[Pruned]:
    """Remove (or, ``dry_run``, list) the tenant's traces (of ``domain`` if given) whose
    last event is before ``before_us``, a batch at a time, yielding what each removed.
    ``pause_s``: a rest between batches, leaving the store to other writers."""
    after: tuple[int, str] | None = None
    while True:
        stale = store.stale_traces(tenant, before_us, domain=domain, after=after, limit=500)
        if not stale:
            return
        if dry_run:
            after = (stale[-1].updated_us, stale[-1].trace_id)
            yield Pruned(tenant, len(stale), sum(t.event_count for t in stale))
            continue
        for group in batches(stale):
            keys = [(t.tenant, t.trace_id) for t in group]
            gone = store.delete_traces(keys, older_than_us=before_us)
            yield Pruned(tenant, gone, sum(t.event_count for t in group))
            if pause_s:
                time.sleep(pause_s)
        if len(stale) < 500:
            return
