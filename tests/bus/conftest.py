"""Fixtures for the bus tests: the real NATS JetStream on 127.0.0.1:4222, with streams,
subjects and consumers of a random name per test, deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import nats.js.errors
import pytest

from waymark.bus import open_bus
from waymark.bus.base import BusSettings, BusSink
from waymark.collector import Collector, Counters
from waymark.ingest import to_records
from waymark.model import Event, Record, now_us
from waymark.pipelines import Pipelines
from waymark.store.base import Store

NATS = "nats://127.0.0.1:4222"


def bus_url_for(suffix: str, **extra: object) -> str:
    query = {
        "stream": f"T_{suffix}",
        "gsm_stream": f"TG_{suffix}",
        "prefix": f"t{suffix}",
        "gsm_subject": f"t{suffix}.gsm",
        "consumer": f"c{suffix}",
        "ack_wait_s": 2,
        **extra,
    }
    return NATS + "?" + "&".join(f"{k}={v}" for k, v in query.items())


async def _delete_streams(settings: BusSettings) -> None:
    nc = await nats.connect(NATS)
    try:
        js = nc.jetstream()
        for name in (settings.stream, settings.gsm_stream):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture
def bus_url() -> Iterator[str]:
    """A bus URL of this test's own: streams, subjects and consumer nobody else uses."""
    url = bus_url_for(uuid.uuid4().hex[:10])
    try:
        yield url
    finally:
        asyncio.run(_delete_streams(BusSettings.from_url(url)))


def make_events(
    traces: int, per_trace: int, *, seed: int = 1, prefix: str = "tr"
) -> list[dict[str, Any]]:
    """Events with ids, random statuses, errors and times in the last hour, some finishing."""
    rnd = random.Random(seed)
    base = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for t in range(traces):
        for e in range(per_trace):
            doc: dict[str, Any] = {
                "event_id": f"{prefix}{t}-e{e}-{seed}",
                "trace_id": f"{prefix}{t}",
                "component": rnd.choice(["router", "writer", "indexer"]),
                "stage": rnd.choice(["UPLOAD", "TRANSFORM", "WRITE"]),
                "status": rnd.choice(["SUCCESS", "SUCCESS", "FAILED"]),
                "trace_status": rnd.choice(["CONTINUE", "CONTINUE", "CONTINUE", "FINISHED"]),
                "end_time": (base + timedelta(milliseconds=rnd.randrange(3_600_000))).isoformat(),
            }
            if doc["status"] == "FAILED":
                doc["errors"] = [{"message": {"en": f"failed at {doc['stage']}"}}]
            if e == 0:
                doc["domain"], doc["domain_id"] = "dataset", f"ds-{t}/1"
            out.append(doc)
    return out


def records_of(docs: Sequence[dict[str, Any]], tenant: str = "default") -> list[Record]:
    events = [Event.model_validate(d) for d in docs]
    return to_records(events, tenant, Pipelines(), received_us=now_us())


def publish(url: str, records: Sequence[Record], per_message: int = 500) -> None:
    """Publish through the API's own bus sink, ``per_message`` events to a message."""

    async def go() -> None:
        bus = open_bus(url)
        sink = BusSink(bus)
        try:
            for start in range(0, len(records), per_message):
                await sink.submit(records[start : start + per_message])
        finally:
            await sink.close()

    asyncio.run(go())


def collect_until(
    store: Store,
    url: str,
    done: Callable[[Collector], bool],
    *,
    timeout_s: float = 30,
    before: Callable[[], Awaitable[None]] | None = None,
    **options: Any,
) -> Counters:
    """Run a collector in-process until ``done(collector)`` or the timeout, then stop it."""

    async def go() -> Counters:
        bus = open_bus(url)
        collector = Collector(store, bus, Pipelines(), **options)
        task = asyncio.create_task(collector.run())
        if before is not None:
            await before()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not done(collector) and loop.time() < deadline and not task.done():
            await asyncio.sleep(0.05)
        collector.stop()
        try:
            return await task
        finally:
            await bus.close()

    return asyncio.run(go())
