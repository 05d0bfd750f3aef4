"""The GSM front door in-process: publisher, processor, pipelines, tenants and errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES
from waymark.api.app import create_app
from waymark.config import Settings

TRACE = "7d3f0c8e-2b1a-4c55-9a43-0e6d2f1b8c11"
PUBLISH = "/api/status-publisher/v1/status"
DETAILS = "/api/status-publisher/v1/dataset-details"
QUERY = "/api/status-processor/v1/status/query"
READ_DETAILS = "/api/status-processor/v1/dataset-details"
OPENDES = {"data-partition-id": "opendes"}


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def status(trace: str = TRACE, **props: Any) -> dict[str, Any]:
    base = {
        "correlationId": trace,
        "stage": "INGEST",
        "status": "IN_PROGRESS",
        "timestamp": 1763632800000,
    }
    return {"kind": "status", "properties": {**base, **props}}


def summary(client: TestClient, trace: str = TRACE, tenant: str = "opendes") -> Any:
    return client.get(f"/v1/traces/{trace}", headers={"Waymark-Tenant": tenant})


def test_publish_the_sample_and_query_it_back(client: TestClient) -> None:
    sent = example("gsm-status.json")
    response = client.post(PUBLISH, json=sent, headers=OPENDES)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3}
    found = client.post(QUERY, json={"statusQuery": {"correlationId": TRACE}}, headers=OPENDES)
    assert found.status_code == 200
    results = found.json()["results"]
    expected = [{**m["properties"], "additionalProperties": None} for m in sent]
    expected[2]["additionalProperties"] = {"workflowName": "csv_ingestion"}
    assert results == expected
    assert found.json()["cursor"] is None


def test_query_filters_and_pages(client: TestClient) -> None:
    client.post(PUBLISH, json=example("gsm-status.json"), headers=OPENDES)

    def query(body: dict[str, Any]) -> Any:
        response = client.post(QUERY, json=body, headers=OPENDES)
        assert response.status_code == 200, response.text
        return response.json()

    by_stage = query({"statusQuery": {"stage": ["WORKFLOW"]}})["results"]
    assert [r["status"] for r in by_stage] == ["SUBMITTED"]
    by_status = query({"statusQuery": {"correlationId": TRACE, "status": ["SUCCESS", "FAILED"]}})
    assert [r["message"] for r in by_status["results"]] == ["Metadata stored"]
    by_record = query({"statusQuery": {"recordId": "d2a7c9f0-run"}})["results"]
    assert [r["stage"] for r in by_record] == ["WORKFLOW"]

    first = query({"statusQuery": {"correlationId": TRACE}, "limit": 2})
    assert len(first["results"]) == 2 and first["cursor"]
    rest = query({"statusQuery": {"correlationId": TRACE}, "limit": 2, "cursor": first["cursor"]})
    assert [r["stage"] for r in rest["results"]] == ["WORKFLOW"] and rest["cursor"] is None


def test_timestamps_in_seconds_and_milliseconds(client: TestClient) -> None:
    client.post(
        PUBLISH,
        json=[status(timestamp=1625221800), status(stage="B", timestamp=1625221801500)],
        headers=OPENDES,
    )
    events = client.get(f"/v1/traces/{TRACE}/events", headers={"Waymark-Tenant": "opendes"}).json()[
        "items"
    ]
    assert [e["end_time"] for e in events] == [
        "2021-07-02T10:30:00.000000Z",
        "2021-07-02T10:30:01.500000Z",
    ]
    results = client.post(
        QUERY, json={"statusQuery": {"correlationId": TRACE}}, headers=OPENDES
    ).json()["results"]
    assert [r["timestamp"] for r in results] == [1625221800000, 1625221801500]


def test_the_correlation_id_header_is_the_default_trace(client: TestClient) -> None:
    item = status()
    del item["properties"]["correlationId"]
    response = client.post(PUBLISH, json=[item], headers={**OPENDES, "correlation-id": "c-7"})
    assert response.status_code == 200
    assert summary(client, "c-7").status_code == 200


def test_a_resent_message_is_not_stored_twice(client: TestClient) -> None:
    for _ in range(2):
        client.post(PUBLISH, json=example("gsm-status.json"), headers=OPENDES)
    assert summary(client).json()["event_count"] == 3


def test_default_pipeline_finishes_at_workflow(client: TestClient) -> None:
    client.post(PUBLISH, json=example("gsm-status.json"), headers=OPENDES)
    assert summary(client).json()["done"] is False
    client.post(
        PUBLISH,
        json=[status(stage="WORKFLOW", status="SUCCESS", timestamp=1763632900000)],
        headers=OPENDES,
    )
    answer = summary(client).json()
    assert (answer["done"], answer["state"], answer["trace_status"]) == (
        True,
        "SUCCEEDED",
        "FINISHED",
    )


@pytest.fixture
def piped(tmp_path: Path) -> Iterator[TestClient]:
    rules = tmp_path / "pipelines.toml"
    rules.write_text(
        '[default]\nstall_timeout_s = 0\n\n[[pipeline]]\ntenant = "opendes"\n'
        'final_stages = ["INDEX"]\nfailed_finishes = true\n'
    )
    settings = Settings(store=f"sqlite:///{tmp_path / 'w.db'}", pipelines=str(rules))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_pipelines_file_names_final_stages_per_tenant(piped: TestClient) -> None:
    piped.post(PUBLISH, json=[status(stage="WORKFLOW", status="SUCCESS")], headers=OPENDES)
    assert summary(piped).json()["done"] is False  # WORKFLOW is not final for opendes
    piped.post(
        PUBLISH,
        json=[status(stage="WORKFLOW", status="SUCCESS")],
        headers={"data-partition-id": "other"},
    )
    assert summary(piped, tenant="other").json()["done"] is True  # the default rule
    piped.post(
        PUBLISH,
        json=[status(stage="CONVERT", status="FAILED", message="bad CRS", timestamp=1763632900000)],
        headers=OPENDES,
    )
    answer = summary(piped).json()
    assert (answer["done"], answer["state"]) == (True, "FAILED")
    assert answer["errors"] == [{"message": {"en": "bad CRS"}}]


def test_dataset_details_by_correlation_or_dataset(client: TestClient) -> None:
    sent = example("gsm-dataset-details.json")
    response = client.post(DETAILS, json=sent, headers=OPENDES)
    assert response.status_code == 200, response.text
    by_trace = client.get(READ_DETAILS, params={"correlationId": TRACE}, headers=OPENDES)
    assert by_trace.json() == {"results": [sent[0]["properties"]]}
    dataset = sent[0]["properties"]["datasetId"]
    by_dataset = client.get(READ_DETAILS, params={"datasetId": dataset}, headers=OPENDES)
    assert by_dataset.json() == by_trace.json()
    elsewhere = client.get(
        READ_DETAILS, params={"datasetId": dataset}, headers={"data-partition-id": "other"}
    )
    assert elsewhere.json() == {"results": []}


def test_tenants_are_isolated(client: TestClient) -> None:
    client.post(PUBLISH, json=example("gsm-status.json"), headers=OPENDES)
    other = {"data-partition-id": "other"}
    found = client.post(QUERY, json={"statusQuery": {"correlationId": TRACE}}, headers=other)
    assert found.json() == {"results": [], "cursor": None}
    assert summary(client, tenant="other").status_code == 404


# -- errors: OSDU's shape, index and field, nothing stored ---------------------------------


def nothing_stored(client: TestClient) -> bool:
    found = client.post(QUERY, json={"statusQuery": {"correlationId": TRACE}}, headers=OPENDES)
    results: list[Any] = found.json()["results"]
    return results == []


def test_each_bad_message_is_named_by_index_and_field(client: TestClient) -> None:
    no_stage = status()
    del no_stage["properties"]["stage"]
    response = client.post(
        PUBLISH,
        json=[status(), status(status="DONE"), no_stage, status(timestamp="noon")],
        headers=OPENDES,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == 422 and body["reason"].startswith("Unprocessable")
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "properties.status"),
        (2, "properties.stage"),
        (3, "properties.timestamp"),
    ]
    assert nothing_stored(client)


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        (PUBLISH, example("gsm-dataset-details.json")),  # wrong kind for this endpoint
        (DETAILS, [status()]),
    ],
)
def test_wrong_kind(client: TestClient, url: str, sent: Any) -> None:
    response = client.post(url, json=sent, headers=OPENDES)
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "kind")]
    assert client.get(READ_DETAILS, params={"correlationId": TRACE}, headers=OPENDES).json() == {
        "results": []
    }
    assert nothing_stored(client)


def test_bad_dataset_details(client: TestClient) -> None:
    item = example("gsm-dataset-details.json")[0]
    bad = {**item, "properties": {**item["properties"], "datasetType": "FOLDER", "recordCount": -1}}
    response = client.post(DETAILS, json=[item, bad], headers=OPENDES)
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (1, "properties.datasetType"),
        (1, "properties.recordCount"),
    ]
    assert client.get(READ_DETAILS, params={"correlationId": TRACE}, headers=OPENDES).json() == {
        "results": []
    }


@pytest.mark.parametrize(
    ("raw", "status"), [(b"{not json", 400), (b"{}", 400), (b"[]", 422), (b"[1]", 422)]
)
def test_bodies_that_are_not_lists_of_messages(client: TestClient, raw: bytes, status: int) -> None:
    response = client.post(
        PUBLISH, content=raw, headers={**OPENDES, "content-type": "application/json"}
    )
    assert response.status_code == status
    assert set(response.json()) >= {"code", "reason", "message"}


def test_the_partition_header_is_required_and_checked(client: TestClient) -> None:
    missing = client.post(PUBLISH, json=[status()])
    assert missing.status_code == 422
    assert missing.json()["errors"] == [
        {"index": None, "field": "header.data-partition-id", "message": "Field required"}
    ]
    spaced = client.post(PUBLISH, json=[status()], headers={"data-partition-id": "a b"})
    assert spaced.status_code == 422
    assert spaced.json()["errors"][0]["field"] == "header.data-partition-id"
    assert client.post(QUERY, json={"statusQuery": {"stage": ["X"]}}).status_code == 422
    assert client.get(READ_DETAILS, params={"datasetId": "d"}).status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.statusQuery"),
        ({"statusQuery": {}}, "body.statusQuery"),
        ({"statusQuery": {"status": ["DONE"]}}, "body.statusQuery.status.0"),
        ({"statusQuery": {"stage": "WORKFLOW"}}, "body.statusQuery.stage"),
        ({"statusQuery": {"stage": ["W"]}, "limit": 0}, "body.limit"),
        ({"statusQuery": {"stage": ["W"]}, "cursor": "bogus"}, "body.cursor"),
    ],
)
def test_bad_queries(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = client.post(QUERY, json=body, headers=OPENDES)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_dataset_details_need_correlation_or_dataset(client: TestClient) -> None:
    response = client.get(READ_DETAILS, headers=OPENDES)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.correlationId"


def test_more_than_a_thousand_messages_at_once(client: TestClient) -> None:
    response = client.post(
        PUBLISH, json=[status(stage=f"S{i}") for i in range(1001)], headers=OPENDES
    )
    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert nothing_stored(client)
