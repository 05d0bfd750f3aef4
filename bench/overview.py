"""The overview (``Store.overview``, behind ``GET /v1/overview``) against the raw limit of
the same store in the same run.

Each store (SQLite, and PostgreSQL if it answers) is filled with ``--traces`` traces of
two events each, updated over the last day and spread over ``--datasets`` datasets, one
in ten failed, a few still running. Then, in alternating rounds so that a busy machine
slows them alike:

- ``raw``: ``SELECT domain_id, done, cur_status, COUNT(*), MAX(updated_us) FROM traces
  WHERE tenant = ? AND updated_us >= ? GROUP BY domain_id, done, cur_status``, the least a
  count by dataset and outcome reads (no stall rule, no bound, no folding);
- ``overview``: ``Store.overview`` over the same window (state by search's rule, at most
  the 100,000 most recent traces, datasets folded and ordered).

Prints one JSON object: each store's median milliseconds and the ratio raw / overview
(1.0: the overview costs no more than the bare count). Usage::

    .venv/bin/python bench/overview.py [--traces 100000] [--datasets 200] [--rounds 7]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from waymark.model import Event, Record, now_us, to_record
from waymark.store import migrate, open_store
from waymark.store.sql import SqlStore, _fetch

TENANT = "bench"
DAY_US = 86_400_000_000


def records(traces: int, datasets: int) -> Iterator[list[Record]]:
    now = now_us()
    batch: list[Record] = []
    for i in range(traces):
        at = now - DAY_US + (i * DAY_US) // traces
        domain_id = f"dataset-{i % datasets:04}/1"
        trace_id = f"trace-{i:07}"
        first = Event(trace_id=trace_id, component="router", domain_id=domain_id)
        batch.append(to_record(first, TENANT, at, timestamp_us=at))
        if i % 50:  # one in fifty still running
            last = Event(
                trace_id=trace_id,
                component="writer",
                status="FAILED" if i % 10 == 0 else "SUCCESS",
                trace_status="FINISHED",
            )
            batch.append(to_record(last, TENANT, at + 1000, timestamp_us=at + 1000))
        if len(batch) >= 5000:
            yield batch
            batch = []
    if batch:
        yield batch


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1000


@contextlib.contextmanager
def stores(postgres: str | None) -> Iterator[list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as tmp:
        found = [("sqlite", f"sqlite:///{Path(tmp) / 'overview.db'}")]
        schema = None
        if postgres:
            try:
                schema = f"wm_bench_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(postgres, autocommit=True) as conn:
                    conn.execute(f'CREATE SCHEMA "{schema}"')
                found.append(("postgresql", f"{postgres}?options=-csearch_path%3D{schema}"))
            except psycopg.OperationalError as exc:
                print(f"PostgreSQL not measured: {exc}", file=sys.stderr)
                schema = None
        try:
            yield found
        finally:
            if schema and postgres:
                with psycopg.connect(postgres, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def measure(url: str, traces: int, datasets: int, rounds: int) -> dict[str, Any]:
    migrate.upgrade(url)
    store = open_store(url)
    assert isinstance(store, SqlStore)
    try:
        for batch in records(traces, datasets):
            store.append(batch)
        since = now_us() - 2 * DAY_US  # every trace
        raw_sql = store.q(
            "SELECT domain_id, done, cur_status, COUNT(*), MAX(updated_us) FROM traces"
            " WHERE tenant = ? AND updated_us >= ? GROUP BY domain_id, done, cur_status"
        )

        def raw() -> None:
            store._read(lambda cur: _fetch(raw_sql, (TENANT, since), cur))

        def overview() -> None:
            store.overview(TENANT, since, limit=500)

        counted = store.overview(TENANT, since, limit=500)
        assert sum(counted.counts.values()) == traces, counted.counts
        raw(), overview()  # warm the caches alike
        times: dict[str, list[float]] = {"raw": [], "overview": []}
        for i in range(rounds):
            pair = [("raw", raw), ("overview", overview)]
            for name, work in pair if i % 2 else reversed(pair):
                times[name].append(timed(work))
        raw_ms = statistics.median(times["raw"])
        overview_ms = statistics.median(times["overview"])
        return {
            "raw_ms": round(raw_ms, 1),
            "overview_ms": round(overview_ms, 1),
            "ratio": round(raw_ms / overview_ms, 2),
        }
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    out: dict[str, Any] = {"traces": args.traces, "datasets": args.datasets}
    with stores(args.postgres) as found:
        for name, url in found:
            out[name] = measure(url, args.traces, args.datasets, args.rounds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
