"""Ingest latency while a prune deletes old events, against the same ingest idle, in one run.

A fresh PostgreSQL schema (or SQLite file) is filled with ``--events`` events of traces
whose last event is 40 days old (10 events a trace). Then the same ingest load (appends
of ``--batch`` new events, one after another, from one thread) runs twice, for
``--seconds`` idle, and then for as long as ``waymark prune --older-than 30d`` (the
function behind it, :func:`waymark.retention.prune`) takes to delete every old trace.
Prints one JSON object: the p50 and p99 append latency of each and their ratios, and
how long the prune took. Usage::

    .venv/bin/python bench/retention.py [--events 1000000] [--batch 50] [--seconds 20]
        [--store postgresql|sqlite] [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--steps]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator

import orjson

from pg_batch import fresh_schema  # the same folder: run as `python bench/retention.py`
from waymark import retention
from waymark.model import Event, now_us, to_record
from waymark.store import open_store
from waymark.store.base import Store

DAY_US = 86_400 * 1_000_000


@contextlib.contextmanager
def store_url(kind: str, postgres: str) -> Iterator[str]:
    if kind == "postgresql":
        with fresh_schema(postgres) as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{tmp}/bench.db"


def fill(store: Store, events: int, steps: bool = False) -> None:
    """``steps``: each event names a component and a stage (ten of each, one per event of
    a trace), so that ``trace_steps`` holds two rows per event to delete too."""
    old = now_us() - 40 * DAY_US
    batch = []
    for n in range(events):
        trace = n // 10
        named = {"component": f"step-{n % 10}", "stage": f"STEP{n % 10}"} if steps else {}
        event = Event(
            trace_id=f"old-{trace}", event_id=f"old-{n}", path=f"raw/{trace}.csv", **named
        )
        batch.append(to_record(event, "bench", old, timestamp_us=old + n))
        if len(batch) == 10_000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)


def ingest(
    store: Store, batch: int, seconds: float, tag: str, until: threading.Event | None = None
) -> list[float]:
    """Append latencies (s) for ``seconds``, or, with ``until``, until it is set."""
    latencies = []
    deadline = time.monotonic() + seconds
    n = 0
    while not until.is_set() if until is not None else time.monotonic() < deadline:
        records = []
        for _ in range(batch):
            event = Event(trace_id=f"{tag}-{n // 5}", event_id=f"{tag}-{n}", path="raw/new.csv")
            records.append(to_record(event, "bench", now_us()))
            n += 1
        start = time.perf_counter()
        store.append(records)
        latencies.append(time.perf_counter() - start)
    return latencies


def quantiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": round(cuts[49] * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--steps", action="store_true", help="events name components and stages")
    args = parser.parse_args()
    with store_url(args.store, args.postgres) as url:
        store = open_store(url)
        try:
            started = time.monotonic()
            fill(store, args.events, args.steps)
            fill_s = time.monotonic() - started
            idle = ingest(store, args.batch, args.seconds, "idle")
            deleted = [0]
            finished = threading.Event()

            def prune() -> None:
                before = now_us() - 30 * DAY_US
                try:
                    for done in retention.prune(store, before, tenant="bench"):
                        deleted[0] += done.events
                finally:
                    finished.set()

            pruner = threading.Thread(target=prune)
            started = time.monotonic()
            pruner.start()
            busy = ingest(store, args.batch, 0, "busy", until=finished)
            prune_s = time.monotonic() - started
            pruner.join()
        finally:
            store.close()
    result = {
        "store": args.store,
        "steps": args.steps,
        "old_events": args.events,
        "fill_s": round(fill_s, 1),
        "idle": quantiles(idle),
        "pruning": quantiles(busy),
        "prune_s": round(prune_s, 1),
        "events_pruned": deleted[0],
    }
    result["p99_ratio"] = round(result["pruning"]["p99_ms"] / result["idle"]["p99_ms"], 2)
    result["p50_ratio"] = round(result["pruning"]["p50_ms"] / result["idle"]["p50_ms"], 2)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
