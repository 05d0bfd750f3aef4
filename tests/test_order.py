"""Events of one request that carry no time keep the order they were sent in: in a trace's
history, in ``/v1/events`` and in the current step, whatever their (random) ids."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

STEPS = ["data-uploader", "csv-validator", "csv-to-parquet", "writer", "indexer"]


def batch(trace_id: str) -> list[dict[str, Any]]:
    """Timeless events of one trace, one per step, the last one finishing it."""
    out: list[dict[str, Any]] = [{"trace_id": trace_id, "component": c} for c in STEPS]
    out[-1]["trace_status"] = "FINISHED"
    return out


def history_of(client: TestClient, trace_id: str) -> list[str]:
    answer = client.get(f"/v1/traces/{trace_id}/events")
    assert answer.status_code == 200, answer.text
    return [e["component"] for e in answer.json()["items"]]


def test_the_same_batch_sent_again_and_again_keeps_its_order(client: TestClient) -> None:
    for _ in range(8):
        trace_id = f"order-{uuid.uuid4()}"
        sent = client.post("/v1/events", json=batch(trace_id))
        assert sent.status_code == 202, sent.text
        assert history_of(client, trace_id) == STEPS
        okdata = client.get(f"/status/{trace_id}").json()
        assert [e["component"] for e in okdata] == STEPS
        summary = client.get(f"/v1/traces/{trace_id}").json()
        assert summary["current"]["component"] == STEPS[-1]


def test_an_unfinished_batch_is_at_its_last_step(client: TestClient) -> None:
    for _ in range(8):
        trace_id = f"order-{uuid.uuid4()}"
        events = [{"trace_id": trace_id, "component": c} for c in STEPS]
        assert client.post("/v1/events", json=events).status_code == 202
        assert client.get(f"/v1/traces/{trace_id}").json()["current"]["component"] == STEPS[-1]


def test_given_ids_do_not_reorder_a_batch(client: TestClient) -> None:
    trace_id = f"order-{uuid.uuid4()}"
    events = batch(trace_id)
    for event, event_id in zip(events, ["e", "d", "c", "b", "a"], strict=True):
        event["event_id"] = f"{trace_id}-{event_id}"
    assert client.post("/v1/events", json=events).status_code == 202
    assert history_of(client, trace_id) == STEPS


def test_events_with_times_keep_the_sort_key(client: TestClient) -> None:
    trace_id = f"order-{uuid.uuid4()}"
    events = [
        {"trace_id": trace_id, "component": "late", "end_time": "2026-01-01T10:00:02Z"},
        {"trace_id": trace_id, "component": "early", "end_time": "2026-01-01T10:00:01Z"},
    ]
    assert client.post("/v1/events", json=events).status_code == 202
    assert history_of(client, trace_id) == ["early", "late"]


def test_gsm_messages_without_timestamps_keep_their_order(client: TestClient) -> None:
    trace_id = f"order-{uuid.uuid4()}"
    stages = ["INGEST", "VALIDATE", "ENRICH", "STORE", "INDEX"]
    messages = [
        {
            "kind": "status",
            "properties": {"correlationId": trace_id, "stage": s, "status": "IN_PROGRESS"},
        }
        for s in stages
    ]
    answer = client.post(
        "/api/status-publisher/v1/status",
        json=messages,
        headers={"data-partition-id": "default"},
    )
    assert answer.status_code < 300, answer.text
    assert history_of(client, trace_id) == stages
