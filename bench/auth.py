"""Authentication's cost on the hot path: single-event POSTs and 500-event batches with
authentication on against the same server with it off, in the same run; prints JSON.

    python bench/auth.py [--seconds 8] [--rounds 3]

Each configuration (:data:`CONFIGS`) runs a ``waymark serve`` of its own (SQLite, one
worker, pinned to CPU 0; all are up at once, idle but for their turn), loaded by wrk on
CPU 1 (``post_one.lua``: 64 connections; ``post_batch.lua``: 4) sending the
configuration's ``Authorization`` header. Configurations take turns in short samples,
round after round, so that a noisy neighbour hurts each alike; the figure of each is its
median over the rounds. Ratios: a configuration's median over auth off's, and the median
of each round's ratio to auth off in the same round.

Two figures per workload: events/s as wrk saw them, and events per CPU-second of the
server process (its user and system time over the same window, from ``/proc``). On a
machine shared with other work the second is the steadier measure of what a check
costs: throughput swings with the neighbours' load, the server's CPU per event much less.

A configuration is a function that, given a fresh store URL, prepares whatever it needs
(a key in the store, an issuer) and returns the server's extra environment and the
header to send. ``keys`` makes an API key with ``waymark keys create``. A JWT
configuration goes beside it in :data:`CONFIGS`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from run import PY, free_port, waymark_server, wrk

#: (extra server environment, Authorization header or "")
Setup = tuple[dict[str, str], str]


@contextlib.contextmanager
def auth_off(store: str) -> Iterator[Setup]:
    yield {"WAYMARK_AUTH": "none"}, ""


@contextlib.contextmanager
def api_key(store: str) -> Iterator[Setup]:
    argv = [PY, "-m", "waymark.cli", "keys", "create", "--tenant", "default"]
    argv += ["--role", "writer", "--name", "bench", "--store", store]
    secret = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    yield {"WAYMARK_AUTH": "keys"}, f"Bearer {secret}"


CONFIGS: dict[str, Callable[[str], contextlib.AbstractContextManager[Setup]]] = {
    "off": auth_off,
    "keys": api_key,
    # "jwt": a token of a test issuer, WAYMARK_AUTH=oidc (added with the OIDC verifier)
}

WORKLOADS = {  # name: (wrk script, connections, events per request)
    "single": ("post_one.lua", 64, 1),
    "batch": ("post_batch.lua", 4, 500),
}


def server_pid(port: int) -> int:
    """The process serving ``port`` (``waymark serve --port <port>``)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"serve" in argv and str(port).encode() in argv and b"taskset" not in argv[0]:
                    return int(entry.name)
    raise RuntimeError(f"no server process on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def sample(url: str, pid: int, workload: str, seconds: int, header: str) -> dict[str, float]:
    """One wrk run of ``workload``: events/s, and events per server CPU-second."""
    script, connections, per_request = WORKLOADS[workload]
    wenv = {"WAYMARK_BENCH_AUTHORIZATION": header}
    cpu = cpu_seconds(pid)
    got = wrk(url, script, seconds, connections, wenv)
    cpu = cpu_seconds(pid) - cpu
    rate = got["rps"] * per_request
    return {workload: rate, f"{workload}_per_cpu_s": rate * seconds / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3, help="length of one sample")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in args.configs}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers = {}
        for config in args.configs:  # all up at once, each on a store of its own
            store = f"sqlite:///{Path(tmp) / f'{config}.db'}"
            env, header = stack.enter_context(CONFIGS[config](store))
            port = free_port()
            url = stack.enter_context(waymark_server(store, port, **env))
            servers[config] = (url, server_pid(port), header)
            for script, connections, _ in WORKLOADS.values():  # warm up
                wrk(url, script, 1, connections, {"WAYMARK_BENCH_AUTHORIZATION": header})
        for _ in range(args.rounds):  # short samples, taking turns
            for config, (url, pid, header) in servers.items():
                found: dict[str, float] = {}
                for workload in WORKLOADS:
                    found |= sample(url, pid, workload, args.seconds, header)
                runs[config].append(found)
    figures = list(runs[args.configs[0]][0])
    medians = {
        config: {f: round(statistics.median(r[f] for r in rounds), 1) for f in figures}
        for config, rounds in runs.items()
    }
    ratios = {
        config: {f: round(m[f] / medians["off"][f], 3) for f in figures}
        for config, m in medians.items()
        if config != "off"
    }
    paired = {  # each round's figure over auth off's in the same round, the median of those
        config: {
            f: round(
                statistics.median(r[f] / o[f] for r, o in zip(rounds, runs["off"], strict=True)), 3
            )
            for f in figures
        }
        for config, rounds in runs.items()
        if config != "off"
    }
    out = {"medians": medians, "ratio_to_off": ratios, "paired_ratio_to_off": paired, "runs": runs}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
