"""Authentication's cost on the hot path: single-event POSTs and 500-event batches with
authentication on against the same server with it off, in the same run; prints JSON.

    python bench/auth.py [--seconds 8] [--rounds 3]

Each configuration (:data:`CONFIGS`) runs ``waymark serve`` (SQLite, one worker, pinned
to CPU 0) with wrk on CPU 1 (``post_one.lua``: 64 connections; ``post_batch.lua``: 4),
sending the configuration's ``Authorization`` header. Configurations take turns, round
after round, so that a noisy neighbour hurts each alike; the figure of each is its
median over the rounds, and each ratio is a configuration's figure over auth off's.

Two figures per workload: events/s as wrk saw them, and events per CPU-second of the
server process (its user and system time over the same window, from ``/proc``). On a
machine shared with other work the second is the steadier measure of what a check
costs: throughput swings with the neighbours' load, the server's CPU per event much less.

A configuration is a function that, given a fresh store URL, prepares whatever it needs
(a key in the store, an issuer) and returns the server's extra environment and the
header to send. ``keys`` makes an API key with ``waymark keys create``; ``jwt`` starts an
OpenID Connect issuer on loopback (the tests' own, :mod:`tests.oidc_issuer`) and sends an
RS256 access token of it, as a client with a client-credentials token would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from run import PY, ROOT, free_port, waymark_server, wrk

#: (extra server environment, Authorization header or "")
Setup = tuple[dict[str, str], str]


@contextlib.contextmanager
def auth_off(store: str) -> Iterator[Setup]:
    yield {"WAYMARK_AUTH": "none"}, ""


@contextlib.contextmanager
def jwt(store: str) -> Iterator[Setup]:
    sys.path.insert(0, str(ROOT))
    from tests.oidc_issuer import Issuer

    with Issuer() as issuer:
        token = issuer.token(
            aud="waymark",
            azp="bench",
            waymark_roles=["default:writer"],
            exp=int(time.time()) + 3600,  # outlives the run
        )
        env = {
            "WAYMARK_AUTH": "oidc",
            "WAYMARK_OIDC_ISSUER": issuer.url,
            "WAYMARK_OIDC_AUDIENCE": "waymark",
        }
        yield env, f"Bearer {token}"


@contextlib.contextmanager
def api_key(store: str) -> Iterator[Setup]:
    argv = [PY, "-m", "waymark.cli", "keys", "create", "--tenant", "default"]
    argv += ["--role", "writer", "--name", "bench", "--store", store]
    secret = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    yield {"WAYMARK_AUTH": "keys"}, f"Bearer {secret}"


CONFIGS: dict[str, Callable[[str], contextlib.AbstractContextManager[Setup]]] = {
    "off": auth_off,
    "keys": api_key,
    "jwt": jwt,
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


def measure(config: str, seconds: int, tmp: Path) -> dict[str, float]:
    """Events/s and events per server CPU-second of each workload under one
    configuration, on a fresh store."""
    store = f"sqlite:///{tmp / f'{config}-{free_port()}.db'}"
    with CONFIGS[config](store) as (env, header):
        port = free_port()
        with waymark_server(store, port, **env) as url:
            pid = server_pid(port)
            out = {}
            for name, (script, connections, per_request) in WORKLOADS.items():
                wenv = {"WAYMARK_BENCH_AUTHORIZATION": header}
                wrk(url, script, 1, connections, wenv)  # warm up
                cpu = cpu_seconds(pid)
                got = wrk(url, script, seconds, connections, wenv)
                cpu = cpu_seconds(pid) - cpu
                out[name] = got["rps"] * per_request
                out[f"{name}_per_cpu_s"] = got["rps"] * per_request * seconds / cpu
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in args.configs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for config in args.configs:
                runs[config].append(measure(config, args.seconds, Path(tmp)))
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
    print(json.dumps({"medians": medians, "ratio_to_off": ratios, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
