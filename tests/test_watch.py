"""Waiters cost nothing until their trace changes: the waiters of one trace share one read
per change, a commit marker or a count check wakes only the waiters of traces that
changed, and a store that cannot tell falls back to checking counts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.test_api_loop import StuckStore, serving
from waymark.model import Summary
from waymark.watch import Key, Watcher


def counting_reads(
    reads: dict[str, int], name: str, count: Callable[[], int] = lambda: 0
) -> Callable[[], Awaitable[Summary | None]]:
    """A read of trace ``name`` that counts itself; the summary it gives has ``count()``
    events (None while that is 0)."""

    async def read() -> Summary | None:
        reads[name] += 1
        await asyncio.sleep(0.001)
        n = count()
        return None if n == 0 else _summary(name, n)

    return read


def _summary(trace_id: str, events: int) -> Summary:
    return Summary.model_validate(
        {
            "trace_id": trace_id, "tenant": "t", "done": False, "trace_status": "CONTINUE",
            "trace_event_status": "OK", "outcome": "SUCCESS", "state": "RUNNING",
            "started_at": None, "updated_at": "", "finished_at": None, "duration_ms": None,
            "event_count": events, "domain": None, "domain_id": None, "user": None,
            "current": {"event_id": "e", "component": None, "stage": None, "operation": None,
                        "status": "SUCCESS", "time": ""},
            "error_count": 0, "errors": [], "last_errors": [], "path_count": 0, "paths": [],
            "last_paths": [], "links": {"events": "", "errors": "", "paths": "", "lineage": ""},
        }
    )  # fmt: skip


def test_waiters_of_one_trace_share_one_read_and_read_again_once_per_change() -> None:
    reads = {"a": 0}
    events = [1]

    async def scenario() -> list[Summary | None]:
        watcher = Watcher()
        read = counting_reads(reads, "a", lambda: events[0])
        waiting = [
            asyncio.ensure_future(
                watcher.wait_for(
                    ("t", "a"), 0.5, read, lambda s: s is not None and s.event_count > 2
                )
            )
            for _ in range(100)
        ]
        await asyncio.sleep(0.15)
        assert reads == {"a": 1} and watcher.waiting == 100
        events[0] = 2
        watcher.notify([("t", "a")])
        await asyncio.sleep(0.05)
        assert reads == {"a": 2}
        events[0] = 3
        watcher.notify([("t", "b"), ("t", "a")])
        return await asyncio.gather(*waiting)

    found = asyncio.run(scenario())
    assert reads == {"a": 3}
    assert all(s is not None and s.event_count == 3 for s in found)


def test_waiters_that_time_out_read_nothing_more() -> None:
    reads = {"a": 0}

    async def scenario() -> None:
        watcher = Watcher()
        read = counting_reads(reads, "a", lambda: 1)
        await asyncio.gather(
            *(watcher.wait_for(("t", "a"), 0.3, read, lambda s: False) for _ in range(20))
        )
        assert watcher.waiting == 0

    asyncio.run(scenario())
    assert reads == {"a": 1}


def test_a_moved_marker_wakes_only_the_waiters_of_traces_whose_counts_changed() -> None:
    """Another worker commits (the marker moves): the watched traces' counts are read once,
    and only the trace that changed is read again."""
    markers = [7, 7, 8, 8, 8, 9]  # before the first read, then at each look
    counts = {("t", "a"): 1, ("t", "b"): 1}
    reads = {"a": 0, "b": 0}
    asked: list[list[Key]] = []

    def commit_marker() -> Hashable | None:
        return markers.pop(0) if markers else 9

    def event_counts(keys: Sequence[Key]) -> dict[Key, int]:
        asked.append(sorted(keys))
        if len(asked) == 2:  # the second check: "a" has a new event
            counts[("t", "a")] = 2
        return {k: counts[k] for k in keys}

    async def scenario() -> float:
        watcher = Watcher(counts=event_counts, commit_marker=commit_marker, look_every_s=0.02)
        start = time.monotonic()
        await asyncio.gather(
            watcher.wait_for(
                ("t", "a"),
                1,
                counting_reads(reads, "a", lambda: counts[("t", "a")]),
                lambda s: s is not None and s.event_count == 2,
            ),
            watcher.wait_for(
                ("t", "b"), 0.3, counting_reads(reads, "b", lambda: 1), lambda s: False
            ),
        )
        return time.monotonic() - start

    took = asyncio.run(scenario())
    assert asked == [[("t", "a"), ("t", "b")], [("t", "a"), ("t", "b")]]  # when it moved
    assert reads == {"a": 2, "b": 1}
    assert took < 0.5


def test_a_store_without_a_marker_has_its_counts_checked_now_and_then() -> None:
    checks: list[float] = []
    count = [1]

    def event_counts(keys: Sequence[Key]) -> dict[Key, int]:
        checks.append(time.monotonic())
        return {key: count[0] for key in keys}

    async def scenario() -> Summary | None:
        watcher = Watcher(counts=event_counts, commit_marker=lambda: None, check_every_s=0.1)
        reads = {"a": 0}

        async def change_later() -> None:
            await asyncio.sleep(0.35)
            count[0] = 2

        changing = asyncio.ensure_future(change_later())
        found = await watcher.wait_for(
            ("t", "a"),
            2,
            counting_reads(reads, "a", lambda: count[0]),
            lambda s: s is not None and s.event_count == 2,
        )
        await changing
        assert reads == {"a": 2}
        return found

    found = asyncio.run(scenario())
    assert found is not None and found.event_count == 2
    assert 3 <= len(checks) <= 6  # every 0.1 s until the change at 0.35 s


class CountingStore(StuckStore):
    """A SQLite store that counts its summary reads."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads = 0
        self._lock = threading.Lock()

    def summaries(self, tenant: str, trace_ids: Sequence[str]) -> list[Summary]:
        with self._lock:
            self.reads += 1
        return super().summaries(tenant, trace_ids)


def test_many_waiting_clients_cost_one_read_per_change(tmp_path: Path) -> None:
    """Thirty clients wait on one trace for two seconds. The server reads the summary once
    for all of them, once again when an event arrives, and once when it finishes; it used
    to re-read for each waiter every half second."""
    store = CountingStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with serving(store) as url, ThreadPoolExecutor(30) as pool:
            httpx.post(f"{url}/v1/events", json={"trace_id": "w"}).raise_for_status()
            before = store.reads

            def wait() -> dict[str, object]:
                r = httpx.get(f"{url}/v1/traces/w", params={"wait": 10}, timeout=20)
                r.raise_for_status()
                return dict(r.json())

            waiting = [pool.submit(wait) for _ in range(30)]
            time.sleep(1.5)
            assert store.reads - before == 1
            httpx.post(f"{url}/v1/events", json={"trace_id": "w"}).raise_for_status()
            time.sleep(0.5)
            assert store.reads - before == 2
            finish = {"trace_id": "w", "trace_status": "FINISHED"}
            httpx.post(f"{url}/v1/events", json=finish).raise_for_status()
            answers = [w.result(20) for w in waiting]
            assert store.reads - before == 3
        assert all(a["done"] and a["event_count"] == 3 for a in answers)
    finally:
        store.close()
