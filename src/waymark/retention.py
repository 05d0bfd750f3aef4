"""Retention: removing traces whose last event is older than a limit.

A prune walks each tenant's traces oldest first (:meth:`Store.stale_traces
<waymark.store.base.Store.stale_traces>`) and removes them in small transactions
(:meth:`Store.delete_traces <waymark.store.base.Store.delete_traces>`): at most the
store's ``prune_batch_traces`` traces and about :data:`BATCH_EVENTS` events each, so that
no transaction holds the store's write locks long enough to stall ingestion. A trace that an
append made newer since it was listed is passed by.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from waymark.jetstream import STREAM_MAX_AGE_S
from waymark.model import now_us
from waymark.pipelines import Pipelines
from waymark.store.base import StaleTrace, Store

BATCH_EVENTS = 5000  # about the most events one transaction removes (at least one trace)
PAGE = 500  # stale traces listed at a time
PAUSE_S = 0.05  # a background prune's rest between transactions
DAY_US = 86_400 * 1_000_000
log = logging.getLogger("waymark.retention")

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


def batches(stale: list[StaleTrace], most: int) -> Iterator[list[StaleTrace]]:
    """``stale`` cut into groups of at most ``most`` traces and about :data:`BATCH_EVENTS`
    events (a larger trace is a group of its own)."""
    group: list[StaleTrace] = []
    events = 0
    for trace in stale:
        if group and (len(group) >= most or events + trace.event_count > BATCH_EVENTS):
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
    limit_of: Callable[[str | None], int | None] | None = None,
) -> Iterator[Pruned]:
    """Remove (or, ``dry_run``, list) the tenant's traces (of ``domain`` if given) whose
    last event is before ``before_us``, a batch at a time, yielding what each removed.
    ``limit_of``: a trace's own limit by its domain (None: kept), at most ``before_us``.
    ``pause_s``: a rest between batches, leaving the store to other writers."""
    after: tuple[int, str] | None = None
    while True:
        stale = store.stale_traces(tenant, before_us, domain=domain, after=after, limit=PAGE)
        if not stale:
            return
        after = (stale[-1].updated_us, stale[-1].trace_id)
        limits = {t.trace_id: before_us if limit_of is None else limit_of(t.domain) for t in stale}
        due = [
            t for t in stale if (limit := limits[t.trace_id]) is not None and t.updated_us < limit
        ]
        if dry_run:
            yield Pruned(tenant, len(due), sum(t.event_count for t in due))
        else:
            # One transaction per batch and limit: each trace is deleted only if it is
            # still older than its own limit when the transaction runs.
            by_limit: dict[int, list[StaleTrace]] = {}
            for t in due:
                by_limit.setdefault(limits[t.trace_id] or 0, []).append(t)
            for limit, traces in by_limit.items():
                for group in batches(traces, store.prune_batch_traces):
                    keys = [(t.tenant, t.trace_id) for t in group]
                    gone = store.delete_traces(keys, older_than_us=limit)
                    yield Pruned(tenant, gone, sum(t.event_count for t in group))
                    if pause_s:
                        time.sleep(pause_s)
        if len(stale) < PAGE:
            return


def expire(
    store: Store, pipelines: Pipelines, now: int, *, pause_s: float = 0.0
) -> Iterator[Pruned]:
    """Remove every trace whose last event is older than its pipeline's ``retention_days``
    (by tenant and domain); then drop expired tombstones."""
    for tenant in store.tenants():
        base, per_domain = pipelines.retentions(tenant)
        days = [d for d in (base, *per_domain.values()) if d is not None]
        if not days:
            continue

        def limit_of(
            domain: str | None,
            base: float | None = base,
            per_domain: dict[str, float | None] = per_domain,
        ) -> int | None:
            kept = base if domain is None else per_domain.get(domain, base)
            return None if kept is None else now - int(kept * DAY_US)

        before = now - int(min(days) * DAY_US)
        yield from prune(store, before, tenant=tenant, pause_s=pause_s, limit_of=limit_of)
    store.drop_tombstones(now)


class Pruner:
    """Runs :func:`expire` every ``interval_s`` in the background of a server, at most one
    replica at a time: the store's lease named ``prune`` goes to one holder for twice the
    interval, and that holder renews it each round; another takes it over only once it
    lapses (its holder stopped)."""

    def __init__(self, store: Store, pipelines: Pipelines, interval_s: float) -> None:
        self.store, self.pipelines, self.interval_s = store, pipelines, interval_s
        self.holder = uuid.uuid4().hex
        self.rounds = 0  # rounds this replica ran (it held the lease)

    def round(self) -> int:
        """One round if this replica holds the lease: how many traces it removed, or -1
        if another replica holds it."""
        now = now_us()
        until = now + int(2 * self.interval_s * 1_000_000)
        if not self.store.claim("prune", self.holder, until, now):
            return -1
        self.rounds += 1
        return sum(p.traces for p in expire(self.store, self.pipelines, now, pause_s=PAUSE_S))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                removed = await asyncio.to_thread(self.round)
            except Exception:  # a failed round is retried next interval; the server goes on
                log.exception("prune round failed")
                continue
            if removed > 0:
                log.info("pruned %d traces past their retention", removed)
