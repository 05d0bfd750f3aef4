"""okdata's clients in bus mode: ``POST /status/{id}`` right after ``POST /status`` finds the
trace even though a collector stores it moments later."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until
from tests.test_api_okdata import example
from waymark.api.app import create_app
from waymark.bus.base import BusSettings
from waymark.config import Settings
from waymark.store.sqlite import SQLiteStore


def test_an_update_waits_for_its_trace_to_arrive(tmp_path: Path, bus_url: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    store = SQLiteStore(db_url)
    collected = threading.Event()

    def collector_later() -> None:
        time.sleep(0.5)  # the update below is already waiting
        collect_until(store, bus_url, lambda c: c.counters.appended >= 2)
        collected.set()

    try:
        with TestClient(create_app(Settings(store=db_url, bus=bus_url))) as client:
            created = client.post("/status", json=example("okdata-create.json"))
            assert created.status_code == 200, created.text
            trace_id = created.json()["trace_id"]
            assert client.get(f"/v1/traces/{trace_id}").status_code == 404  # still on the bus
            thread = threading.Thread(target=collector_later)
            thread.start()
            started = time.monotonic()
            updated = client.post(f"/status/{trace_id}", json=example("okdata-update.json"))
            waited = time.monotonic() - started
            assert updated.status_code == 200, updated.text
            assert updated.json()["trace_id"] == trace_id
            assert 0.4 < waited < BusSettings().readable_within_s
            thread.join(30)
        assert collected.is_set()
        summary = store.summary("default", trace_id)
        assert summary is not None and summary.event_count == 2
    finally:
        store.close()


def test_an_unknown_trace_is_not_found_once_the_bus_urls_wait_is_over(
    tmp_path: Path, bus_url: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    url = bus_url + "&readable_within_s=0.3"
    with TestClient(create_app(Settings(store=db_url, bus=url))) as client:
        started = time.monotonic()
        answer = client.post("/status/no-such-trace", json=example("okdata-update.json"))
        waited = time.monotonic() - started
        assert answer.status_code == 404
        assert answer.json()["message"] == "Could not find item: no-such-trace"
        assert 0.3 <= waited < 5


def test_direct_to_the_store_an_unknown_trace_is_not_found_at_once(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    with TestClient(create_app(Settings(store=db_url))) as client:
        started = time.monotonic()
        answer = client.post("/status/no-such-trace", json=example("okdata-update.json"))
        assert answer.status_code == 404
        assert answer.json()["message"] == "Could not find item: no-such-trace"
        assert time.monotonic() - started < 1  # no wait for a collector that is not there
