"""Bounded answers and bounded work: a wide lineage and a large trace with many waiters.

    python bench/bounds.py [--source DIR] [--label NAME]

Two workloads, each against a fresh ``waymark serve`` (SQLite, one worker, pinned to CPU 0;
this script is the load and belongs on CPU 1: ``taskset -c 1 python bench/bounds.py``):

- **lineage**: 3 events with 1,000 ``inputs`` and 1,000 ``outputs`` each, then the whole
  lineage (every page). Figures: answer bytes against the bytes the producer sent, time,
  the server's peak memory growth, and the slowest ``/healthz`` answer meanwhile.
- **waiters**: a trace of 20,000 events, each with a path and an error; the summary's
  bytes against the 64 KiB bound and its read time; ``/healthz`` p99 with nothing else
  going on (what this machine gives now); then 100 clients ``?wait`` on it for 15 s while
  an event arrives every 100 ms, and ``/healthz`` is asked every 50 ms: its p50/p99/max
  against the 100 ms limit, the server's CPU seconds and peak memory.

``--source DIR`` runs the server from another checkout's ``src`` (the code before a
change, e.g. ``git archive REV src | tar -x -C DIR``); the client side is the same. Prints
one JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from run import PY, free_port, percentile, pinned

PROBE_TIMEOUT_S = 5.0  # a /healthz that takes longer counts as this long


class Server:
    """``waymark serve`` in a process of its own, with its memory and CPU read from /proc."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str) -> None:
        self.proc, self.url = proc, url

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise LookupError(field)

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak(self) -> int:
        return self._status("VmHWM")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serving(source: str | None) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(Path(source) / "src")} if source else None
        argv = [PY, "-m", "waymark.cli", "serve", "--port", str(port)]
        argv += ["--store", f"sqlite:///{tmp}/b.db", "--log-level", "warning"]
        proc = subprocess.Popen(pinned(0, argv), env=env, cwd=tmp)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
            # taskset execs the server: the pid is the server's own
            yield Server(proc, url)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def probe(url: str, stop: asyncio.Event, every_s: float) -> list[float]:
    """``/healthz`` latencies (seconds) until ``stop``, one ask every ``every_s``."""
    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=PROBE_TIMEOUT_S) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                (await client.get("/healthz")).raise_for_status()
                out.append(time.perf_counter() - start)
            except httpx.TimeoutException:
                out.append(PROBE_TIMEOUT_S)
            await asyncio.sleep(max(0.0, every_s - (time.perf_counter() - start)))
    return out


# -- lineage --------------------------------------------------------------------------------


async def _fetch_lineage(url: str, trace: str) -> tuple[int, int, int]:
    """Every page of the lineage: (bytes, pages, edges)."""
    size = pages = edges = 0
    params: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while True:
            r = await client.get(f"/v1/traces/{trace}/lineage", params=params)
            r.raise_for_status()
            size, pages = size + len(r.content), pages + 1
            page = r.json()
            edges += len(page["edges"])
            if not page.get("next"):
                return size, pages, edges
            params = {"cursor": page["next"], "limit": 5000}


async def _lineage(server: Server) -> dict[str, Any]:
    events = [
        {
            "trace_id": "wide",
            "event_id": f"e{n}",
            "inputs": [f"s3://raw/2026/11/20/part-{n}-{i:04}.csv" for i in range(1000)],
            "outputs": [f"s3://processed/2026/11/20/part-{n}-{i:04}.parquet" for i in range(1000)],
        }
        for n in range(3)
    ]
    sent = json.dumps(events).encode()
    httpx.post(server.url + "/v1/events", content=sent, timeout=60).raise_for_status()
    rss = server.rss()
    stop = asyncio.Event()
    probing = asyncio.ensure_future(probe(server.url, stop, 0.02))
    await asyncio.sleep(0.2)
    start = time.perf_counter()
    size, pages, edges = await _fetch_lineage(server.url, "wide")
    took = time.perf_counter() - start
    stop.set()
    healthz = await probing
    return {
        "lineage_request_bytes": len(sent),
        "lineage_answer_bytes": size,
        "lineage_answer_per_sent": size / len(sent),
        "lineage_pages": pages,
        "lineage_edges": edges,
        "lineage_s": took,
        "lineage_peak_growth_mb": (server.peak() - rss) / 2**20,
        "lineage_healthz_max_ms": max(healthz) * 1000,
    }


# -- a large trace and its waiters ----------------------------------------------------------


async def _waiters(server: Server, waiters: int, seconds: float) -> dict[str, Any]:
    url = server.url
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for batch in range(20):
            events = [
                {
                    "trace_id": "large",
                    "event_id": f"e{n:05}",
                    "start_time": 1_790_000_000_000 + n,
                    "path": f"s3://bucket/raw/2026/11/20/part-{n:05}.csv",
                    "errors": [{"message": {"en": f"row {n}: value out of range in column 7"}}],
                }
                for n in range(batch * 1000, batch * 1000 + 1000)
            ]
            (await client.post("/v1/events", json=events)).raise_for_status()
        reads, size = [], 0
        for _ in range(5):
            start = time.perf_counter()
            r = await client.get("/v1/traces/large")
            reads.append(time.perf_counter() - start)
            size = len(r.content)
    idle_stop = asyncio.Event()
    idle = asyncio.ensure_future(probe(url, idle_stop, 0.05))
    await asyncio.sleep(min(seconds, 5))
    idle_stop.set()
    baseline = await idle
    rss, cpu = server.rss(), server.cpu_s()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=waiters + 10)

    async def wait(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            with contextlib.suppress(httpx.TimeoutException, httpx.TransportError):
                await client.get("/v1/traces/large", params={"wait": 60})

    async def produce(client: httpx.AsyncClient) -> int:
        n = 0
        while not stop.is_set():
            event = {"trace_id": "large", "event_id": f"more-{n}", "path": f"s3://more/{n}"}
            with contextlib.suppress(httpx.TimeoutException, httpx.TransportError):
                await client.post("/v1/events", json=event)
                n += 1
            await asyncio.sleep(0.1)
        return n

    async with httpx.AsyncClient(base_url=url, timeout=90, limits=limits) as client:
        tasks = [asyncio.ensure_future(wait(client)) for _ in range(waiters)]
        await asyncio.sleep(1)  # the waiters are parked
        producing = asyncio.ensure_future(produce(client))
        probing = asyncio.ensure_future(probe(url, stop, 0.05))
        await asyncio.sleep(seconds)
        stop.set()
        healthz = await probing
        sent = await producing
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "summary_bytes": size,
        "summary_per_64kib": size / 65536,
        "summary_read_ms": percentile(reads, 50) * 1000,
        "waiters": waiters,
        "events_arrived": sent,
        "idle_healthz_p99_ms": percentile(baseline, 99) * 1000,
        "healthz_asked": len(healthz),
        "healthz_p50_ms": percentile(healthz, 50) * 1000,
        "healthz_p99_ms": percentile(healthz, 99) * 1000,
        "healthz_max_ms": max(healthz) * 1000,
        "healthz_p99_per_100ms": percentile(healthz, 99) / 0.1,
        "waiting_cpu_s_per_s": (server.cpu_s() - cpu) / seconds,
        "waiting_peak_growth_mb": (server.peak() - rss) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a checkout whose src/ the server runs")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--waiters", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    out: dict[str, Any] = {"label": args.label}
    with serving(args.source) as server:
        out.update(asyncio.run(_lineage(server)))
    with serving(args.source) as server:
        out.update(asyncio.run(_waiters(server, args.waiters, args.seconds)))
    for name, value in out.items():
        print(f"{name:32} {value:,.2f}" if isinstance(value, float) else f"{name:32} {value}")
    print(json.dumps(out), file=sys.stdout)


if __name__ == "__main__":
    main()
