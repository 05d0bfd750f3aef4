"""The bus path against the raw limit, measured side by side in one run; prints JSON.

    python bench/bus.py [--events 100000] [--collectors 2] [--store postgresql://...]

1. raw COPY: the run's event rows COPY'd into the ``events`` table of a fresh schema
   (the most any writer could do with these rows on this machine);
2. bus path: HTTP batches of 500 events -> ``waymark serve`` (bus mode) -> JetStream ->
   ``--collectors`` collector processes -> the store (a second fresh schema), timed from
   the first POST until the last event is in the store;
3. lag: for every batch, from its 202 until ``GET /v1/traces/{id}?wait=`` on one of its
   traces (which the batch finishes) answers done: what a waiting client sees, through
   the collector's commit and the change feed. p50 and p99.

Streams, consumer and schemas get a random name and are removed afterwards. Needs the
PostgreSQL and NATS of the test set-up (``--store sqlite:///...`` works for a look
without PostgreSQL; the COPY row is then skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg

import pg_batch  # the same folder: run as `python bench/bus.py`
from pg_batch import fresh_schema
from waymark.bus.base import BusSettings
from waymark.bus.nats import delete_streams
from waymark.ingest import to_records
from waymark.model import Event, now_us
from waymark.pipelines import Pipelines
from waymark.store.sql import EVENT_COLUMNS, event_row

PY = sys.executable
PG = os.environ.get("WAYMARK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NATS = "nats://127.0.0.1:4222"
BATCH = 500
JSON = {"content-type": "application/json"}
PER_TRACE = 10


def events(n: int, run: str) -> list[dict[str, Any]]:
    """``n`` events, ten per trace, each trace's last one FINISHED; batches hold whole traces."""
    base = datetime.now(UTC) - timedelta(minutes=30)
    out = []
    for i in range(n):
        t, e = divmod(i, PER_TRACE)
        out.append(
            {
                "event_id": f"{run}-{t}-{e}",
                "trace_id": f"{run}-{t}",
                "component": ("router", "transform", "writer", "indexer")[e % 4],
                "stage": ("UPLOAD", "TRANSFORM", "WRITE", "INDEX")[e % 4],
                "status": "SUCCESS",
                "trace_status": "FINISHED" if e == PER_TRACE - 1 else "CONTINUE",
                "end_time": (base + timedelta(milliseconds=i)).isoformat(),
                "path": f"raw/{run}/{t}/part-{e}.csv",
            }
        )
    return out


def pg_schema() -> contextlib.AbstractContextManager[str]:
    """A fresh, migrated schema on the test server (the PostgreSQL benchmark's helper)."""
    return fresh_schema(PG)


def raw_copy(docs: list[dict[str, Any]]) -> float:
    """Seconds to COPY the run's event rows into a fresh schema's events table."""
    records = to_records(
        [Event.model_validate(d) for d in docs], "default", Pipelines(), received_us=now_us()
    )
    rows = [event_row(r) for r in records]
    columns = ", ".join(EVENT_COLUMNS)
    with pg_schema() as url, psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def count(store: str) -> int:
    if store.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(store[len("sqlite:///") :])) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    with psycopg.connect(store) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        assert row is not None
        return int(row[0])


async def drive(
    url: str, docs: list[dict[str, Any]], concurrency: int
) -> tuple[list[float], float]:
    """POST the batches with ``concurrency`` clients; returns each batch's lag (s) and when
    the last batch was accepted (``perf_counter``)."""
    # Bodies encoded before the clock starts: the load generator shares the machine, and
    # its JSON encoding is not the path under test.
    batches = [docs[i : i + BATCH] for i in range(0, len(docs), BATCH)]
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait((b[-1]["trace_id"], orjson.dumps(b)))
    lags: list[float] = []
    waits: list[asyncio.Task[None]] = []
    last_accepted = 0.0

    async def lag(client: httpx.AsyncClient, trace_id: str, accepted_at: float) -> None:
        answer = await client.get(f"{url}/v1/traces/{trace_id}", params={"wait": 60}, timeout=90)
        answer.raise_for_status()
        assert answer.json()["done"], answer.text
        lags.append(time.perf_counter() - accepted_at)

    async def worker(client: httpx.AsyncClient, reader: httpx.AsyncClient) -> None:
        nonlocal last_accepted
        while not queue.empty():
            last_trace, body = queue.get_nowait()
            while True:
                answer = await client.post(
                    f"{url}/v1/events", content=body, headers=JSON, timeout=30
                )
                if answer.status_code == 202:
                    last_accepted = time.perf_counter()
                    break
                if answer.status_code != 503:
                    raise RuntimeError(answer.text)
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
            waits.append(asyncio.create_task(lag(reader, last_trace, time.perf_counter())))

    # Two clients: waiting readers must not take the posting workers' connections.
    unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient() as poster, httpx.AsyncClient(limits=unlimited) as reader:
        await asyncio.gather(*(worker(poster, reader) for _ in range(concurrency)))
        await asyncio.gather(*waits)
    return lags, last_accepted


async def light_lag(url: str, run: str, n: int) -> list[float]:
    """One finishing event at a time, each waited for: the path's latency without a backlog."""
    lags = []
    async with httpx.AsyncClient() as client:
        for i in range(n):
            trace = f"{run}-light-{i}"
            answer = await client.post(
                f"{url}/v1/events", json={"trace_id": trace, "trace_status": "FINISHED"}
            )
            assert answer.status_code == 202, answer.text
            accepted_at = time.perf_counter()
            done = await client.get(f"{url}/v1/traces/{trace}", params={"wait": 30}, timeout=60)
            assert done.json()["done"], done.text
            lags.append(time.perf_counter() - accepted_at)
    return lags


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """User + system CPU time of a running process so far (Linux ``/proc``)."""
    with open(f"/proc/{proc.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def waymark(*args: str) -> subprocess.Popen[bytes]:
    """A ``waymark`` command in a subprocess, output discarded."""
    return subprocess.Popen(
        [PY, "-m", "waymark.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def bus_path(
    store: str, docs: list[dict[str, Any]], collectors: int, concurrency: int
) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    bus = (
        f"{NATS}?stream=BENCH_{suffix}&gsm_stream=BENCHG_{suffix}&prefix=bench{suffix}"
        f"&gsm_subject=bench{suffix}.gsm&consumer=bench{suffix}"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    common = ["--store", store, "--bus", bus, "--log-level", "warning"]
    try:
        procs.append(waymark("serve", "--port", str(port), *common))
        procs += [waymark("collect", *common) for _ in range(collectors)]
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("waymark serve did not start")
            time.sleep(0.1)
        httpx.post(f"{url}/v1/events", json={"trace_id": "warm-up"}).raise_for_status()
        while count(store) < 1:
            time.sleep(0.05)
        started = time.perf_counter()
        lags, last_accepted = asyncio.run(drive(url, docs, concurrency))
        accepted = last_accepted - started
        while count(store) < len(docs) + 1:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu = {
            "api_cpu_s": cpu_seconds(procs[0]),
            "collectors_cpu_s": sum(map(cpu_seconds, procs[1:])),
        }
        light = sorted(asyncio.run(light_lag(url, uuid.uuid4().hex[:6], 50)))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        asyncio.run(delete_streams(BusSettings.from_url(bus)))
    lags.sort()
    return {
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(docs) / elapsed),
        "accepted_events_per_s": round(len(docs) / accepted),
        "lag_under_load_p50_ms": round(statistics.median(lags) * 1000, 1),
        "lag_under_load_p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 1),
        "batches": len(lags),
        **{k: round(v, 2) for k, v in cpu.items()},
        "light_load_lag_p50_ms": round(statistics.median(light) * 1000, 1),
        "light_load_lag_p99_ms": round(
            light[min(len(light) - 1, int(len(light) * 0.99))] * 1000, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--collectors", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP clients posting at once")
    parser.add_argument("--store", default="", help="default: a fresh PostgreSQL schema")
    args = parser.parse_args()
    n = args.events - args.events % BATCH
    docs = events(n, uuid.uuid4().hex[:6])
    result: dict[str, Any] = {
        "events": n,
        "batch": BATCH,
        "collectors": args.collectors,
        "cpus": os.cpu_count(),
    }
    if args.store:
        result["store"] = args.store.split("?")[0]
        result["bus"] = bus_path(args.store, docs, args.collectors, args.concurrency)
    else:
        result["store"] = "postgresql (fresh schema)"
        copy_s = raw_copy(docs)
        result["raw_copy"] = {"seconds": round(copy_s, 3), "events_per_s": round(n / copy_s)}
        # The rows the path ends up storing (events, paths, summaries), COPYed as
        # bench/pg_batch.py does: the baseline of the batched-append figures.
        records = to_records(
            [Event.model_validate(d) for d in docs], "default", Pipelines(), received_us=now_us()
        )
        with pg_schema() as url:
            all_s = pg_batch.run_copy(url, records)
        result["raw_copy_all_tables"] = {
            "seconds": round(all_s, 3),
            "events_per_s": round(n / all_s),
        }
        with pg_schema() as url:
            result["bus"] = bus_path(url, docs, args.collectors, args.concurrency)
        result["bus_vs_raw_copy"] = round(
            result["bus"]["events_per_s"] / result["raw_copy"]["events_per_s"], 3
        )
        result["bus_vs_raw_copy_all_tables"] = round(
            result["bus"]["events_per_s"] / result["raw_copy_all_tables"]["events_per_s"], 3
        )
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
