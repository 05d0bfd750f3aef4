"""The tracker's added cost per step, in microseconds, against a bare function call.

Runs each way of reporting a step many times (a decorated sync function, a decorated
coroutine, a ``with`` block, a nested step) and subtracts the same loop without the
tracker: ``added_us`` is what the caller pays (best of ``--repeat``). Events go through
the real queue and sender thread to the ``noop`` transport, so the sender competes for the
interpreter during the loop; ``cpu_us_per_step_with_sender`` adds the rest of its work
(process CPU time of loop and flush, per step). Prints JSON::

    .venv/bin/python bench/tracker.py [--steps N] [--repeat R]

The target is under 20 microseconds per step (issue 5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

from waymark.sdk import Tracker

TARGET_US = 20.0


def best_of(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


class Measured:
    """Best wall time of the loop itself (what the caller pays), and the process CPU time
    of loop plus flush (what the host pays in all, the sender thread's work included)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.cpu_s: list[float] = []

    def __call__(self, loop: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:
            self.tracker.flush()
            cpu0 = time.process_time()
            wall = loop()
            self.tracker.flush()
            self.cpu_s.append(time.process_time() - cpu0)
            return wall

        return run


def loop_sync(fn: Callable[[int], int], steps: int) -> float:
    start = time.perf_counter()
    for i in range(steps):
        fn(i)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    steps, repeat = args.steps, args.repeat

    # The queue bound is above the step count so that nothing is dropped (a drop is cheaper).
    tracker = Tracker(transport="noop", component="bench", max_queue=steps * 2)
    measured = Measured(tracker)

    def bare(i: int) -> int:
        return i + 1

    decorated = tracker.step(stage="BENCH", trace_id="bench-trace")(bare)

    def with_block(i: int) -> int:
        with tracker.step(stage="BENCH", trace_id="bench-trace") as step:
            step.add(outputs=["out"])
            return i + 1

    outer = tracker.step(stage="OUTER", trace_id="bench-trace")

    inherits = tracker.step(stage="INNER")(bare)  # no trace id: takes the outer step's

    async def bare_async(i: int) -> int:
        return i + 1

    decorated_async = tracker.step(stage="BENCH", trace_id="bench-trace")(bare_async)

    async def loop_async(fn: Callable[[int], object], n: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            await fn(i)  # type: ignore[misc]
        return time.perf_counter() - start

    def per_step_us(total_s: float, base_s: float) -> float:
        return round((total_s - base_s) / steps * 1e6, 3)

    results: dict[str, float] = {}
    base = best_of(repeat, lambda: loop_sync(bare, steps))
    results["decorator_sync"] = per_step_us(
        best_of(repeat, measured(lambda: loop_sync(decorated, steps))), base
    )
    results["with_block_and_add"] = per_step_us(
        best_of(repeat, measured(lambda: loop_sync(with_block, steps))), base
    )
    with outer:
        results["nested_inheriting_the_trace"] = per_step_us(
            best_of(repeat, measured(lambda: loop_sync(inherits, steps))), base
        )
    base_async = best_of(repeat, lambda: asyncio.run(loop_async(bare_async, steps)))
    results["decorator_async"] = per_step_us(
        best_of(repeat, measured(lambda: asyncio.run(loop_async(decorated_async, steps)))),
        base_async,
    )
    stats = tracker.stats()
    tracker.close()

    worst = max(results.values())
    print(
        json.dumps(
            {
                "benchmark": "tracker added cost per step",
                "unit": "microseconds",
                "steps": steps,
                "repeat": repeat,
                "bare_call_us": round(base / steps * 1e6, 3),
                "added_us": results,
                "median_added_us": round(statistics.median(results.values()), 3),
                "worst_added_us": worst,
                "cpu_us_per_step_with_sender": round(
                    statistics.median(measured.cpu_s) / steps * 1e6 - base / steps * 1e6, 3
                ),
                "target_us": TARGET_US,
                "within_target": worst < TARGET_US,
                "events_sent": stats.sent,
                "events_dropped": stats.dropped,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
