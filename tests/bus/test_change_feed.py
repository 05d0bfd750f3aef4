"""``?wait`` on an API replica wakes from the change feed, not from its own polling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until, make_events, records_of
from waymark.api.app import create_app
from waymark.bus import WatchingBusSink, open_bus
from waymark.bus.base import BusSettings
from waymark.collector import Collector
from waymark.config import Settings
from waymark.model import Summary
from waymark.pipelines import Pipelines
from waymark.store.sqlite import SQLiteStore
from waymark.watch import Watcher


def test_a_waiting_reader_wakes_when_a_collector_commits(tmp_path: Path, bus_url: str) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    docs = make_events(1, 3)
    docs[-1]["trace_status"] = "FINISHED"
    records = records_of(docs)
    trace = ("default", records[0].trace_id)

    async def go() -> Summary | None:
        # The replica re-reads on its own only once a minute: only the feed can wake it in time.
        watcher = Watcher()
        replica = WatchingBusSink(open_bus(bus_url), watcher)
        await replica.start()
        collector_bus = open_bus(bus_url)
        collector = Collector(store, collector_bus, Pipelines())
        collecting = asyncio.create_task(collector.run())

        async def read() -> Summary | None:
            return await asyncio.to_thread(store.summary, *trace)

        waiting = asyncio.create_task(watcher.wait_done(trace, 60, read))
        await asyncio.sleep(0.2)  # the waiter has read "no trace yet" and sleeps
        assert not waiting.done()
        await replica.submit(records)
        # Without the feed the waiter would sleep its full 60 s; 15 s is ample to wake.
        summary = await asyncio.wait_for(waiting, 15)
        collector.stop()
        await collecting
        await collector_bus.close()
        await replica.close()
        return summary

    try:
        summary = asyncio.run(go())
    finally:
        store.close()
    assert summary is not None
    assert summary.done and summary.event_count == 3


def test_the_api_in_bus_mode_answers_202_and_the_event_arrives(
    tmp_path: Path, bus_url: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    with TestClient(create_app(Settings(store=db_url, bus=bus_url))) as client:
        answer = client.post(
            "/v1/events", json={"trace_id": "t-1", "trace_status": "FINISHED", "stage": "END"}
        )
        assert answer.status_code == 202, answer.text
        [event_id] = answer.json()["event_ids"]
        assert client.get("/v1/traces/t-1").status_code == 404  # not in the store yet: on the bus

    store = SQLiteStore(db_url)
    try:
        collect_until(store, bus_url, lambda c: c.counters.appended >= 1)
        summary = store.summary("default", "t-1")
        assert summary is not None and summary.done and summary.current.event_id == event_id
    finally:
        store.close()


def test_a_bad_bus_url_names_the_setting() -> None:
    with pytest.raises(ValueError, match="unknown setting 'strem'"):
        BusSettings.from_url("nats://127.0.0.1:4222?strem=X")
    with pytest.raises(ValueError, match="ack_wait_s='soon' is not a float"):
        BusSettings.from_url("nats://127.0.0.1:4222?ack_wait_s=soon")
    with pytest.raises(ValueError, match="unsupported bus URL"):
        BusSettings.from_url("kafka://127.0.0.1:9092")
    settings = BusSettings.from_url("nats://a:4222,b:4222?stream=S&ack_wait_s=5")
    assert settings.servers == ("nats://a:4222", "nats://b:4222")
    assert (settings.stream, settings.ack_wait_s, settings.consumer) == (
        "S",
        5.0,
        "waymark-collector",
    )
