"""What the one check of every document (waymark.storable) costs a batch, against the
parse it follows (orjson.loads) and the validation after it (parse_events), in the same
run. Prints ratios; run with `.venv/bin/python bench/storable.py`.

Events with a path, meta, an error, inputs and outputs:
- one event: fewer brackets than the limit, so only the byte scans run;
- a batch of 1,000: more brackets than the limit, so the check walks its containers;
- the batch with one 19-digit number: the check parses it again, exactly, and walks it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from waymark import storable
from waymark.ingest import parse_events


def batch(extra: dict[str, Any] | None = None, size: int = 1000) -> bytes:
    events = [
        {
            "trace_id": f"t{i % 50}",
            "component": "writer",
            "stage": "WRITE",
            "status": "SUCCESS",
            "end_time": "2026-11-20T10:00:00Z",
            "path": f"raw/{i}.csv",
            "inputs": [f"raw/{i}.csv"],
            "outputs": [f"clean/{i}.parquet"],
            "meta": {"rows": i, "ok": True, "tags": ["a", "b"]},
            "errors": [{"message": {"en": "late"}}],
        }
        for i in range(size)
    ]
    if extra:
        events[-1]["meta"].update(extra)
    return orjson.dumps(events)


def best_of(work: Callable[[], Any], rounds: int = 30) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    cases = {
        "one event (scans)": batch(size=1),
        "1,000 events (walk)": batch(),
        "1,000, 19 digits (exact)": batch({"id": 1234567890123456789}),
    }
    for name, raw in cases.items():
        data = orjson.loads(raw)
        parse = best_of(lambda raw=raw: orjson.loads(raw))  # type: ignore[misc]
        check = best_of(lambda raw=raw, data=data: storable.check(raw, data))  # type: ignore[misc]
        validate = best_of(lambda data=data: parse_events(data))  # type: ignore[misc]
        print(
            f"{name:28} check {check * 1e3:6.2f} ms = {check / parse:5.2f} x orjson.loads"
            f" ({parse * 1e3:.2f} ms), {check / validate:5.3f} x parse_events"
            f" ({validate * 1e3:.2f} ms)"
        )


if __name__ == "__main__":
    main()
