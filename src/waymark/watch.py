"""Waiting for a trace to change: how ``?wait`` learns of it without reading in a loop.

A waiting request costs nothing while its trace stands still. The waiters of one trace
share a :class:`_Watch`: it is read once when the first of them comes, and again only
when the trace has changed; every waiter of it then takes that one read.

Whoever learns that traces changed calls :meth:`Watcher.notify` with their
(tenant, trace_id) pairs: the direct sink after each commit in this process, the store's
change feed for other processes' commits where it has one (PostgreSQL), the change feed
when events arrive through the bus. Its listeners (the change record of live streams)
hear every such notice. Writers this process cannot hear are found by a
look that serves every waiter at once:

- where the store has a commit marker (:meth:`waymark.store.base.Store.commit_marker`:
  another worker appending to the same SQLite file), it is asked every ``look_every_s``
  while anyone waits, and only when it has moved are the watched traces' event counts
  read (``counts``, one query for all of them);
- where it has none (PostgreSQL: another replica in direct mode, a change-feed message
  lost), the counts are read every ``check_every_s`` while anyone waits.

A trace whose count differs from what its waiters last read has changed: they read it
again. Appends are idempotent, so a trace changes exactly when its event count does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence

from waymark.model import Summary

Key = tuple[str, str]

Counts = Callable[[Sequence[Key]], dict[Key, int]]
"""The event counts of traces (those that exist), by (tenant, trace_id); it blocks (a store
call), so the watcher runs it in a thread."""

log = logging.getLogger(__name__)


class _Watch:
    """The waiters of one trace: how often it has changed since they came, its last read,
    and an event set when it changes next."""

    def __init__(self) -> None:
        self.waiters = 0
        self.changes = 0
        self.moved = asyncio.Event()
        self.count: int | None = None  # the event count of the last read
        self._reading: tuple[int, asyncio.Future[Summary | None]] | None = None

    @property
    def reading(self) -> bool:
        """Whether a read is under way."""
        return self._reading is not None and not self._reading[1].done()

    def change(self) -> None:
        self.changes += 1
        self.moved.set()
        self.moved = asyncio.Event()

    async def read(self, read: Callable[[], Awaitable[Summary | None]]) -> Summary | None:
        """The trace as read since its last change: one read for every waiter."""
        reading = self._reading
        if reading is None or reading[0] != self.changes or _failed(reading[1]):
            reading = self._reading = (self.changes, asyncio.ensure_future(read()))
            reading[1].add_done_callback(self._counted)
        return await asyncio.shield(reading[1])

    def _counted(self, done: asyncio.Future[Summary | None]) -> None:
        if not done.cancelled() and done.exception() is None:
            summary = done.result()
            self.count = None if summary is None else summary.event_count


def _failed(future: asyncio.Future[Summary | None]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


class Watcher:
    def __init__(
        self,
        *,
        counts: Counts | None = None,
        commit_marker: Callable[[], Hashable | None] | None = None,
        look_every_s: float = 0.02,
        check_every_s: float = 1.0,
    ) -> None:
        self.look_every_s = look_every_s
        self.check_every_s = check_every_s
        self._counts = counts
        self._commit_marker = commit_marker
        self._marker: Hashable | None = None  # the last one seen
        self._looking: asyncio.Task[None] | None = None
        self._watches: dict[Key, _Watch] = {}
        #: how many times the watched traces' counts were read (one query each)
        self.checks = 0
        self._recheck = False  # look at the counts again even if the marker has not moved
        self._listeners: list[Callable[[Sequence[Key]], None]] = []

    def listen(self, listener: Callable[[Sequence[Key]], None]) -> None:
        """Tell ``listener`` of every change this watcher is told of (:meth:`notify`), from
        the event loop: the change record of live streams (:mod:`waymark.changes`)."""
        self._listeners.append(listener)

    def notify(self, keys: Iterable[Key]) -> None:
        """These traces changed: their waiters read them again, and the listeners hear of
        them. Call from the event loop."""
        keys = list(keys)
        for listener in self._listeners:
            listener(keys)
        self._wake(keys)

    def _wake(self, keys: Iterable[Key]) -> None:
        """The waiters of these traces read them again (the listeners hear nothing: a look
        of this watcher's own finds changes of watched traces only, or none at all)."""
        for key in keys:
            watch = self._watches.get(key)
            if watch is not None:
                watch.change()

    @property
    def waiting(self) -> int:
        return sum(w.waiters for w in self._watches.values())

    async def wait_done(
        self,
        key: Key,
        timeout_s: float,
        read: Callable[[], Awaitable[Summary | None]],
    ) -> Summary | None:
        """Wait until the trace is done or ``timeout_s`` passes; return the last read."""
        return await self.wait_for(key, timeout_s, read, lambda s: s is not None and s.done)

    async def wait_for(
        self,
        key: Key,
        timeout_s: float,
        read: Callable[[], Awaitable[Summary | None]],
        ready: Callable[[Summary | None], bool],
    ) -> Summary | None:
        """Wait until ``ready`` says yes to the trace as read or ``timeout_s`` passes;
        return the last read. ``read`` reads the trace; the waiters of one trace share
        its reads (any waiter's ``read`` may serve the others)."""
        deadline = time.monotonic() + timeout_s
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch()
        watch.waiters += 1
        if self._looking is None and (self._commit_marker or self._counts):
            self._start_looking()
        try:
            while True:
                moved = watch.moved  # set by a change from here on, even during the read
                summary = await watch.read(read)
                remaining = deadline - time.monotonic()
                if ready(summary) or remaining <= 0:
                    return summary
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moved.wait(), remaining)
        finally:
            watch.waiters -= 1
            if not watch.waiters and self._watches.get(key) is watch:
                del self._watches[key]

    def _start_looking(self) -> None:
        """Note the marker before the first waiter's read (a commit after that read moves
        it), and look from now on while anyone waits."""
        if self._commit_marker is not None:
            try:
                self._marker = self._commit_marker()
            except Exception:  # never let a failing look take a waiter down
                log.exception("asking the store for its commit marker failed")
                self._marker = None
            if self._marker is None:  # the store cannot tell: check the counts instead
                self._commit_marker = None
        if self._commit_marker is None and self._counts is None:
            return
        self._looking = asyncio.get_running_loop().create_task(self._look())

    async def _look(self) -> None:
        try:
            while self._watches:
                marker = self._commit_marker
                await asyncio.sleep(self.look_every_s if marker else self.check_every_s)
                if marker is not None:
                    seen = marker()
                    if seen is not None and seen == self._marker and not self._recheck:
                        continue
                    if seen is None:  # the store cannot tell (after all): check the counts
                        self._commit_marker = None
                    self._marker = seen
                await self._check()
        except Exception:  # never let a failing look take a waiter down
            log.exception("looking for changes by other writers failed; notices still wake")
        finally:
            self._looking = None

    async def _check(self) -> None:
        """Read the watched traces' event counts (one query) and wake the waiters of those
        that changed; without ``counts``, wake them all."""
        watched = list(self._watches.items())
        self._recheck = False
        if self._counts is None:
            self._wake(key for key, _ in watched)
            return
        self.checks += 1
        counts = await asyncio.to_thread(self._counts, [key for key, _ in watched])
        changed = [key for key, watch in watched if counts.get(key) != watch.count]
        # A trace being read now (a notice came first) is checked again at the next look,
        # once that read has told its count, rather than read twice.
        reading = {key for key, watch in watched if key in changed and watch.reading}
        self._recheck = bool(reading)
        self._wake(key for key in changed if key not in reading)
