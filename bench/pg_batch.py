"""Batched appends into PostgreSQL against the raw limit of the same machine, in one run.

Three ways to store the same events, each into a fresh schema on the same server:

- ``copy``: a raw ``COPY`` of the rows an append ends up storing (events, paths, one
  summary row per trace), one COPY per table in one transaction: the ceiling;
- ``direct``: ``PostgresStore.append`` of 500-event batches, one transaction each, from
  as many threads at once as the API runs appends
  (``waymark.sink.APPENDS_AT_ONCE``);
- ``http``: ``POST /v1/events`` of the same 500-event JSON batches to ``waymark serve
  --store postgresql://...`` (a subprocess), from ``--clients`` concurrent clients.

The three run ``--rounds`` times in rotating order, so that a busy machine slows them
alike; the figures are medians. ``--order grouped`` sends each trace's events
together instead of interleaving traces across batches. Prints one JSON object:
events/s of each and their ratios to ``copy``. Usage::

    .venv/bin/python bench/pg_batch.py [--events 50000] [--batch 500] [--writers 2]
        [--clients 2] [--server-workers 1] [--rounds 3] [--order interleaved|grouped] [--no-http]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import psycopg

from waymark.ingest import to_records
from waymark.model import Event, Record
from waymark.pipelines import Pipelines
from waymark.sink import APPENDS_AT_ONCE
from waymark.store import migrate
from waymark.store.postgres import PostgresStore
from waymark.store.sql import (
    EVENT_COLUMNS,
    PATH_COLUMNS,
    TRACE_COLUMNS,
    event_row,
    path_rows,
    trace_row,
)
from waymark.summary import partials

STEPS = ("receive", "validate", "transform", "write", "index")


def make_events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` events of traces five steps long, interleaved as a busy system sends them:
    each batch carries steps of many traces, and a trace's steps span several batches."""
    rng = random.Random(seed)
    traces = count // len(STEPS)
    base_ms = 1_790_000_000_000
    events = []
    for step, component in enumerate(STEPS):
        for t in range(traces):
            trace_id = f"ds{t % 50}-{uuid.UUID(int=rng.getrandbits(128))}"
            events.append(
                {
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "trace_id": f"trace-{t:07}",
                    "component": component,
                    "stage": component.upper(),
                    "operation": "run",
                    "domain": "dataset",
                    "domain_id": f"ds{t % 50}/1",
                    "status": "SUCCESS",
                    "trace_status": "FINISHED" if step == len(STEPS) - 1 else "CONTINUE",
                    "start_time": base_ms + t * 10 + step * 1000,
                    "end_time": base_ms + t * 10 + step * 1000 + 250,
                    "path": f"s3://bucket/{trace_id}/{component}.csv",
                    "body": {"files_incoming": [f"s3://bucket/{trace_id}/in.csv"]},
                }
            )
    return events


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@contextlib.contextmanager
def fresh_schema(server: str) -> Iterator[str]:
    name = f"wm_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    url = f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def timed_in_threads(work: Callable[[Any], None], shares: list[Any]) -> float:
    """Seconds for one thread per share to do its work."""
    started = time.perf_counter()
    with ThreadPoolExecutor(len(shares)) as pool:
        list(pool.map(work, shares))
    return time.perf_counter() - started


def run_copy(url: str, records: list[Record]) -> float:
    """COPY the rows an append would store; returns seconds."""
    tables = {
        "events": (", ".join(EVENT_COLUMNS), [event_row(r) for r in records]),
        "paths": (PATH_COLUMNS, path_rows(records)),
        "traces": (
            ", ".join(TRACE_COLUMNS),
            [trace_row(t, tid, p) for (t, tid), p in sorted(partials(records).items())],
        ),
    }
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for table, (columns, rows) in tables.items():
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        return time.perf_counter() - started


def run_direct(url: str, records: list[Record], size: int, writers: int) -> float:
    """``writers`` threads append their share of the batches through one store."""
    store = PostgresStore(url)
    shares = [batches(records, size)[i::writers] for i in range(writers)]

    def append_all(share: list[list[Record]]) -> None:
        for batch in share:
            store.append(batch)

    try:
        return timed_in_threads(append_all, shares)
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_http(
    url: str, events: list[dict[str, Any]], size: int, clients: int, workers: int
) -> float:
    port = free_port()
    command = [sys.executable, "-m", "waymark.cli", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    server = subprocess.Popen(
        [*command, "--store", url, "--log-level", "warning"], env={**os.environ}
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            time.sleep(0.05)
        bodies = [orjson.dumps(b) for b in batches(events, size)]
        shares = [bodies[i::clients] for i in range(clients)]

        def post_all(share: list[bytes]) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                for body in share:
                    response = client.post(
                        "/v1/events", content=body, headers={"content-type": "application/json"}
                    )
                    if response.status_code != 202:
                        raise RuntimeError(f"{response.status_code}: {response.text}")

        return timed_in_threads(post_all, shares)
    finally:
        server.terminate()
        server.wait(10)


def count_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--writers",
        type=int,
        default=APPENDS_AT_ONCE,
        help="threads appending directly (default: as many as the API runs at once)",
    )
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    parser.add_argument("--server-workers", type=int, default=1, help="waymark serve --workers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--order", choices=["interleaved", "grouped"], default="interleaved")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("WAYMARK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1/test"),
    )
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()

    events = make_events(args.events)
    if args.order == "grouped":
        events.sort(key=lambda e: (e["trace_id"], e["start_time"]))
    records = to_records([Event.model_validate(e) for e in events], "default", Pipelines())
    runs: dict[str, Any] = {
        "copy": lambda url: run_copy(url, records),
        "direct": lambda url: run_direct(url, records, args.batch, args.writers),
    }
    if not args.no_http:
        runs["http"] = lambda url: run_http(
            url, events, args.batch, args.clients, args.server_workers
        )
    rates: dict[str, list[int]] = {name: [] for name in runs}
    names = list(runs)
    for round_no in range(args.rounds):
        for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
            with fresh_schema(args.postgres) as url:
                seconds = runs[name](url)
                if count_events(url) != len(records):
                    raise SystemExit(f"{name} stored {count_events(url)} of {len(records)}")
            rates[name].append(round(len(records) / seconds))
    median = {name: round(statistics.median(values)) for name, values in rates.items()}
    result = {
        "events": len(records),
        "batch": args.batch,
        "order": args.order,
        "direct_writers": args.writers,
        "http_clients": None if args.no_http else args.clients,
        "http_server_workers": None if args.no_http else args.server_workers,
        "rounds": args.rounds,
        "events_per_s": median,
        "ratio_to_copy": {
            name: round(rate / median["copy"], 3) for name, rate in median.items() if name != "copy"
        },
        "every_round": rates,
        "target": {"direct_vs_copy": 0.6},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
