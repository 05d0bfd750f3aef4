"""The okdata front door in-process: mapping, legacy names, lookups and every error path."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES

S3_KEY = "raw/green/parking-fees/version=1/edition=20261120T100000/fees.csv"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def create(client: TestClient, **headers: str) -> str:
    response = client.post("/status", json=example("okdata-create.json"), headers=headers)
    assert response.status_code == 200, response.text
    trace_id: str = response.json()["trace_id"]
    return trace_id


def history(client: TestClient, trace_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/status/{trace_id}")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


def test_create_answers_a_dataset_trace_id_and_stores_started_ok(client: TestClient) -> None:
    trace_id = create(client)
    # the dataset id ("parking-fees" of "parking-fees/1"), a dash and a uuid4
    assert trace_id.startswith("parking-fees-") and len(trace_id) == len("parking-fees-") + 36
    (item,) = history(client, trace_id)
    assert item["trace_status"] == "STARTED"
    assert item["trace_event_status"] == "OK"
    assert item["s3_path"] == S3_KEY
    assert item["user"] == "service-user-uploader"
    assert item["start_time"] == "2026-11-20T10:00:00.000000Z"
    assert list(item) == [
        "trace_id",
        "trace_event_id",
        "domain",
        "domain_id",
        "start_time",
        "end_time",
        "trace_status",
        "trace_event_status",
        "user",
        "component",
        "operation",
        "status_body",
        "meta",
        "s3_path",
        "duration",
        "exception",
        "errors",
    ]


def test_create_ignores_a_status_of_its_own(client: TestClient) -> None:
    body = {**example("okdata-create.json"), "trace_status": "FINISHED", "trace_id": "mine"}
    trace_id = client.post("/status", json=body).json()["trace_id"]
    assert trace_id != "mine"
    assert history(client, trace_id)[0]["trace_status"] == "STARTED"


def test_update_maps_each_field(client: TestClient) -> None:
    trace_id = create(client)
    body = {**example("okdata-update.json"), "trace_id": "some-other-trace"}
    stored = client.post(f"/status/{trace_id}", json=body).json()
    assert stored["trace_id"] == trace_id
    assert stored["duration"] == 1618.2
    assert stored["meta"] == body["meta"]
    events = client.get(f"/v1/traces/{trace_id}/events").json()["items"]
    native = events[-1]
    assert native["event_id"] == stored["trace_event_id"]
    assert native["status"] == "SUCCESS"
    assert native["duration_ms"] == 1618.2
    assert native["body"] == body["status_body"]
    assert native["end_time"] == "2026-11-20T10:00:06.618000Z"
    assert history(client, trace_id)[-1] == stored


def test_failed_maps_to_failed_and_finishes(client: TestClient) -> None:
    trace_id = create(client)
    client.post(f"/status/{trace_id}", json=example("okdata-update-failed.json"))
    summary = client.get(f"/v1/traces/{trace_id}").json()
    assert (summary["done"], summary["trace_event_status"], summary["outcome"]) == (
        True,
        "FAILED",
        "FAILED",
    )
    assert summary["errors"][0]["message"]["en"] == "Invalid value in column 3."
    assert history(client, trace_id)[-1]["exception"] == "division by zero"


def test_legacy_names_are_accepted(client: TestClient) -> None:
    trace_id = create(client)
    response = client.post(f"/status/{trace_id}", json=example("okdata-update-legacy.json"))
    assert response.status_code == 200, response.text
    item = response.json()
    assert (item["domain"], item["domain_id"], item["component"]) == (
        "dataset",
        "parking-fees/1",
        "pipeline-router",
    )
    assert (item["trace_status"], item["trace_event_status"]) == ("CONTINUE", "OK")
    assert item["start_time"] == "2026-11-20T10:00:05.000000Z"
    assert item["s3_path"] == S3_KEY
    assert item["status_body"] == {"state_machine": "csv-to-parquet"}


def test_legacy_create(client: TestClient) -> None:
    body = {
        "application": "dataset",
        "application_id": "roads/2",
        "date_started": "2026-11-20T09:00:00Z",
        "date_end": "2026-11-20T09:00:01Z",
        "handler": "uploader",
        "s3path": "raw/roads.csv",
    }
    trace_id = client.post("/status", json=body).json()["trace_id"]
    assert trace_id.startswith("roads-")
    assert history(client, trace_id)[0]["s3_path"] == "raw/roads.csv"


def test_status_from_path_finds_the_trace_that_reported_the_path_last(
    client: TestClient,
) -> None:
    """By arrival, not by the producer's clock: a re-upload of the same key whose uploader
    reports an earlier time than the first upload's is the trace found."""
    first = create(client)  # uploaded at 10:00
    key = base64.b64encode(S3_KEY.encode()).decode()
    assert client.get(f"/status-from-path/{key}").json() == {"id": first, "trace_id": first}
    behind = {
        **example("okdata-create.json"),
        "start_time": "2026-11-20T08:59:00+00:00",
        "end_time": "2026-11-20T09:00:00+00:00",
    }
    again = client.post("/status", json=behind).json()["trace_id"]
    assert client.get(f"/status-from-path/{key}").json() == {"id": again, "trace_id": again}
    # the first trace's next step names the key (files_incoming): it reported it last
    client.post(f"/status/{first}", json=example("okdata-update.json"))
    assert client.get(f"/status-from-path/{key}").json()["trace_id"] == first
    listed = client.get("/v1/paths", params={"path": S3_KEY}).json()["items"]
    assert [i["trace_id"] for i in listed] == [first, again, first]
    assert [i["received_at"] for i in listed] == sorted(
        (i["received_at"] for i in listed), reverse=True
    )
    # the URL-safe alphabet and missing padding work too
    odd = "raw/ø?/x~"
    client.post(f"/status/{first}", json={**example("okdata-update.json"), "s3_path": odd})
    for encoded in (
        base64.b64encode(odd.encode()).decode(),
        base64.urlsafe_b64encode(odd.encode()).decode().rstrip("="),
    ):
        assert client.get(f"/status-from-path/{encoded}").json()["trace_id"] == first


def test_status_from_path_unknown_or_not_base64(client: TestClient) -> None:
    unknown = client.get(f"/status-from-path/{base64.b64encode(b'nowhere').decode()}")
    assert unknown.status_code == 404
    assert "message" in unknown.json()
    bad = client.get("/status-from-path/%%%")
    assert bad.status_code == 422
    assert bad.json()["message"].startswith("path.s3path:")


def test_a_path_of_the_door_that_no_route_takes_answers_in_okdata_shape(
    client: TestClient,
) -> None:
    # a newline in an S3 key's encoding, or a slash in a trace id: the router's own 404
    for path in ("/status-from-path/a%0Ab", "/status/a/b"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/json"
        assert set(answer.json()) == {"message", "request_id"}
    # the same 404 outside every door is problem details
    elsewhere = client.get("/v1/traces/a/b/c")
    assert elsewhere.status_code == 404
    assert elsewhere.headers["content-type"] == "application/problem+json"


def test_tenants_do_not_see_each_other(client: TestClient) -> None:
    trace_id = create(client, **{"Waymark-Tenant": "oslo"})
    assert client.get(f"/status/{trace_id}").status_code == 404
    assert client.get(f"/status/{trace_id}", headers={"Waymark-Tenant": "oslo"}).status_code == 200
    posted = client.post(f"/status/{trace_id}", json=example("okdata-update.json"))
    assert posted.status_code == 404


# -- errors: okdata's shape, nothing stored ------------------------------------------------


def stored_events(client: TestClient, trace_id: str) -> int:
    count: int = client.get(f"/v1/traces/{trace_id}").json()["event_count"]
    return count


@pytest.mark.parametrize("missing", ["domain", "domain_id", "start_time", "end_time", "component"])
def test_create_without_a_required_field(client: TestClient, missing: str) -> None:
    body = example("okdata-create.json")
    del body[missing]
    response = client.post("/status", json=body)
    assert response.status_code == 422
    assert response.json()["message"] == f"{missing}: Field required"
    assert client.get("/v1/traces").json()["items"] == []


@pytest.mark.parametrize(
    "missing",
    ["domain", "start_time", "end_time", "trace_status", "trace_event_status", "component"],
)
def test_update_without_a_required_field(client: TestClient, missing: str) -> None:
    trace_id = create(client)
    body = example("okdata-update.json")
    del body[missing]
    response = client.post(f"/status/{trace_id}", json=body)
    assert response.status_code == 422
    assert response.json()["message"] == f"{missing}: Field required"
    assert stored_events(client, trace_id) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_event_status", "SUCCESS"),
        ("trace_status", "DONE"),
        ("start_time", "yesterday"),
        ("duration", -1),
        ("duration", "fast"),
        ("status_body", ["not", "an", "object"]),
        ("errors", [{"msg": "no message"}]),
    ],
)
def test_update_with_a_bad_value(client: TestClient, field: str, value: Any) -> None:
    trace_id = create(client)
    response = client.post(
        f"/status/{trace_id}", json={**example("okdata-update.json"), field: value}
    )
    assert response.status_code == 422
    assert response.json()["message"].startswith(f"{field}")
    assert stored_events(client, trace_id) == 1


def test_a_legacy_name_beside_its_current_name(client: TestClient) -> None:
    trace_id = create(client)
    body = {**example("okdata-update.json"), "status": "FAILED"}
    response = client.post(f"/status/{trace_id}", json=body)
    assert response.status_code == 422
    assert response.json()["message"] == "status: give trace_event_status or status, not both"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"'])
def test_bodies_that_are_not_objects(client: TestClient, raw: bytes) -> None:
    trace_id = create(client)
    for url in ("/status", f"/status/{trace_id}"):
        response = client.post(url, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert set(response.json()) == {"message", "request_id"}
    assert stored_events(client, trace_id) == 1


def test_update_of_an_unknown_trace(client: TestClient) -> None:
    response = client.post("/status/no-such-trace", json=example("okdata-update.json"))
    assert response.status_code == 404
    assert response.json()["message"] == "Could not find item: no-such-trace"
    assert client.get("/v1/traces").json()["items"] == []


def test_framework_validation_errors_use_okdatas_shape(client: TestClient) -> None:
    too_long = "x" * 201
    for response in (
        client.get(f"/status/{too_long}"),
        client.post(f"/status/{too_long}", json=example("okdata-update.json")),
        client.get("/status/x", headers={"Waymark-Tenant": "a b"}),
    ):
        assert response.status_code == 422
        assert set(response.json()) == {"message", "request_id"}
    # while /v1 keeps its problem details
    problem = client.get(f"/v1/traces/{too_long}")
    assert problem.headers["content-type"] == "application/problem+json"
