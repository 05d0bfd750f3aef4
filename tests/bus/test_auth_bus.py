"""Bus mode with authentication on: who submitted each event travels with it through
JetStream and a collector, from the native door and the front doors alike, and a refused
request publishes nothing."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until
from tests.test_api_access import add_key, bearer
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.store import Store


def test_submitted_by_travels_through_the_collector(
    store_url: str, store: Store, bus_url: str, tmp_path: Path
) -> None:
    ingest = add_key(store, "alpha:writer", "alpha:reader:sales", name="ingest-bot")
    other = add_key(store, "alpha:writer:sales", name="sales-only")
    settings = Settings(store=store_url, bus=bus_url, auth=("keys",))
    with TestClient(create_app(settings)) as c:
        sent = c.post(
            "/v1/events",
            json=[{"trace_id": "t", "domain_id": "sales/1"}, {"trace_id": "u"}],
            headers=bearer(ingest),
        )
        assert sent.status_code == 202, sent.text
        okdata = {
            "domain": "dataset",
            "domain_id": "sales/1",
            "component": "c",
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-01T00:00:01Z",
        }
        started = c.post("/status", json=okdata, headers=bearer(other))
        assert started.status_code == 200, started.text
        refused = c.post(
            "/v1/events", json={"trace_id": "h", "domain_id": "hr"}, headers=bearer(other)
        )
        assert refused.status_code == 403
        counters = collect_until(store, bus_url, lambda col: col.counters.appended >= 3)
        assert counters.appended == 3 and counters.parked == 0
        by_trace = {
            trace: [e.get("submitted_by") for e in store.events("alpha", trace).items]
            for trace in ("t", "u", started.json()["trace_id"], "h")
        }
        assert by_trace == {
            "t": ["ingest-bot"],
            "u": ["ingest-bot"],
            started.json()["trace_id"]: ["sales-only"],
            "h": [],
        }
        # and the reader's dataset scope holds for what the collector stored
        listed = c.get("/v1/traces", headers=bearer(ingest)).json()["items"]
        assert sorted(s["trace_id"] for s in listed) == sorted(["t", started.json()["trace_id"]])
