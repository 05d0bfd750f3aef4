"""Trace search by component and stage, with 1,000,000 events stored, on SQLite and
PostgreSQL in one run.

The store is filled through ``Store.append`` (1,000-event batches) with ``--events``
events over ``--events / 10`` traces of ten steps each. Every trace has an uploader and
an ``INDEX`` stage; the other steps are drawn so that some components are named by many
traces and some by few:

- ``data-uploader``: every trace; ``converter-10``: one trace in 10; ``validator-3``: 3
  in 100; ``checker-2``: 2 in 100; ``enricher-1``: 1 in 100 (about as many as a lookup
  by key reads at most, ``SqlStore.step_lookup``);
  ``rare``: 10 traces in all;
- ``legacy-5``: the oldest 5 in 100 traces only (a component no longer used: the case
  where reading summaries by recency finds its matches last).

A store that becomes unavailable (a shared server restarted by someone else) is waited
for; the batch or query is then run again, and an interrupted query is not a sample.
Each query is ``Store.search(..., limit=50)`` (the store's whole answer, summaries
rendered with their errors and paths), asked ``--repeat`` times in rotating order; the
first page, and the second through the cursor. Prints one JSON object: p50 and p99 in
ms per query, with the unfiltered first page (the recency index alone) as the reference
each ratio is taken against. Usage::

    .venv/bin/python bench/search_steps.py [--events 1000000] [--repeat 200]
        [--backends sqlite postgresql] [--postgres postgresql://postgres@127.0.0.1:5432/test]
    .venv/bin/python bench/search_steps.py --append-cost 200000 [--rounds 3]
    .venv/bin/python bench/search_steps.py --append-raw 100000 [--rounds 3]
        [--order grouped|interleaved]
    .venv/bin/python bench/search_steps.py --backends postgresql --own-postgres

``--append-cost`` measures instead what keeping ``trace_steps`` costs SQLite appends: the
same batches with and without it, in alternating fresh files. ``--append-raw`` measures
SQLite appends of the same events against the raw limit of the same run (``executemany``
of the rows they store), in alternating fresh files; ``--order interleaved`` spreads each
trace's events over ten batches, so that every append makes its traces newer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from pg_batch import fresh_schema  # bench/, beside this file
from waymark.errors import Unavailable
from waymark.model import Event, Record, State, to_record
from waymark.store import open_store
from waymark.store.base import Store, TraceQuery

TENANT = "default"
STEPS = 10

QUERIES: dict[str, TraceQuery] = {
    "no filter (reference)": TraceQuery(),
    "component in every trace": TraceQuery(component="data-uploader"),
    "component in 10% of traces": TraceQuery(component="converter-10"),
    "component in 3% of traces": TraceQuery(component="validator-3"),
    "component in 2% of traces": TraceQuery(component="checker-2"),
    "component in 1% of traces": TraceQuery(component="enricher-1"),
    "component in 10 traces": TraceQuery(component="rare"),
    "stage in every trace": TraceQuery(stage="INDEX"),
    "stage in 1% of traces": TraceQuery(stage="ENRICH"),
    "component and stage": TraceQuery(component="converter-10", stage="ENRICH"),
    "component, state FAILED": TraceQuery(component="converter-10", state=State.FAILED),
    "component in the oldest 5% only": TraceQuery(component="legacy-5"),
}


def components_of(t: int, traces: int, rng: random.Random) -> list[tuple[str, str]]:
    """(component, stage) of each step of trace ``t`` (older traces have smaller ``t``)."""
    steps = [("data-uploader", "UPLOAD")]
    if rng.random() < 0.10:
        steps.append(("converter-10", "CONVERT"))
    if rng.random() < 0.03:
        steps.append(("validator-3", "VALIDATE"))
    if rng.random() < 0.02:
        steps.append(("checker-2", "CHECK"))
    if rng.random() < 0.01:
        steps.append(("enricher-1", "ENRICH"))
    if t % (traces // 10) == 7:
        steps.append(("rare", "RARE"))
    if t < traces * 5 // 100:
        steps.append(("legacy-5", "LEGACY"))
    while len(steps) < STEPS - 1:
        n = rng.randrange(20)
        steps.append((f"step-{n}", f"STEP{n}"))
    steps.append(("indexer", "INDEX"))
    return steps[:STEPS]


def batches(events: int, seed: int = 7) -> Iterator[list[Record]]:
    """Batches of 1,000 records, 100 traces of ten events each, oldest traces first."""
    rng = random.Random(seed)
    traces = events // STEPS
    batch: list[Record] = []
    base_ms = 1_795_000_000_000
    for t in range(traces):
        steps = components_of(t, traces, rng)
        failed = rng.random() < 0.05
        for j, (component, stage) in enumerate(steps):
            last = j == len(steps) - 1
            event = Event(
                trace_id=f"trace-{t}",
                component=component,
                stage=stage,
                status="FAILED" if last and failed else "SUCCESS",
                trace_status="FINISHED" if last else "CONTINUE",
                end_time=base_ms + t * 100 + j,
            )
            batch.append(to_record(event, TENANT, (base_ms + t * 100 + j) * 1000))
        if len(batch) >= 1000:
            yield batch
            batch = []
    if batch:
        yield batch


@contextlib.contextmanager
def place(backend: str, server: str) -> Iterator[str]:
    if backend == "postgresql":
        with fresh_schema(server) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="wm-bench-") as folder:
        yield f"sqlite:///{folder}/search.db"


def wait_for(store: Store) -> None:
    """Until the store answers again (another user of a shared server restarted it)."""
    while True:
        time.sleep(1)
        try:
            store.ping()
            return
        except Unavailable:
            continue


def fill(store: Store, backend: str, url: str, events: int) -> float:
    started = time.perf_counter()
    for batch in batches(events):
        while True:
            try:
                store.append(batch)  # again after a restart: appends are idempotent
                break
            except Unavailable:
                wait_for(store)
    if backend == "postgresql":  # what autovacuum would do after a load this size
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    return time.perf_counter() - started


def measure(store: Store, repeat: int) -> dict[str, dict[str, Any]]:
    """p50 and p99 of each query's wall-clock time, and the p99 of the CPU time of the
    thread that asked (on SQLite the whole query runs there; on PostgreSQL the server's
    share is not in it): on a busy machine, the wall clock also counts the wait for a
    core."""
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def timed(name: str, query: TraceQuery, cursor: str | None) -> str | None:
        while True:
            started, started_cpu = time.perf_counter(), time.thread_time()
            try:
                page = store.search(TENANT, query, limit=50, cursor=cursor)
                break
            except Unavailable:  # the server restarted: not a sample
                wait_for(store)
        cpu.setdefault(name, []).append((time.thread_time() - started_cpu) * 1000)
        wall.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return page.next_cursor

    names = list(QUERIES)
    for round_ in range(repeat):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            following = timed(name, QUERIES[name], None)
            if following is not None:
                timed(f"{name}, page 2", QUERIES[name], following)
    out = {}
    reference = statistics.quantiles(wall["no filter (reference)"], n=100)[98]
    for name, values in wall.items():
        cuts = statistics.quantiles(values, n=100)
        found = len(store.search(TENANT, QUERIES[name.split(", page")[0]], limit=50).items)
        out[name] = {
            "p50_ms": round(cuts[49], 2),
            "p99_ms": round(cuts[98], 2),
            "p99_vs_reference": round(cuts[98] / reference, 2),
            "cpu_p99_ms": round(statistics.quantiles(cpu[name], n=100)[98], 2),
            "first_page_items": found,
        }
    return out


def interleaved(events: int) -> Iterator[list[Record]]:
    """The same events as :func:`batches`, step by step: the first step of every trace,
    then the second, ...; in 1,000-event batches, so that each append makes its traces
    newer (every trace's steps span ten batches)."""
    records = [r for batch in batches(events) for r in batch]
    ordered = [r for j in range(STEPS) for r in records[j::STEPS]]
    for start in range(0, len(ordered), 1000):
        yield ordered[start : start + 1000]


def appends_per_s(ready: list[list[Record]]) -> float:
    """Events/s of ``Store.append`` of these batches, one after another, into a fresh
    SQLite file."""
    with place("sqlite", "") as url:
        store = open_store(url)
        try:
            started = time.perf_counter()
            for batch in ready:
                store.append(batch)
            return sum(map(len, ready)) / (time.perf_counter() - started)
        finally:
            store.close()


def append_vs_raw(events: int, rounds: int, order: str) -> dict[str, Any]:
    """SQLite appends against the raw limit of the same run: ``Store.append`` of the
    1,000-event batches into a fresh file, and ``executemany`` of the rows those batches
    store (events, paths, summaries: the merge of a trace into its row) in one transaction
    per batch into another; alternating, ``rounds`` times, the medians in events/s.
    ``order``: ``grouped`` (each trace's ten events in one batch, as :func:`batches`) or
    ``interleaved`` (:func:`interleaved`)."""
    from waymark.store.sql import INSERT_EVENT, INSERT_PATH, UPSERT_TRACE, Prepared

    ready = list(batches(events) if order == "grouped" else interleaved(events))
    prepared = [Prepared(batch) for batch in ready]  # made before the clock starts
    rates: dict[str, list[float]] = {"append": [], "raw": []}
    for _ in range(rounds):
        rates["append"].append(appends_per_s(ready))
        with place("sqlite", "") as url:
            store = open_store(url)
            conn = store._connect()  # type: ignore[attr-defined]  # the store's settings
            try:
                started = time.perf_counter()
                for rows in prepared:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(INSERT_EVENT, rows.events)
                    conn.executemany(INSERT_PATH, rows.paths)
                    conn.executemany(UPSERT_TRACE, rows.traces)
                    conn.execute("COMMIT")
                rates["raw"].append(events / (time.perf_counter() - started))
            finally:
                conn.close()
                store.close()
    out: dict[str, Any] = {k: round(statistics.median(v)) for k, v in rates.items()}
    out["ratio"] = round(out["append"] / out["raw"], 3)
    out["order"] = order
    return out


def append_cost(events: int, rounds: int) -> dict[str, Any]:
    """What keeping ``trace_steps`` costs an append: SQLite, the same batches stored with
    and without it (its insert made a no-op), in alternating fresh files; the medians of
    ``rounds`` pairs, in events/s."""
    from waymark.store.sqlite import SQLiteStore

    keep = SQLiteStore._insert_steps
    ready = list(batches(events))  # made before the clock starts
    rates: dict[str, list[float]] = {"with trace_steps": [], "without": []}
    for _ in range(rounds):
        for name in rates:
            SQLiteStore._insert_steps = keep if name != "without" else lambda *a: None  # type: ignore[method-assign]
            rates[name].append(appends_per_s(ready))
    SQLiteStore._insert_steps = keep  # type: ignore[method-assign]
    out: dict[str, Any] = {k: round(statistics.median(v)) for k, v in rates.items()}
    out["ratio"] = round(out["with trace_steps"] / out["without"], 3)
    return out


@contextlib.contextmanager
def own_postgres() -> Iterator[str]:
    """A PostgreSQL server of this run's own (initdb's default settings) on a free loopback
    port, stopped and removed after: a shared server may be restarted by others mid-run.
    Run as the ``postgres`` user when this process is root (initdb refuses root)."""
    import shutil
    import socket
    import subprocess

    bindir = (
        subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "/usr/lib/postgresql/15/bin"
    )
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = tempfile.mkdtemp(prefix="wm-bench-pg-")
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = f"{folder}/data"
    subprocess.run(
        [*as_user, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [
            *as_user,
            f"{bindir}/pg_ctl",
            "-D",
            data,
            "-o",
            options,
            "-l",
            f"{folder}/log",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--append-cost",
        type=int,
        metavar="EVENTS",
        help="only measure what trace_steps costs SQLite appends, with this many events",
    )
    parser.add_argument(
        "--append-raw",
        type=int,
        metavar="EVENTS",
        help="only measure SQLite appends against the raw limit, with this many events",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--order", choices=["grouped", "interleaved"], default="interleaved")
    parser.add_argument(
        "--own-postgres",
        action="store_true",
        help="run a PostgreSQL server of this run's own instead of --postgres",
    )
    args = parser.parse_args()
    if args.append_cost:
        print(json.dumps(append_cost(args.append_cost, args.rounds)))
        return
    if args.append_raw:
        print(json.dumps(append_vs_raw(args.append_raw, args.rounds, args.order)))
        return
    result: dict[str, Any] = {"events": args.events, "limit_ms": 50}
    with contextlib.ExitStack() as stack:
        if args.own_postgres and "postgresql" in args.backends:
            args.postgres = stack.enter_context(own_postgres())
        run(args, result)
    print(json.dumps(result, indent=1))


def run(args: argparse.Namespace, result: dict[str, Any]) -> None:
    for backend in args.backends:
        with place(backend, args.postgres) as url:
            store = open_store(url)
            try:
                loaded_s = fill(store, backend, url, args.events)
                before = os.getloadavg()[0]
                measured = measure(store, args.repeat)
                result[backend] = {
                    "load_s": round(loaded_s, 1),
                    "load_average": [round(before, 1), round(os.getloadavg()[0], 1)],
                    **measured,
                }
            finally:
                store.close()
        print(json.dumps({backend: result[backend]}), flush=True)


if __name__ == "__main__":
    main()
