"""The live stream (``GET /v1/stream``) against what a client already pays, in one run.

One ``waymark serve`` (SQLite, one worker) and ``--streams`` open streams, each read in
a thread of its own:

- latency: ``--changes`` single-event POSTs, one at a time, each a new trace; for each,
  the time from sending the POST to the message reaching each stream, p50 and p99,
  against the POST's own round trip (its 202) measured in the same run: the limit, since
  the change exists only once the 202 is due;
- fan-out: ``--burst`` new traces in POSTs of 100, as fast as they are taken, and the
  time until every stream has every one of them: messages delivered per second, against
  the events stored per second by the same POSTs (the store's rate, the ceiling of how
  fast changes arise).

Prints one JSON object. Usage::

    .venv/bin/python bench/stream.py [--streams 50] [--changes 200] [--burst 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from waymark.sdk.stream import Messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Reader(threading.Thread):
    """One stream: when each trace's message arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        parser = Messages()
        with (
            httpx.Client(timeout=60) as client,
            client.stream("GET", f"{self.url}/v1/stream") as response,
        ):
            for line in response.iter_lines():
                message = parser.feed(line)
                if message is None:
                    continue
                if message.event == "ready":
                    self.ready.set()
                elif message.event == "summary":
                    self.seen.setdefault(message.data["trace_id"], time.perf_counter())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--burst", type=int, default=2000)
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WAYMARK_MAX_STREAMS": str(args.streams + 10)}
        server = subprocess.Popen(
            [sys.executable, "-m", "waymark.cli", "serve", "--port", str(port), "--store",
             f"sqlite:///{Path(tmp) / 'w.db'}", "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            readers = [Reader(url) for _ in range(args.streams)]
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.ready.wait(10)
            with httpx.Client(base_url=url, timeout=30) as client:
                sent: dict[str, float] = {}
                round_trips: list[float] = []
                for i in range(args.changes):
                    trace_id = f"latency-{i}"
                    start = time.perf_counter()
                    client.post("/v1/events", json={"trace_id": trace_id}).raise_for_status()
                    round_trips.append(time.perf_counter() - start)
                    sent[trace_id] = start
                    time.sleep(0.01)
                time.sleep(1)
                latencies = [
                    reader.seen[t] - at
                    for reader in readers
                    for t, at in sent.items()
                    if t in reader.seen
                ]
                missing = args.streams * args.changes - len(latencies)

                burst = [f"burst-{i}" for i in range(args.burst)]
                start = time.perf_counter()
                for at in range(0, len(burst), 100):
                    batch = [{"trace_id": t} for t in burst[at : at + 100]]
                    client.post("/v1/events", json=batch).raise_for_status()
                stored_s = time.perf_counter() - start
                last = burst[-1]
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not all(
                    all(t in r.seen for t in (last, burst[0]))
                    and len(r.seen) >= args.changes + args.burst
                    for r in readers
                ):
                    time.sleep(0.01)
                delivered_s = max(max(r.seen.values()) for r in readers) - start
        finally:
            server.terminate()
            server.wait(10)

    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    rt50 = statistics.median(round_trips)
    result = {
        "streams": args.streams,
        "latency_changes": args.changes,
        "latency_ms": {"p50": round(p50 * 1000, 2), "p99": round(p99 * 1000, 2)},
        "post_round_trip_ms_p50": round(rt50 * 1000, 2),
        "latency_p50_vs_round_trip": round(p50 / rt50, 2),
        "missing_messages": missing,
        "burst": args.burst,
        "stored_per_s": round(args.burst / stored_s),
        "delivered_messages_per_s": round(args.streams * args.burst / delivered_s),
        "delivered_changes_per_s_per_stream": round(args.burst / delivered_s),
        "delivery_vs_store_rate": round(stored_s / delivered_s, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
