"""The OpenLineage front door in-process: batches, gzip, duplicates, tenants, errors."""

from __future__ import annotations

import copy
import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES

EXAMPLE = json.loads((EXAMPLES / "openlineage-child-complete.json").read_text())
ROOT = EXAMPLE["run"]["facets"]["parent"]["root"]["run"]["runId"]
URL = "/api/v1/lineage"


def run_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(EXAMPLE)
    event.update(changes)
    return event


def events(client: TestClient, trace: str = ROOT, **headers: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/traces/{trace}/events", headers=headers)
    if response.status_code == 404:
        return []
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_the_sample_child_event(client: TestClient) -> None:
    response = client.post(URL, json=EXAMPLE)
    assert response.status_code == 201
    (event,) = events(client)
    assert event["trace_id"] == ROOT
    assert (event["component"], event["operation"]) == (
        "airflow-prod",
        "parking_fees_daily.to_parquet",
    )
    assert (event["status"], event["trace_status"]) == ("SUCCESS", "CONTINUE")
    assert event["inputs"] == ["s3://ok-origo-raw/green/parking-fees/fees.csv"]
    assert event["outputs"] == ["s3://ok-origo-processed/green/parking-fees/fees.parquet"]
    assert event["end_time"] == "2026-11-20T10:05:00.000000Z"


def test_a_batch_and_a_resent_event(client: TestClient) -> None:
    start = run_event(eventType="START", eventTime="2026-11-20T10:04:00Z")
    response = client.post(URL, json=[start, EXAMPLE])
    assert response.status_code == 201
    assert client.post(URL, json=EXAMPLE).status_code == 201  # re-sent: a duplicate
    stored = events(client)
    assert [(e["status"], e.get("start_time")) for e in stored] == [
        ("IN_PROGRESS", "2026-11-20T10:04:00.000000Z"),
        ("SUCCESS", None),
    ]


def test_gzip_bodies(client: TestClient) -> None:
    response = client.post(
        URL,
        content=gzip.compress(json.dumps(EXAMPLE).encode()),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 201
    assert len(events(client)) == 1
    broken = client.post(URL, content=b"not gzip", headers={"content-encoding": "gzip"})
    assert broken.status_code == 400
    assert broken.json()["message"].startswith("body is not valid gzip")


def test_a_gzip_bomb_is_refused(client: TestClient) -> None:
    bomb = gzip.compress(b"[" + b" " * (2 * 1024 * 1024) + b"]")
    response = client.post(URL, content=bomb, headers={"content-encoding": "gzip"})
    assert response.status_code == 413
    assert response.json()["code"] == 413


@pytest.mark.parametrize(
    ("kind", "is_root", "status", "trace_status"),
    [
        ("START", True, "IN_PROGRESS", "STARTED"),
        ("RUNNING", True, "IN_PROGRESS", "CONTINUE"),
        ("OTHER", True, "IN_PROGRESS", "CONTINUE"),
        ("COMPLETE", True, "SUCCESS", "FINISHED"),
        ("FAIL", True, "FAILED", "FINISHED"),
        ("ABORT", True, "FAILED", "FINISHED"),
        ("START", False, "IN_PROGRESS", "CONTINUE"),
        ("FAIL", False, "FAILED", "CONTINUE"),
        ("ABORT", False, "FAILED", "CONTINUE"),
    ],
)
def test_event_types(
    client: TestClient, kind: str, is_root: bool, status: str, trace_status: str
) -> None:
    event = run_event(eventType=kind)
    if is_root:
        event["run"] = {"runId": ROOT}
    client.post(URL, json=event)
    (stored,) = events(client)
    assert (stored["status"], stored["trace_status"]) == (status, trace_status)
    assert ("message" in stored) == (kind == "ABORT")


def test_trace_id_falls_back_to_parent_then_own_run(client: TestClient) -> None:
    parent_only = run_event()
    del parent_only["run"]["facets"]["parent"]["root"]
    parent = parent_only["run"]["facets"]["parent"]["run"]["runId"]
    client.post(URL, json=parent_only)
    assert len(events(client, parent)) == 1
    alone = run_event(run={"runId": "5e0c8f2a-0000-4000-8000-000000000001"})
    client.post(URL, json=alone)
    assert len(events(client, "5e0c8f2a-0000-4000-8000-000000000001")) == 1


def test_tenant_header(client: TestClient) -> None:
    client.post(URL, json=EXAMPLE, headers={"Waymark-Tenant": "airflow"})
    assert events(client) == []
    assert len(events(client, **{"Waymark-Tenant": "airflow"})) == 1


# -- errors: Marquez's shape, nothing stored ------------------------------------------------


@pytest.mark.parametrize(
    ("event", "loc"),
    [
        (run_event(eventType="FINISHED"), ["eventType"]),
        (run_event(eventTime="later"), ["eventTime"]),
        ({k: v for k, v in EXAMPLE.items() if k != "eventTime"}, ["eventTime"]),
        ({k: v for k, v in EXAMPLE.items() if k != "run"}, ["run"]),
        (run_event(run={"facets": {}}), ["run", "runId"]),
        (run_event(job={"name": "x"}), ["job", "namespace"]),
        (run_event(inputs=[{"namespace": "s3://b"}]), ["inputs", 0, "name"]),
    ],
)
def test_bad_events(client: TestClient, event: dict[str, Any], loc: list[Any]) -> None:
    response = client.post(URL, json=[EXAMPLE, event])
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == 422
    assert body["errors"][0]["loc"] == [1, *loc]
    assert events(client) == []


def test_bad_error_facet(client: TestClient) -> None:
    event = run_event(eventType="FAIL")
    event["run"]["facets"]["errorMessage"] = {"programmingLanguage": "python"}
    response = client.post(URL, json=event)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["run", "facets", "errorMessage", "message"]


@pytest.mark.parametrize(
    ("raw", "status"), [(b"{not json", 400), (b"[]", 422), (b"[1]", 422), (b'"x"', 400)]
)
def test_bodies_that_are_not_run_events(client: TestClient, raw: bytes, status: int) -> None:
    response = client.post(URL, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert set(response.json()) >= {"code", "message"}


def test_a_bad_tenant_header_answers_in_marquez_shape(client: TestClient) -> None:
    response = client.post(URL, json=EXAMPLE, headers={"Waymark-Tenant": "a b"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", "Waymark-Tenant"]
    assert events(client) == []
