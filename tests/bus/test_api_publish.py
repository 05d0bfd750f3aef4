"""The API in bus mode publishes events as they were sent; a collector then stores exactly
what the API stores in direct mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.store.sqlite import SQLiteStore

SENT: list[dict[str, Any]] = [
    {"event_id": "e-1", "trace_id": "t-1", "trace_status": "STARTED", "path": "raw/a.csv"},
    {
        "event_id": "e-2",
        "trace_id": "t-1",
        "start_time": "2026-11-20T11:00:00+01:00",
        "end_time": 1795337103439,
        "duration_ms": 5,
        "inputs": ["raw/a.csv"],
        "outputs": ["clean/a.parquet"],
        "errors": [{"message": {"en": "Late."}, "code": 7}],
        "body": {"files_incoming": ["raw/b.csv"], "n": 1},
        "attributes": {"rows": 10, "ok": True},
    },
    {"trace_id": "t-1", "end_time": "2026-11-20T10:00:01", "status": "FAILED"},
    {"event_id": None, "trace_id": "t-1", "start_time": "2026-11-20T10:00:02z"},
    {"event_id": "e-5", "trace_id": "t-1", "trace_status": "FINISHED", "stage": "END"},
]


def _stored(client: TestClient, ids: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    items = client.get("/v1/traces/t-1/events").json()["items"]
    for item in items:
        del item["received_at"]
        if "start_time" not in item and "end_time" not in item:
            del item["time"]  # the time of receipt
        if item["event_id"] not in ("e-1", "e-2", "e-5"):
            assert item["event_id"] in ids
            item["event_id"] = "made"
    summary = client.get("/v1/traces/t-1").json()
    for name in ("current", "updated_at", "started_at", "finished_at", "duration_ms"):
        summary.pop(name)  # e-1 and e-5 take their time from receipt
    return sorted(items, key=lambda i: (i["event_id"], i.get("path", ""))), summary


def test_what_the_bus_carries_is_stored_as_direct_mode_stores_it(
    tmp_path: Path, bus_url: str
) -> None:
    direct_url = f"sqlite:///{tmp_path / 'direct.db'}"
    bus_db = f"sqlite:///{tmp_path / 'bus.db'}"
    with TestClient(create_app(Settings(store=direct_url))) as client:
        answer = client.post("/v1/events", json=SENT)
        assert answer.status_code == 202, answer.text
        direct = _stored(client, answer.json()["event_ids"])

    with TestClient(create_app(Settings(store=bus_db, bus=bus_url))) as client:
        answer = client.post("/v1/events", json=SENT)
        assert answer.status_code == 202, answer.text
        ids = answer.json()["event_ids"]
        assert ids[:2] == ["e-1", "e-2"] and ids[4] == "e-5" and len(set(ids)) == 5
        store = SQLiteStore(bus_db)
        try:
            counters = collect_until(store, bus_url, lambda c: c.counters.appended >= 5)
        finally:
            store.close()
        assert counters.appended == 5 and counters.parked == 0
        assert _stored(client, ids) == direct
