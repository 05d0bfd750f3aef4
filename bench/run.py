"""Waymark's benchmarks: every figure next to the raw limit measured in the same run.

    python bench/run.py [--quick] [--only NAME ...]

Workloads: single (single-event POSTs vs a bare ASGI app), batch (500-event POSTs into
SQLite vs executemany), reads (summary, events page, search, path lookup p50/p99 with
10,000,000 events stored, 100,000 with --quick; WAYMARK_BENCH_READ_EVENTS overrides),
completion (finishing event -> waiting client), postgres (bench/pg_batch.py), bus
(bench/bus.py), tracker (bench/tracker.py), auth (bench/auth.py: API keys on against
off). Prints a table and writes
``bench/results.json``. The server under test is pinned to CPU 0 and the load generator
(wrk) to CPU 1, so that the generator is not the bottleneck; the bare-ASGI row shows the
generator's and uvicorn's own ceiling. Two rows run ``serve --workers 2`` on both CPUs
(wrk shares CPU 1): 500-event batches, counting what was stored (:func:`staggered_rate`),
and summary GETs with 16 connections.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
console = Console(width=150)


# -- helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpus: int | str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpus), *argv] if shutil.which("taskset") else argv


@contextlib.contextmanager
def server(
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
    cpus: str = "0",
    health: str | None = None,
) -> Iterator[str]:
    """Run a server on ``cpus`` (CPU 0) until the block ends; yields its base URL once it
    accepts connections, or once ``health`` (a path) answers 200."""
    proc = subprocess.Popen(pinned(cpus, argv), env={**os.environ, **(env or {})}, cwd=HERE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
                if health is None or httpx.get(url + health, timeout=1).status_code == 200:
                    break
            except (OSError, httpx.TransportError):
                time.sleep(0.1)
        else:
            raise RuntimeError(f"server {argv} did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def waymark_server(store: str, port: int, workers: int = 1, **env: str) -> Iterator[str]:
    argv = [PY, "-m", "waymark.cli", "serve", "--port", str(port), "--store", store]
    argv += ["--log-level", "warning", "--workers", str(workers)]
    cpus = "0" if workers == 1 else "0,1"
    with server(argv, port, env, cpus=cpus, health="/healthz") as url:
        if workers > 1:
            time.sleep(2)  # the other workers come up after the first answers
        yield url


def wrk(
    url: str, script: str, seconds: float, connections: int, env: dict[str, str] | None = None
) -> dict[str, float]:
    """Run wrk on CPU 1; requests/s and latency percentiles (µs)."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: `apt-get install wrk` (make bench installs it)")
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(HERE / script), url]
    out = subprocess.run(
        pinned(1, argv), capture_output=True, text=True, env={**os.environ, **(env or {})}
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = re.search(r"LATENCY_US p50=(\d+) p99=(\d+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
    result = {"rps": rps}
    if lat:
        result |= {"p50_us": float(lat.group(1)), "p99_us": float(lat.group(2))}
    return result


def staggered_rate(
    url: str, db: str, script: str, seconds: float, generators: int = 4
) -> tuple[float, float]:
    """Events/s stored while ``generators`` wrk processes of one connection each, started
    half a second apart, all run (the count of stored events read from ``db`` at both ends
    of a window of ``seconds``), and the worst of their p99 latencies (µs).

    For servers of several worker processes: the workers share one listening socket, and
    the one that wakes first accepts every connection waiting, so connections opened at
    once (as one wrk opens its own) tend to land on one worker. Opened half a second
    apart, a new connection more often finds an idle worker to take it."""
    stagger = 0.5
    run_s = seconds + generators * stagger + 3
    argv = ["wrk", "-t1", "-c1", f"-d{math.ceil(run_s)}s", "-s", str(HERE / script), url]
    procs = []
    for i in range(generators):
        if i:
            time.sleep(stagger)
        procs.append(subprocess.Popen(pinned(1, argv), stdout=subprocess.PIPE, text=True))
    time.sleep(1)

    def stored() -> tuple[float, int]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return time.monotonic(), conn.execute("SELECT max(rowid) FROM events").fetchone()[0]

    t0, n0 = stored()
    time.sleep(seconds)
    t1, n1 = stored()
    p99 = 0.0
    for proc in procs:
        out = proc.communicate()[0]
        if "Non-2xx" in out:
            raise RuntimeError(f"wrk saw error responses:\n{out}")
        p99 = max(p99, float(re.search(r"p99=(\d+)", out).group(1)))  # type: ignore[union-attr]
    return (n1 - n0) / (t1 - t0), p99


def row(name: str, figure: float, unit: str, limit: float | None, note: str = "") -> dict[str, Any]:
    return {
        "workload": name,
        "figure": round(figure, 1),
        "unit": unit,
        "raw_limit": None if limit is None else round(limit, 1),
        "ratio": None if not limit else round(figure / limit, 3),
        "note": note,
    }


# -- workloads ----------------------------------------------------------------------------------


def single_posts(quick: bool) -> list[dict[str, Any]]:
    seconds = 4 if quick else 15
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with waymark_server(f"sqlite:///{tmp}/w.db", port) as url:
            wrk(url, "post_one.lua", 1 if quick else 2, 64)  # warm up
            ours = wrk(url, "post_one.lua", seconds, 64)
    port = free_port()
    argv = [PY, "-m", "uvicorn", "bare_asgi:app", "--port", str(port), "--log-level", "warning"]
    with server([*argv, "--no-access-log"], port) as url:
        wrk(url, "post_one.lua", 1 if quick else 2, 64)
        bare = wrk(url, "post_one.lua", seconds, 64)
    return [
        row("bare ASGI app, single POSTs (generator/uvicorn ceiling)", bare["rps"], "req/s", None),
        row("single-event POSTs, SQLite direct", ours["rps"], "events/s", bare["rps"],
            "limit: bare ASGI app, same uvicorn settings"),
    ]  # fmt: skip


def sample_records(n: int, traces: int, prefix: str = "pre") -> Iterator[list[Any]]:
    """Batches of 1,000 records: ``n`` events over ``traces`` traces."""
    from waymark.model import Event, now_us, to_record

    batch: list[Any] = []
    received = now_us()
    for i in range(n):
        t = i % traces
        event = Event(
            trace_id=f"{prefix}-{t}",
            component="writer" if t % 2 else "reader",
            stage="WRITE",
            domain="dataset",
            domain_id=f"ds{t % 500}/1",
            end_time=1_795_000_000_000 + i,  # epoch ms
            path=f"raw/{prefix}/{t}.csv",
            trace_status="FINISHED" if i // traces == 9 else "CONTINUE",
        )
        batch.append(to_record(event, "default", received))
        if len(batch) == 1000:
            yield batch
            batch = []
    if batch:
        yield batch


def post_batch_records(batches: int) -> Iterator[list[Any]]:
    """The events ``post_batch.lua`` sends, as records: 500 per batch over 50 new traces of
    10 events, a path each, made by the API's own functions."""
    from waymark.ingest import parse_events, to_records
    from waymark.pipelines import Pipelines

    for c in range(batches):
        events = [
            {"trace_id": f"raw-{c}-{i % 50}", "component": "writer", "stage": "WRITE",
             "status": "SUCCESS", "end_time": f"2026-11-20T10:00:{i % 60:02d}Z",
             "path": f"raw/bench/{c}-{i}.csv"}
            for i in range(500)
        ]  # fmt: skip
        yield to_records(parse_events(events), "default", Pipelines())


def batched_posts_sqlite(quick: bool) -> list[dict[str, Any]]:
    from waymark.store.sql import INSERT_EVENT, INSERT_PATH, UPSERT_TRACE, Prepared
    from waymark.store.sqlite import SQLiteStore

    seconds = 4 if quick else 15
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with waymark_server(f"sqlite:///{tmp}/w.db", port) as url:
            ours = wrk(url, "post_batch.lua", seconds, 4)
        port = free_port()
        with waymark_server(f"sqlite:///{tmp}/two.db", port, workers=2) as url:
            two_workers, two_p99 = staggered_rate(url, f"{tmp}/two.db", "post_batch.lua", seconds)
        # raw: the rows an append of the same batches stores (events, paths, summaries),
        # made before the clock starts, executemany per table in one transaction per 500
        store = SQLiteStore(f"sqlite:///{tmp}/raw.db")
        batches = [Prepared(records) for records in post_batch_records(100 if quick else 600)]
        insert_trace = UPSERT_TRACE[: UPSERT_TRACE.index(" ON CONFLICT")]  # all new traces
        conn = store._connect()  # a connection of its own, with the store's settings
        start = time.perf_counter()
        for batch in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_EVENT, batch.events)
            conn.executemany(INSERT_PATH, batch.paths)
            conn.executemany(insert_trace, batch.traces)
            conn.execute("COMMIT")
        raw = 500 * len(batches) / (time.perf_counter() - start)
        conn.close()
        store.close()
    return [
        row("batched POSTs (500), SQLite direct", ours["rps"] * 500, "events/s", raw,
            "limit: executemany of the rows the same batches store (events, paths, summaries), "
            "one transaction per 500"),
        row("batched POSTs (500), SQLite direct, serve --workers 2", two_workers, "events/s",
            raw, "both cores (wrk shares CPU 1), 4 clients; limit as above (one core)"),
        row("batched POSTs (500), one worker, p99", ours["p99_us"] / 1000, "ms", None,
            "4 clients"),
        row("batched POSTs (500), serve --workers 2, p99", two_p99 / 1000, "ms", None,
            "the worst of the 4 clients' p99"),
    ]  # fmt: skip


def reads(quick: bool) -> list[dict[str, Any]]:
    from waymark.store.sqlite import SQLiteStore

    n = 100_000 if quick else int(os.environ.get("WAYMARK_BENCH_READ_EVENTS", "10000000"))
    traces = n // 10
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        url_db = f"sqlite:///{tmp}/w.db"
        store = SQLiteStore(url_db)
        start = time.perf_counter()
        for batch in sample_records(n, traces):
            store.append(batch)
        load_s = time.perf_counter() - start
        store.close()
        console.print(f"preloaded {n:,} events in {load_s:.0f} s ({n / load_s:,.0f} events/s)")
        port = free_port()
        with waymark_server(url_db, port) as url:
            assert httpx.get(f"{url}/v1/traces/pre-1").status_code == 200
            for kind, label in (
                ("summary", "summary GET"),
                ("events", "events page (100)"),
                ("search", "trace search, two filters"),
                ("path", "path lookup"),
            ):
                env = {"WRK_KIND": kind, "WRK_TRACES": str(traces)}
                wrk(url, "get_random.lua", 1 if quick else 2, 16, env)
                got = wrk(url, "get_random.lua", 3 if quick else 10, 16, env)
                note = f"{n:,} events stored, 16 concurrent clients; {got['rps']:,.0f} req/s"
                out.append(row(f"{label} p50", got["p50_us"] / 1000, "ms", None, note))
                out.append(row(f"{label} p99", got["p99_us"] / 1000, "ms", None, note))
                if kind == "summary":  # the same below saturation: 4 clients
                    few = wrk(url, "get_random.lua", 3 if quick else 10, 4, env)
                    note = f"{n:,} events stored, 4 concurrent clients; {few['rps']:,.0f} req/s"
                    out.append(
                        row(f"{label} p99, 4 clients", few["p99_us"] / 1000, "ms", None, note)
                    )
        port = free_port()
        with waymark_server(url_db, port, workers=2) as url:
            env = {"WRK_KIND": "summary", "WRK_TRACES": str(traces)}
            wrk(url, "get_random.lua", 1 if quick else 2, 16, env)
            got = wrk(url, "get_random.lua", 3 if quick else 10, 16, env)
            note = (
                f"{n:,} events stored, 16 concurrent clients, both cores (wrk shares CPU 1);"
                f" {got['rps']:,.0f} req/s"
            )
            out.append(row("summary GET p99, serve --workers 2", got["p99_us"] / 1000, "ms",
                           None, note))  # fmt: skip
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def _completions(url: str, n: int) -> list[float]:
    """Time from sending a finishing event to the answer of a client already waiting."""
    import asyncio

    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for i in range(n):
            trace = f"wait-{i}-{time.time_ns()}"
            r = await client.post("/v1/events", json={"trace_id": trace, "status": "IN_PROGRESS"})
            assert r.status_code == 202
            waiter = asyncio.create_task(client.get(f"/v1/traces/{trace}", params={"wait": 20}))
            await asyncio.sleep(0.02)  # the waiter is parked on the server
            start = time.perf_counter()
            await client.post("/v1/events", json={"trace_id": trace, "trace_status": "FINISHED"})
            answer = await waiter
            latencies.append(time.perf_counter() - start)
            assert answer.json()["done"] is True
    return latencies


def completion_latency(quick: bool) -> list[dict[str, Any]]:
    import asyncio

    n = 50 if quick else 500
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with waymark_server(f"sqlite:///{tmp}/w.db", port) as url:
            got = asyncio.run(_completions(url, n))
    p50, p99 = percentile(got, 50) * 1000, percentile(got, 99) * 1000
    note = "anchor: `okdata status --watch` polls every 2 s: mean 1,000 ms, worst 2,000 ms"
    return [
        row("completion latency p50 (POST finishing event -> ?wait answers)", p50, "ms", None),
        row("completion latency p99", p99, "ms", None, note),
        row("anchor's mean / our p99 (times faster)", 1000 / p99, "x", None),
    ]


def script(name: str, *args: str) -> dict[str, Any]:
    """Run another benchmark script of this folder; it prints one JSON object last."""
    out = subprocess.run([PY, str(HERE / name), *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    start = out.stdout.index("{")
    found: dict[str, Any] = json.loads(out.stdout[start:])
    return found


def postgres_batches(quick: bool) -> list[dict[str, Any]]:
    events, rounds = ("10000", "1") if quick else ("60000", "3")
    got = script("pg_batch.py", "--events", events, "--rounds", rounds)
    rate = got["events_per_s"]
    note = "limit: one COPY per table of the rows an append stores (events, paths, summaries)"
    return [
        row("batched appends (500), PostgreSQL direct", rate["direct"], "events/s",
            rate["copy"], note),
        row("batched POSTs (500), PostgreSQL direct over HTTP", rate["http"], "events/s",
            rate["copy"], note),
    ]  # fmt: skip


def bus(quick: bool) -> list[dict[str, Any]]:
    got = script("bus.py", "--events", "10000" if quick else "100000")
    b = got["bus"]
    note = "HTTP 500-event batches -> JetStream -> 2 collectors -> PostgreSQL"
    return [
        row("bus path", b["events_per_s"], "events/s", got["raw_copy_all_tables"]["events_per_s"],
            note + "; limit: COPY of the rows it stores (events, paths, summaries)"),
        row("bus path (stricter limit)", b["events_per_s"], "events/s",
            got["raw_copy"]["events_per_s"], "limit: COPY of the event rows alone"),
        row("bus lag 202 -> visible, p50 (saturated)", b["lag_under_load_p50_ms"], "ms", None),
        row("bus lag 202 -> visible, p99 (saturated)", b["lag_under_load_p99_ms"], "ms", None),
        row("bus lag 202 -> visible, p50 (light load)", b["light_load_lag_p50_ms"], "ms", None),
        row("bus lag 202 -> visible, p99 (light load)", b["light_load_lag_p99_ms"], "ms", None),
    ]  # fmt: skip


def tracker(quick: bool) -> list[dict[str, Any]]:
    got = script("tracker.py", "--steps", "20000" if quick else "100000")
    return [
        row("tracker added cost per step (worst kind)", got["worst_added_us"], "µs", None,
            f"target {got['target_us']} µs; bare call {got['bare_call_us']} µs"),
        row("tracker CPU per step incl. sender thread", got["cpu_us_per_step_with_sender"],
            "µs", None),
    ]  # fmt: skip


def auth(quick: bool) -> list[dict[str, Any]]:
    got = script("auth.py", "--seconds", "2" if quick else "3", "--rounds", "4" if quick else "12")
    off = got["medians"]["off"]
    out = []
    for config, figures in got["medians"].items():
        if config == "off":
            continue
        for name, label in (("single", "single-event POSTs"), ("batch", "batched POSTs (500)")):
            out += [
                row(f"{label}, auth {config}", figures[name], "events/s", off[name],
                    "limit: a server with auth off, taking turns in one run; paired ratio "
                    f"{got['paired_ratio_to_off'][config][name]}"),
                row(f"{label}, auth {config}, per server CPU-second", figures[f"{name}_per_cpu_s"],
                    "events", off[f"{name}_per_cpu_s"], "limit: auth off, as above"),
            ]  # fmt: skip
    return out


WORKLOADS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "single": single_posts,
    "batch": batched_posts_sqlite,
    "reads": reads,
    "completion": completion_latency,
    "postgres": postgres_batches,
    "bus": bus,
    "tracker": tracker,
    "auth": auth,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 2 minutes")
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), help="run only these")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.only or WORKLOADS:
        console.print(f"[bold]running {name}[/bold]")
        rows += WORKLOADS[name](args.quick)
    table = Table(title="Waymark benchmarks (ratio = figure / raw limit, same run)")
    for column in ("workload", "figure", "unit", "raw limit", "ratio", "note"):
        table.add_column(column, overflow="fold")
    for r in rows:
        cells = [r["workload"], f"{r['figure']:,}", r["unit"],
                 "" if r["raw_limit"] is None else f"{r['raw_limit']:,}",
                 "" if r["ratio"] is None else f"{r['ratio']:.0%}", r["note"]]  # fmt: skip
        table.add_row(*cells)
    console.print(table)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version}
    results = {"quick": args.quick, "machine": machine, "rows": rows}
    (HERE / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
