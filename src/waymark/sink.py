"""Sinks: where accepted events and dataset details go before the producer is told
"accepted".

:class:`DirectSink` writes to the store and returns once committed (the embedded
default). The bus sink (:mod:`waymark.bus`) publishes to JetStream and returns once the
server has acknowledged; a collector stores it moments later. Either way, returning
means durable, and every front door writes through its sink, never to the store itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from typing import Any

from waymark import metrics
from waymark.ingest import to_records
from waymark.model import Event, Record
from waymark.pipelines import Pipelines
from waymark.store.base import AppendResult, DatasetDetails, Store
from waymark.watch import Watcher


class Sink(ABC):
    #: how long, after a submit returned, what it submitted may take to become readable in
    #: the store: 0 where a submit returns once the store committed (direct); in bus mode,
    #: the time a collector is given to store it. A reader that must see a write it was
    #: told of (okdata's update of a trace just started) waits this long before "not found".
    readable_within_s: float = 0.0

    @abstractmethod
    async def submit(self, records: Sequence[Record]) -> None:
        """Make the records durable; raise :class:`waymark.errors.Unavailable` if that cannot
        be done now."""

    @abstractmethod
    async def submit_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        """Make the dataset details durable, as :meth:`submit` does records; raise
        :class:`waymark.errors.Unavailable` if that cannot be done now."""

    async def submit_events(
        self,
        tenant: str,
        events: Sequence[Event],
        sent: Sequence[dict[str, Any]],
        pipelines: Pipelines,
        *,
        submitted_by: str | None = None,
    ) -> list[str]:
        """Make validated events of one tenant durable; return their event ids.

        ``sent[i]`` is the JSON object ``events[i]`` was validated from; ``submitted_by``
        who sent them, recorded with each. By default the events are resolved into
        records (:func:`waymark.ingest.to_records`) and submitted; the bus sink publishes
        the objects as sent instead, since collectors resolve them again anyway."""
        records = to_records(events, tenant, pipelines, submitted_by=submitted_by)
        await self.submit(records)
        return [r.event_id for r in records]

    @abstractmethod
    async def check_ready(self) -> None:
        """Raise :class:`waymark.errors.Unavailable` if a submit cannot succeed now (the
        store takes no writes; the bus is not connected). For readiness probes: each call
        may cost a write, so callers space them out."""

    async def start(self) -> None:  # noqa: B027  (optional hook)
        """Connect; called once when the API starts."""

    async def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections; called once when the API stops."""

    async def announce(self, keys: Sequence[tuple[str, str]]) -> None:  # noqa: B027
        """These traces changed without an append (the stall sweep noticed them): tell the
        waiters and live streams of every process this sink reaches. By default, none."""


#: how many appends the direct sink runs at once: while the store commits one group, the
#: next is made ready (its rows built) in another thread; more were no faster
#: (docs/BENCHMARKS.md).
APPENDS_AT_ONCE = 2


class DirectSink(Sink):
    """Append to the store; answer once committed.

    Concurrent requests are committed together (group commit): while one append
    runs, the batches that arrive queue up and go into the next one, so a burst of
    single-event requests costs a few transactions, not one each. Each request still
    gets its own answer only after its events are committed; if a group fails, its
    requests are retried one by one so that one request's failure is never another's.

    Up to ``appends_at_once`` appends run at once, each in a thread of the sink's own, and
    a group takes at most its share of what is waiting (the waiting events over that
    number, at least one request), so that the appends run side by side rather than one
    taking everything while the others idle.
    """

    def __init__(
        self,
        store: Store,
        watcher: Watcher,
        *,
        max_group_events: int = 5000,
        appends_at_once: int = APPENDS_AT_ONCE,
    ) -> None:
        self.store = store
        self.watcher = watcher
        self.max_group_events = max_group_events
        self.appends_at_once = appends_at_once
        self._pending: deque[tuple[Sequence[Record], asyncio.Future[None]]] = deque()
        self._running = 0
        # Threads of its own: cheaper to hand work to than a shared pool.
        self._threads = concurrent.futures.ThreadPoolExecutor(
            appends_at_once, thread_name_prefix="waymark-append"
        )

    async def submit(self, records: Sequence[Record]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((records, done))
        if self._running < self.appends_at_once:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        await done

    def _take(self) -> list[tuple[Sequence[Record], asyncio.Future[None]]]:
        share = self.max_group_events
        if self.appends_at_once > 1:  # leave the other appends their part of what waits
            waiting = sum(len(batch) for batch, _ in self._pending)
            share = min(share, -(-waiting // self.appends_at_once))
        group = [self._pending.popleft()]
        size = len(group[0][0])
        while self._pending and size + len(self._pending[0][0]) <= share:
            item = self._pending.popleft()
            group.append(item)
            size += len(item[0])
        return group

    async def _drain(self) -> None:
        try:
            while self._pending:
                group = self._take()
                try:
                    await self._commit(group)
                except BaseException as exc:
                    if len(group) == 1:
                        _settle(group[0][1], exc)
                        continue
                    for item in group:
                        try:
                            await self._commit([item])
                        except BaseException as single:
                            _settle(item[1], single)
        finally:
            self._running -= 1

    async def _commit(self, group: list[tuple[Sequence[Record], asyncio.Future[None]]]) -> None:
        records = [r for batch, _ in group for r in batch]
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._threads, timed_append, self.store, records)
        metrics.traces_turned(result.turned)
        for _, done in group:
            _settle(done, None)
        if result.traces:
            self.watcher.notify(result.traces)

    async def announce(self, keys: Sequence[tuple[str, str]]) -> None:
        # Other processes on the same store hear of them from the store (its change feed).
        self.watcher.notify(keys)

    async def submit_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        if details:
            await asyncio.to_thread(self.store.put_dataset_details, details)

    async def check_ready(self) -> None:
        """Ready while the store commits a write (:meth:`Store.check_writable`)."""
        await asyncio.to_thread(self.store.check_writable)

    async def close(self) -> None:
        self._threads.shutdown(wait=True)


def timed_append(store: Store, records: Sequence[Record], partials: bool = False) -> AppendResult:
    """``store.append(records)``, timed for the metrics."""
    started = time.perf_counter()
    try:
        return store.append(records, partials=partials)
    finally:
        metrics.store_append(time.perf_counter() - started)


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)
