"""What the metrics cost on the hot path: single-event POSTs with metrics on against the
same app without them, in the same run, in-process; prints JSON.

    python bench/metrics.py [--rounds 8]
    python bench/metrics.py --appends sqlite|postgresql [--rounds 8] [--events 20000]
    python bench/metrics.py --instructions          # callgrind (valgrind)

Two apps over SQLite files of their own: ``on`` as served; ``off`` without the HTTP
metrics middleware, and with every metric call of the request path (events accepted,
the store append's timer, traces turned) made a no-op while its turn runs. Each turn
drives one app through its ASGI interface (no HTTP, no load generator) with 32
concurrent single-event POSTs, five times; the apps take turns, in alternating order,
so that a noisy neighbour hurts both alike. Figures per request: the CPU time of the
event loop's thread (where the middleware runs) and of the whole process (the store
threads too), each the median over the turns; the ratio is ``off`` over ``on`` (1.0:
no cost).

``--appends``: what counting traces turned done costs an append (see :func:`appends`).
``--instructions``: the instructions a single-event POST costs on and off, counted by
callgrind over all threads (100 and then 400 requests: the difference is 300 requests'
work, without start-up); counts repeat where timings on a shared machine drift.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from auth import _post, _started, instructions_per_post

PER_TURN = 5 * 32


@contextlib.contextmanager
def metrics_off() -> Iterator[None]:
    """Every metric call of the request path a no-op while the block runs."""
    from waymark import metrics

    names = ("events_accepted", "events_rejected", "http_request", "store_append", "traces_turned")
    saved = {name: getattr(metrics, name) for name in names}
    for name in names:
        setattr(metrics, name, lambda *args: None)
    try:
        yield
    finally:
        for name, call in saved.items():
            setattr(metrics, name, call)


def apps(tmp: Path) -> dict[str, Any]:
    from waymark.api.app import create_app
    from waymark.api.metering import HttpMetrics
    from waymark.config import Settings

    on = create_app(Settings(store=f"sqlite:///{tmp / 'on.db'}"))
    off = create_app(Settings(store=f"sqlite:///{tmp / 'off.db'}"))
    off.user_middleware = [m for m in off.user_middleware if m.cls is not HttpMetrics]
    return {"on": on, "off": off}


def run(rounds: int) -> dict[str, Any]:
    async def go(tmp: Path) -> dict[str, Any]:
        served = apps(tmp)
        lifespans = await _started([(app, []) for app in served.values()])
        loop_us: dict[str, list[float]] = {name: [] for name in served}
        all_us: dict[str, list[float]] = {name: [] for name in served}
        n = 0
        for turn in range(rounds * 4):
            order = list(served.items()) if turn % 2 else list(reversed(served.items()))
            for name, app in order:
                switch = metrics_off() if name == "off" else contextlib.nullcontext()
                with switch:
                    loop, whole = time.thread_time(), time.process_time()
                    for _ in range(PER_TURN // 32):
                        await asyncio.gather(*(_post(app, [], n + k) for k in range(32)))
                        n += 32
                    loop_us[name].append((time.thread_time() - loop) / PER_TURN * 1e6)
                    all_us[name].append((time.process_time() - whole) / PER_TURN * 1e6)
        for task in lifespans:
            task.cancel()
        loop_on, loop_off = (statistics.median(loop_us[k]) for k in ("on", "off"))
        all_on, all_off = (statistics.median(all_us[k]) for k in ("on", "off"))
        return {
            "event_loop_us_per_post": {"on": round(loop_on, 1), "off": round(loop_off, 1)},
            "event_loop_ratio_off_over_on": round(loop_off / loop_on, 3),
            "process_us_per_post": {"on": round(all_on, 1), "off": round(all_off, 1)},
            "process_ratio_off_over_on": round(all_off / all_on, 3),
            "turns": rounds * 4,
            "posts_per_turn": PER_TURN,
        }

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(go(Path(tmp)))


def batches(finishing: bool, round_: int, events: int, batch: int) -> list[list[Any]]:
    """``events`` in batches of ``batch`` over new 5-event traces; with ``finishing``, each
    trace's last event finishes it (so every append reads its traces' states to count
    what turned), else none does."""
    from waymark.model import Event, now_us, to_record

    out = []
    received = now_us()
    tag = "f" if finishing else "c"
    for b in range(events // batch):
        records = []
        for i in range(batch):
            trace = f"{tag}{round_}-b{b}-t{i // 5}"
            last = finishing and i % 5 == 4
            event = Event(
                trace_id=trace,
                event_id=f"{trace}-e{i % 5}",
                trace_status="FINISHED" if last else "CONTINUE",
                status="SUCCESS",
                component="bench",
                domain_id="ds/1",
            )
            records.append(to_record(event, "default", received, timestamp_us=received + i))
        out.append(records)
    return out


def appends(kind: str, postgres: str, rounds: int, events: int, batch: int) -> dict[str, Any]:
    """Events/s of ``Store.append`` with batches whose traces all finish against the same
    batches with none finishing, taking turns in one store: the cost of reading the
    states of finished traces (and, on PostgreSQL, their advisory locks) to count them."""
    from waymark.store import open_store
    from webhooks import store_url

    rates: dict[str, list[float]] = {"finishing": [], "continuing": []}
    with store_url(kind, postgres) as url:
        store = open_store(url)
        for r in range(rounds):
            order = ("finishing", "continuing") if r % 2 else ("continuing", "finishing")
            for name in order:
                todo = batches(name == "finishing", r, events, batch)
                start = time.perf_counter()
                for records in todo:
                    store.append(records)
                rates[name].append(events / (time.perf_counter() - start))
        store.close()
    finishing, continuing = (statistics.median(rates[k]) for k in ("finishing", "continuing"))
    return {
        "store": kind,
        "rounds": rounds,
        "events": events,
        "batch": batch,
        "finishing_events_per_s": round(finishing),
        "continuing_events_per_s": round(continuing),
        "finishing_over_continuing": round(finishing / continuing, 3),
    }


def posts(config: str, count: int) -> None:
    """``count`` single-event POSTs one after another, in-process, to the ``config`` app
    (what callgrind counts)."""

    async def go(tmp: Path) -> None:
        app = apps(tmp)[config]
        lifespans = await _started([(app, [])])
        switch = metrics_off() if config == "off" else contextlib.nullcontext()
        with switch:
            for n in range(count):
                await _post(app, [], n)
        for task in lifespans:
            task.cancel()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(go(Path(tmp)))


def instructions() -> dict[str, Any]:
    """Instructions per single-event POST with metrics on and off (callgrind, all
    threads; start-up and the first 100 requests subtracted)."""
    per_post = instructions_per_post(__file__, ("off", "on"))
    return {
        "instructions_per_post": {c: round(v) for c, v in per_post.items()},
        "ratio_off_over_on": round(per_post["off"] / per_post["on"], 3),
        "added_per_post": round(per_post["on"] - per_post["off"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--appends",
        choices=["sqlite", "postgresql"],
        help="instead: Store.append of batches that finish their traces against batches"
        " that do not",
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--instructions", action="store_true", help="instead: instructions per POST (valgrind)"
    )
    parser.add_argument("--posts", nargs=2, metavar=("on|off", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.posts:
        posts(args.posts[0], int(args.posts[1]))
        return
    if args.instructions:
        found = instructions()
    elif args.appends:
        found = appends(args.appends, args.postgres, args.rounds, args.events, args.batch)
    else:
        found = run(args.rounds)
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
