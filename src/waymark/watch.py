"""Waiting for a trace to finish: how ``?wait`` learns of completion without polling hard.

Whoever learns that traces changed calls :meth:`Watcher.notify` with their
(tenant, trace_id) pairs: the direct sink after each commit in this process, the
change feed when events arrive through the bus. Waiters wake at once, then
re-read the summary. As a safety net for writers this process cannot hear (another
process appending to the same SQLite file), each waiter also re-reads every
``fallback_poll_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable

from waymark.model import Summary

Key = tuple[str, str]


class Watcher:
    def __init__(self, fallback_poll_s: float = 0.5) -> None:
        self.fallback_poll_s = fallback_poll_s
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
