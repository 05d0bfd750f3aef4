"""The collector's metrics: ``waymark collect --metrics-port`` against the tests' own
JetStream, read with prometheus_client's parser; and a consumer's pending messages as
JetStream reports them."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import httpx

from tests.bus.conftest import publish, raw_publish, records_of, start_collector
from tests.conftest import LiveServer, free_port, wait_for
from tests.test_metrics import Samples, value
from tests.test_metrics import scrape as scrape_server
from waymark.bus import open_bus
from waymark.store import open_store


def scrape(port: int) -> Samples | None:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except httpx.TransportError:
        return None
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def docs(trace: str, last_status: str) -> list[dict[str, object]]:
    return [
        {"event_id": f"{trace}-1", "trace_id": trace, "status": "IN_PROGRESS"},
        {
            "event_id": f"{trace}-2",
            "trace_id": trace,
            "status": last_status,
            "trace_status": "FINISHED",
        },
    ]


def test_pending_is_what_the_consumer_has_not_delivered(bus_url: str) -> None:
    publish(bus_url, records_of(docs("p1", "SUCCESS")), per_message=1)  # two messages

    async def go() -> dict[str, int]:
        bus = open_bus(bus_url)
        try:
            return {source.name: await source.pending() for source in await bus.sources()}
        finally:
            await bus.close()

    assert asyncio.run(go()) == {"events": 2, "gsm": 0}


def test_collect_serves_its_metrics(bus_url: str, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'c.db'}"
    open_store(store_url).close()
    records = records_of(docs("ok", "SUCCESS") + docs("bad", "FAILED"))
    publish(bus_url, records, per_message=1)  # four messages
    raw_publish(bus_url, "default", [b"not json", b"{}"])  # two to park
    port = free_port()
    proc = start_collector(store_url, bus_url, "--metrics-port", str(port))
    try:

        def collected() -> bool:
            samples = scrape(port) or {}
            return (
                value(samples, "waymark_collector_messages_total") == 6
                and value(samples, "waymark_dead_letters_total") == 2
                and PENDING in samples
                and samples[PENDING] == 0
            )

        assert wait_for(collected, 30)
        samples = scrape(port)
        assert samples is not None
        assert value(samples, "waymark_collector_batches_total") >= 1
        assert value(samples, "waymark_traces_turned_total", state="SUCCEEDED") == 1
        assert value(samples, "waymark_traces_turned_total", state="FAILED") == 1
        assert value(samples, "waymark_store_append_seconds_count") >= 1
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        log = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 0, log


PENDING = ("waymark_collector_pending_messages", frozenset({("source", "events")}))


def test_a_metrics_port_in_use_is_named(bus_url: str, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'c.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_collector(store_url, bus_url, "--metrics-port", str(port))
        proc.wait(20)
    assert proc.stderr is not None
    log = proc.stderr.read()
    proc.stderr.close()
    assert proc.returncode == 1
    assert b"waymark:" in log and b"ddress already in use" in log


def test_an_api_in_bus_mode_times_its_publishes(bus_url: str, db_url: str) -> None:
    server = LiveServer(db_url, args=["--bus", bus_url])
    try:
        for _ in range(3):
            answer = httpx.post(f"{server.url}/v1/events", json=docs(uuid.uuid4().hex, "SUCCESS"))
            assert answer.status_code == 202
        samples = scrape_server(server.url)
        assert value(samples, "waymark_bus_publish_seconds_count") == 3
        assert value(samples, "waymark_events_accepted_total", door="v1") == 6
        assert value(samples, "waymark_store_append_seconds_count") == 0  # the collectors' work
    finally:
        server.stop()
