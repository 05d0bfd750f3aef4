"""The watcher's look for other writers: wakes waiters when the store says yes, and
steps aside for good when the store cannot tell."""

from __future__ import annotations

import asyncio
import time

from waymark.model import Summary
from waymark.watch import Watcher


def test_a_yes_from_the_store_wakes_every_waiter_at_once() -> None:
    answers = [False, False, True]
    reads = {"a": 0, "b": 0}

    def written_elsewhere() -> bool | None:
        return answers.pop(0) if answers else False

    async def scenario() -> float:
        watcher = Watcher(fallback_poll_s=10, written_elsewhere=written_elsewhere)

        def reader(name: str):  # type: ignore[no-untyped-def]
            async def read() -> Summary | None:
                reads[name] += 1
                return None

            return read

        start = time.monotonic()
        await asyncio.gather(
            watcher.wait_for(("t", "a"), 0.5, reader("a"), lambda s: reads["a"] > 1),
            watcher.wait_for(("t", "b"), 0.5, reader("b"), lambda s: reads["b"] > 1),
        )
        return time.monotonic() - start

    took = asyncio.run(scenario())
    assert reads == {"a": 2, "b": 2}
    assert took < 0.3  # the third look (about 60 ms in), not the 0.5 s deadline


def test_a_store_that_cannot_tell_is_asked_once_and_waiters_keep_their_timer() -> None:
    asked = []

    def written_elsewhere() -> bool | None:
        asked.append(time.monotonic())
        return None

    async def scenario() -> None:
        watcher = Watcher(fallback_poll_s=0.05, written_elsewhere=written_elsewhere)

        async def read() -> Summary | None:
            return None

        assert await watcher.wait_for(("t", "a"), 0.3, read, lambda s: False) is None

    asyncio.run(scenario())
    assert len(asked) == 1
