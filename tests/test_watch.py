"""The watcher's look at the store's commit marker: wakes every waiter when it changes, and
steps aside for good when the store cannot tell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable

from waymark.model import Summary
from waymark.watch import Watcher


def counting_reads(reads: dict[str, int], name: str) -> Callable[[], Awaitable[Summary | None]]:
    async def read() -> Summary | None:
        reads[name] += 1
        return None

    return read


def test_a_changed_marker_wakes_every_waiter_at_once() -> None:
    markers = [7, 7, 7, 8]  # as seen before the first read, then by each look
    reads = {"a": 0, "b": 0}

    def commit_marker() -> Hashable | None:
        return markers.pop(0) if markers else 8

    async def scenario() -> float:
        watcher = Watcher(fallback_poll_s=10, commit_marker=commit_marker)
        start = time.monotonic()
        await asyncio.gather(
            watcher.wait_for(("t", "a"), 0.5, counting_reads(reads, "a"), lambda s: reads["a"] > 1),
            watcher.wait_for(("t", "b"), 0.5, counting_reads(reads, "b"), lambda s: reads["b"] > 1),
        )
        return time.monotonic() - start

    took = asyncio.run(scenario())
    assert reads == {"a": 2, "b": 2}
    assert took < 0.3  # the third look (about 60 ms in), not the 0.5 s deadline


def test_an_unchanged_marker_wakes_nobody() -> None:
    reads = {"a": 0}

    async def scenario() -> None:
        watcher = Watcher(fallback_poll_s=10, commit_marker=lambda: 7)
        await watcher.wait_for(("t", "a"), 0.2, counting_reads(reads, "a"), lambda s: False)

    asyncio.run(scenario())
    assert reads == {"a": 2}  # the first read, and the one at the deadline


def test_a_store_that_cannot_tell_is_asked_once_and_waiters_keep_their_timer() -> None:
    asked = []

    def commit_marker() -> Hashable | None:
        asked.append(time.monotonic())
        return None

    async def scenario() -> None:
        watcher = Watcher(fallback_poll_s=0.05, commit_marker=commit_marker)

        async def read() -> Summary | None:
            return None

        assert await watcher.wait_for(("t", "a"), 0.3, read, lambda s: False) is None
        assert await watcher.wait_for(("t", "a"), 0.1, read, lambda s: False) is None

    asyncio.run(scenario())
    assert len(asked) == 1
