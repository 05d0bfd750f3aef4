"""What webhook subscriptions cost the ingest path, in one run.

Two tenants in one store: ``quiet`` has no subscription, ``watched`` has three (started,
succeeded and failed, each matching every trace), so that each of its appends reads the
subscriptions, reads its traces' states before and after the upsert and writes outbox
rows (in the worst case: every batch starts and finishes new traces). The same batches
(``--batch`` events over ``--batch // 5`` new traces, each trace's last event
finishing it) are appended through ``Store.append`` by each tenant in turns, so a busy
machine slows both alike; no notifier runs, so the figure is the append's own cost.
Prints one JSON object: events/s of each (medians over ``--rounds``) and the ratio
watched/quiet. Usage::

    .venv/bin/python bench/webhooks.py [--store sqlite|postgresql] [--events 20000]
        [--batch 500] [--rounds 5] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from pg_batch import fresh_schema  # the same folder: run as `python bench/webhooks.py`
from waymark.model import Event, Record, now_us, to_record
from waymark.store import open_store
from waymark.store.base import Store, Webhook


@contextlib.contextmanager
def store_url(kind: str, postgres: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    with fresh_schema(postgres) as url:
        yield url


def batches(tenant: str, round_: int, events: int, batch: int) -> list[list[Record]]:
    out = []
    received = now_us()
    for b in range(events // batch):
        records = []
        for i in range(batch):
            trace = f"r{round_}-b{b}-t{i // 5}"
            status = "FINISHED" if i % 5 == 4 else "CONTINUE"
            event = Event(
                trace_id=trace,
                event_id=f"{trace}-e{i % 5}",
                trace_status=status,
                status="FAILED" if b % 2 else "SUCCESS",
                component="bench",
                domain_id="ds/1",
            )
            records.append(to_record(event, tenant, received, timestamp_us=received + i))
        out.append(records)
    return out


def run(store: Store, todo: list[list[Record]]) -> float:
    start = time.perf_counter()
    for records in todo:
        store.append(records)
    return sum(len(r) for r in todo) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with store_url(args.store, args.postgres) as url:
        store = open_store(url)
        for i, kind in enumerate(("trace.started", "trace.succeeded", "trace.failed")):
            store.add_webhook(
                Webhook("watched", f"wh_{i}", "https://example.com/", (kind,), "whsec_AA==", 1)
            )
        rates: dict[str, list[float]] = {"quiet": [], "watched": []}
        for r in range(args.rounds):
            order = ("quiet", "watched") if r % 2 == 0 else ("watched", "quiet")
            for tenant in order:
                rates[tenant].append(run(store, batches(tenant, r, args.events, args.batch)))
        store.close()
    quiet, watched = (statistics.median(rates[t]) for t in ("quiet", "watched"))
    sys.stdout.write(
        orjson.dumps(
            {
                "store": args.store,
                "events": args.events,
                "batch": args.batch,
                "rounds": args.rounds,
                "quiet_events_per_s": round(quiet),
                "watched_events_per_s": round(watched),
                "watched_over_quiet": round(watched / quiet, 3),
            }
        ).decode()
        + "\n"
    )


if __name__ == "__main__":
    main()
