"""Authentication's cost on the hot path: single-event POSTs and 500-event batches with
authentication on (an API key, an OpenID Connect token) against auth off, in the same
run; prints JSON.

    python bench/auth.py [--seconds 3] [--rounds 10]     # over HTTP, with wrk
    python bench/auth.py --in-process [--rounds 10]      # event-loop CPU, in-process
    python bench/auth.py --instructions                  # instructions, with callgrind

Over HTTP: each configuration (:data:`CONFIGS`) runs a ``waymark serve`` of its own
(SQLite, one worker, pinned to CPU 0; all are up at once, idle but for their turn),
loaded by wrk on CPU 1 (``post_one.lua``: 64 connections; ``post_batch.lua``: 4) sending
the configuration's ``Authorization`` header. Configurations take turns in short
samples, round after round, so that a noisy neighbour hurts each alike; the figure of
each is its median over the rounds. Two figures per workload: events/s as wrk saw them,
and events per CPU-second of the server process (its user and system time over the same
window, from ``/proc``). Ratios: a configuration's median over auth off's, and the median
of each round's ratio to auth off's in the same round.

A configuration is a function that, given a fresh store URL, prepares whatever it needs
(a key in the store, an issuer) and returns the server's extra environment and the
header to send. ``keys`` makes an API key with ``waymark keys create``; ``jwt`` starts an
OpenID Connect issuer on loopback (the tests' own, :mod:`tests.oidc_issuer`) and sends an
RS256 access token of it, as a client with a client-credentials token would.

``--in-process``: the app of each configuration driven in this process through ASGI (no
HTTP, no load generator), single-event POSTs 32 at a time, taking turns in blocks of
160; the figure is the CPU time of the event loop's thread per request, where every
check runs.

``--instructions`` (needs valgrind): the instructions a single-event POST costs in each
configuration, counted by callgrind over all of the process's threads (the app driven
in-process, one request at a time, 100 and then 400 requests: the difference is 300
requests' work, without start-up). Instruction counts repeat from run to run where
timings on a shared machine drift.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from run import PY, ROOT, free_port, waymark_server, wrk

#: (extra server environment, Authorization header or "")
Setup = tuple[dict[str, str], str]


@contextlib.contextmanager
def auth_off(store: str) -> Iterator[Setup]:
    yield {"WAYMARK_AUTH": "none"}, ""


@contextlib.contextmanager
def jwt(store: str) -> Iterator[Setup]:
    with issuer_and_token() as (issuer_url, token):
        env = {
            "WAYMARK_AUTH": "oidc",
            "WAYMARK_OIDC_ISSUER": issuer_url,
            "WAYMARK_OIDC_AUDIENCE": "waymark",
        }
        yield env, f"Bearer {token}"


@contextlib.contextmanager
def issuer_and_token() -> Iterator[tuple[str, str]]:
    """An OpenID Connect issuer on loopback while the block runs, and an access token of
    it for tenant ``default``'s writer."""
    sys.path.insert(0, str(ROOT))
    from tests.oidc_issuer import Issuer

    with Issuer() as issuer:
        token = issuer.token(
            aud="waymark",
            azp="bench",
            waymark_roles=["default:writer"],
            exp=int(time.time()) + 3600,  # outlives the run
        )
        yield issuer.url, token


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


def sample(url: str, pid: int, workload: str, seconds: int, header: str) -> dict[str, float]:
    """One wrk run of ``workload``: events/s, and events per server CPU-second."""
    script, connections, per_request = WORKLOADS[workload]
    wenv = {"WAYMARK_BENCH_AUTHORIZATION": header}
    cpu = cpu_seconds(pid)
    got = wrk(url, script, seconds, connections, wenv)
    cpu = cpu_seconds(pid) - cpu
    rate = got["rps"] * per_request
    return {workload: rate, f"{workload}_per_cpu_s": rate * seconds / cpu}


def in_process(rounds: int, tmp: Path, issuer: tuple[str, str]) -> dict[str, float]:
    """Event-loop CPU µs per single-event POST, auth off, with an API key and with a JWT
    of ``issuer`` (its URL and a token), in-process."""
    import asyncio

    apps = _apps(tmp, issuer)

    async def run() -> dict[str, float]:
        lifespans = await _started(apps.values())
        per_request: dict[str, list[float]] = {name: [] for name in apps}
        n = 0
        for turn in range(rounds * 4):
            order = list(apps.items()) if turn % 2 else list(reversed(apps.items()))
            for name, (app, extra) in order:
                cpu = time.thread_time()
                for _ in range(5):
                    await asyncio.gather(*(_post(app, extra, n + k) for k in range(32)))
                    n += 32
                per_request[name].append((time.thread_time() - cpu) / 160 * 1e6)
        for task in lifespans:
            task.cancel()
        return {name: statistics.median(v) for name, v in per_request.items()}

    return asyncio.run(run())


def _apps(
    tmp: Path, issuer: tuple[str, str] | None = None
) -> dict[str, tuple[Any, list[tuple[bytes, bytes]]]]:
    """Each configuration's app, and the headers its requests carry (``jwt`` only given an
    ``issuer``: its URL and a token)."""
    from waymark.api.app import create_app
    from waymark.auth.grants import parse_grant
    from waymark.auth.keys import make_key
    from waymark.config import Settings
    from waymark.store import open_store

    made = make_key([parse_grant("default:writer")], name="bench")
    keys_store = f"sqlite:///{tmp / 'in-process-keys.db'}"
    store = open_store(keys_store)
    store.add_api_key(made.key)
    store.close()
    apps = {
        "off": (create_app(Settings(store=f"sqlite:///{tmp / 'in-process-off.db'}")), []),
        "keys": (
            create_app(Settings(store=keys_store, auth=("keys",))),
            [(b"authorization", f"Bearer {made.secret}".encode())],
        ),
    }
    if issuer is not None:
        issuer_url, token = issuer
        settings = Settings(
            store=f"sqlite:///{tmp / 'in-process-jwt.db'}",
            auth=("oidc",),
            oidc_issuer=issuer_url,
            oidc_audience="waymark",
        )
        apps["jwt"] = (create_app(settings), [(b"authorization", f"Bearer {token}".encode())])
    return apps


async def _post(app: Any, extra: list[tuple[bytes, bytes]], n: int) -> None:
    """One single-event POST through the app's ASGI interface; raises unless 202."""
    import orjson

    body = orjson.dumps(
        {"trace_id": f"t-{n}", "component": "writer", "end_time": "2026-11-20T10:00:00Z"}
    )
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": "/v1/events",
        "raw_path": b"/v1/events", "root_path": "", "query_string": b"",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *extra],
    }  # fmt: skip
    statuses = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [202]:
        raise RuntimeError(f"POST answered {statuses}")


async def _started(apps: Any) -> list[Any]:
    """Start each app as a server would (its lifespan); the tasks that hold them."""
    import asyncio

    lifespans = []
    for app, _ in apps:
        started = asyncio.Event()
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        await queue.put({"type": "lifespan.startup"})

        async def sent(message: dict[str, Any], started: asyncio.Event = started) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()

        lifespans.append(asyncio.create_task(app({"type": "lifespan"}, queue.get, sent)))
        await started.wait()
    return lifespans


def posts(config: str, count: int) -> None:
    """``count`` single-event POSTs one after another, in-process (what callgrind counts)."""
    import asyncio

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            app, extra = _apps(Path(tmp))[config]
            lifespans = await _started([(app, extra)])
            for n in range(count):
                await _post(app, extra, n)
            for task in lifespans:
                task.cancel()

    asyncio.run(run())


def instructions_per_post(script: str, configs: tuple[str, ...]) -> dict[str, float]:
    """Instructions per single-event POST of each configuration, counted by callgrind
    running ``script --posts CONFIG N`` for 100 and then 400 requests (start-up and the
    first 100 requests subtracted)."""
    counted: dict[str, dict[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            for count in (100, 400):
                out = Path(tmp) / f"callgrind.{config}.{count}"
                argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
                argv += [PY, script, "--posts", config, str(count)]
                done = subprocess.run(argv, capture_output=True, text=True)
                found = re.search(r"Collected : (\d+)", done.stderr)
                if done.returncode != 0 or found is None:
                    raise RuntimeError(f"callgrind failed:\n{done.stderr[-2000:]}")
                counted.setdefault(config, {})[count] = int(found.group(1))
    return {c: (n[400] - n[100]) / 300 for c, n in counted.items()}


def instructions() -> dict[str, Any]:
    """Instructions per single-event POST with auth off and with an API key."""
    per_post = instructions_per_post(__file__, ("off", "keys"))
    return {
        "instructions_per_post": per_post,
        "ratio_to_off": round(per_post["off"] / per_post["keys"], 3),
        "added_per_post": round(per_post["keys"] - per_post["off"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3, help="length of one sample")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--in-process", action="store_true", help="only the in-process figure")
    parser.add_argument("--instructions", action="store_true", help="only callgrind's counts")
    parser.add_argument("--posts", nargs=2, metavar=("CONFIG", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.posts:
        posts(args.posts[0], int(args.posts[1]))
        return
    if args.instructions:
        print(json.dumps(instructions(), indent=2))
        return
    if args.in_process:
        with tempfile.TemporaryDirectory() as tmp, issuer_and_token() as issuer:
            loop_us = in_process(args.rounds, Path(tmp), issuer)
        ratios = {c: round(loop_us["off"] / us, 3) for c, us in loop_us.items() if c != "off"}
        print(json.dumps({"loop_cpu_us_per_request": loop_us, "ratio_to_off": ratios}, indent=2))
        return
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
