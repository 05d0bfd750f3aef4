"""Waiting for a trace to finish: how ``?wait`` learns of completion without polling hard.

Whoever learns that traces changed calls :meth:`Watcher.notify` with their
(tenant, trace_id) pairs: the direct sink after each commit in this process, the
change feed when events arrive through the bus. Waiters wake at once, then
re-read the summary. Writers this process cannot hear (another worker appending to
the same SQLite file) are caught by the store's commit marker
(:meth:`waymark.store.base.Store.commit_marker`), asked every ``look_every_s``
while anyone waits: when it has changed, every waiter re-reads. As a last safety
net each waiter also re-reads every ``fallback_poll_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable

from waymark.model import Summary

Key = tuple[str, str]

log = logging.getLogger(__name__)


class Watcher:
    def __init__(
        self,
        fallback_poll_s: float = 0.5,
        *,
        commit_marker: Callable[[], Hashable | None] | None = None,
        look_every_s: float = 0.02,
    ) -> None:
        self.fallback_poll_s = fallback_poll_s
        self.look_every_s = look_every_s
        self._commit_marker = commit_marker
        self._marker: Hashable | None = None  # the last one seen
        self._looking: asyncio.Task[None] | None = None
        self._waiters: dict[Key, set[asyncio.Event]] = {}

    def notify(self, keys: Iterable[Key]) -> None:
        """Wake everyone waiting on these traces. Call from the event loop's thread."""
        for key in keys:
            for event in self._waiters.get(key, ()):
                event.set()

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._waiters.values())

    async def wait_done(
        self,
        key: Key,
        timeout_s: float,
        read: Callable[[], Awaitable[Summary | None]],
    ) -> Summary | None:
        """Re-read the trace until it is done or ``timeout_s`` passes; return the last read."""
        return await self.wait_for(key, timeout_s, read, lambda s: s is not None and s.done)

    async def wait_for(
        self,
        key: Key,
        timeout_s: float,
        read: Callable[[], Awaitable[Summary | None]],
        ready: Callable[[Summary | None], bool],
    ) -> Summary | None:
        """Re-read the trace until ``ready`` says yes to what was read or ``timeout_s``
        passes; return the last read."""
        deadline = time.monotonic() + timeout_s
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        if self._commit_marker is not None and self._looking is None:
            self._start_looking(self._commit_marker)
        try:
            while True:
                event.clear()
                summary = await read()
                remaining = deadline - time.monotonic()
                if ready(summary) or remaining <= 0:
                    return summary
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, self.fallback_poll_s))
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]

    def _start_looking(self, commit_marker: Callable[[], Hashable | None]) -> None:
        """Note the marker before the waiter's first read (a commit after that read changes
        it), and look at it every ``look_every_s`` from now on."""
        try:
            self._marker = commit_marker()
        except Exception:  # never let a failing look take a waiter down; the timer stays
            log.exception("asking the store for its commit marker failed; waiters fall back")
            self._marker = None
        if self._marker is None:  # the store cannot tell: the timer stays
            self._commit_marker = None
            return
        self._looking = asyncio.get_running_loop().create_task(self._look())

    async def _look(self) -> None:
        """While anyone waits, ask the store for its commit marker; wake all if it changed."""
        assert self._commit_marker is not None
        try:
            while self._waiters:
                await asyncio.sleep(self.look_every_s)
                marker = self._commit_marker()
                if marker is None:  # the store cannot tell (after all): the timer stays
                    self._commit_marker = None
                    return
                if marker != self._marker:
                    self._marker = marker
                    self.notify(list(self._waiters))
        except Exception:  # never let a failing look take a waiter down; the timer stays
            log.exception("asking the store for its commit marker failed; waiters fall back")
        finally:
            self._looking = None
