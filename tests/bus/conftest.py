"""Fixtures for the bus tests: the tests' own NATS JetStream (``jetstream``, syncing before
it acknowledges), with streams, subjects and consumers of a random name per test, deleted
afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import nats
import psycopg
import pytest

from tests.conftest import pg_schema
from tests.jetstream import JetStreamServer
from waymark.bus import open_bus
from waymark.bus.base import BusSettings, BusSink
from waymark.bus.nats import delete_streams
from waymark.collector import Collector, Counters
from waymark.ingest import to_records
from waymark.model import Event, Record, now_us
from waymark.pipelines import Pipelines
from waymark.store import open_store
from waymark.store.base import Store
from waymark.summary import summarize

DEFAULT_STALL_US = 24 * 3600 * 1_000_000


def bus_url_for(server: str, suffix: str, **extra: object) -> str:
    """A bus URL on ``server`` (``nats://host:port``) whose names end in ``suffix``."""
    query = {
        "stream": f"T_{suffix}",
        "gsm_stream": f"TG_{suffix}",
        "prefix": f"t{suffix}",
        "gsm_subject": f"t{suffix}.gsm",
        "consumer": f"c{suffix}",
        "ack_wait_s": 2,
        **extra,
    }
    return server + "?" + "&".join(f"{k}={v}" for k, v in query.items())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each backend in turn: a fresh SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'w.db'}"
        open_store(url).close()  # the schema, so that several collectors can start at once
        yield url
    else:
        with pg_schema() as url:
            yield url


def count_rows(store_url: str, table: str) -> int:
    """Rows of ``table``, straight from the database (no store code involved)."""
    query = f"SELECT count(*) FROM {table}"
    if store_url.startswith("sqlite:///"):
        path = store_url[len("sqlite:///") :]
        if not Path(path).exists():
            return 0
        with contextlib.closing(sqlite3.connect(path)) as conn:
            (count,) = conn.execute(query).fetchone()
    else:
        with psycopg.connect(store_url) as conn:
            (count,) = conn.execute(query).fetchone()  # type: ignore[misc]
    return int(count)


def count_events(store_url: str) -> int:
    """Events stored, straight from the database (no store code involved)."""
    return count_rows(store_url, "events")


def stored_ids(store_url: str) -> list[str]:
    """Every stored event id, sorted, repeats kept."""
    query = "SELECT event_id FROM events ORDER BY event_id"
    if store_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(store_url[len("sqlite:///") :])) as conn:
            rows = conn.execute(query).fetchall()
    else:
        with psycopg.connect(store_url) as conn:
            rows = conn.execute(query).fetchall()
    return sorted(r[0] for r in rows)


def assert_summaries_match(store: Store, records: Sequence[Record]) -> None:
    """Every stored summary equals the pure summary rule applied to its trace's events."""
    by_trace: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        by_trace[(r.tenant, r.trace_id)].append(r)
    now = now_us()
    for (tenant, trace_id), group in by_trace.items():
        stored = store.summary(tenant, trace_id)
        expected = summarize(group, now_us=now, stall_timeout_us=DEFAULT_STALL_US)
        assert stored is not None, trace_id
        assert expected is not None
        assert stored.model_dump() == expected.model_dump(), trace_id


@pytest.fixture
def bus_url(jetstream: JetStreamServer) -> Iterator[str]:
    """A bus URL of this test's own: streams, subjects and consumer nobody else uses."""
    url = bus_url_for(jetstream.url, uuid.uuid4().hex[:10])
    try:
        yield url
    finally:
        asyncio.run(delete_streams(BusSettings.from_url(url)))


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


def raw_publish(url: str, subject_suffix: str, payloads: list[bytes]) -> None:
    """Publish bytes as they are (no wire encoding) to ``<prefix>.events.<subject_suffix>``:
    what a broken producer, or one of another version, might send."""
    settings = BusSettings.from_url(url)

    async def go() -> None:
        bus = open_bus(url)
        await bus.connect()  # the streams, as an API or a collector makes them
        await bus.close()
        nc = await nats.connect(list(settings.servers))
        try:
            js = nc.jetstream()
            for data in payloads:
                await js.publish(f"{settings.prefix}.events.{subject_suffix}", data)
        finally:
            await nc.close()

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


def start_collector(
    store_url: str, bus_url: str, *extra: str, stderr: int | IO[bytes] = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """``waymark collect`` in a subprocess; its log to ``stderr`` (a pipe, read after it
    stopped, or a file for one that logs more than a pipe holds)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "waymark.cli",
            "collect",
            "--store",
            store_url,
            "--bus",
            bus_url,
            *extra,
        ],
        stderr=stderr,
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()
