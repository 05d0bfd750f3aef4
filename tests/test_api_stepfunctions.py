"""``POST /aws/step-functions/events``: EventBridge "Step Functions Execution Status
Change" events, in the shape AWS documents (examples/stepfunctions-*.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from waymark.model import iso, now_us

EXAMPLES = Path(__file__).parent.parent / "examples"
URL = "/aws/step-functions/events"
TRACE = "parking-fees-6c1f0d2e-3b4a-4f5e-8d9c-0a1b2c3d4e5f"
EXECUTION_ARN = "arn:aws:states:us-east-1:012345678912:execution:state-machine-name:execution-name"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"stepfunctions-{name}.json").read_text())
    return data


def summary(client: TestClient, trace_id: str = TRACE, **headers: str) -> dict[str, Any]:
    answer = client.get(f"/v1/traces/{trace_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def test_a_running_execution_is_a_step_in_progress(client: TestClient) -> None:
    event = example("running")
    event["detail"]["startDate"] = now_us() // 1000 - 1000  # started a second ago
    answer = client.post(URL, json=event)
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 1
    found = summary(client)
    assert (found["done"], found["state"], found["trace_status"]) == (False, "RUNNING", "CONTINUE")
    assert found["current"]["component"] == "dataset-parking-fees"
    assert found["current"]["status"] == "IN_PROGRESS"
    assert found["started_at"] == iso(event["detail"]["startDate"] * 1000)


def test_a_succeeded_execution_finishes_the_trace_ok(client: TestClient) -> None:
    assert client.post(URL, json=example("running")).status_code == 202
    assert client.post(URL, json=example("succeeded")).status_code == 202
    found = summary(client)
    assert (found["done"], found["state"]) == (True, "SUCCEEDED")
    assert (found["trace_status"], found["trace_event_status"]) == ("FINISHED", "OK")
    assert found["finished_at"] == "2026-11-20T10:00:09.877000Z"
    assert found["errors"] == []
    assert found["event_count"] == 2


def test_a_failed_execution_finishes_the_trace_with_its_error_and_cause(
    client: TestClient,
) -> None:
    assert client.post(URL, json=example("failed")).status_code == 202
    found = summary(client)
    assert (found["state"], found["trace_event_status"]) == ("FAILED", "FAILED")
    [error] = found["errors"]
    assert error["message"]["en"].startswith("States.TaskFailed: {")
    assert "Invalid value in column 3." in error["message"]["en"]
    [event] = client.get(f"/v1/traces/{TRACE}/events").json()["items"]
    assert event["message"] == "States.TaskFailed"
    assert "ValueError" in event["exception"]
    assert event["attributes"]["executionArn"].endswith(":" + TRACE)
    # okdata's names, as `okdata status` reads them
    okdata = client.get(f"/status/{TRACE}").json()
    assert okdata[0]["trace_status"] == "FINISHED"
    assert okdata[0]["trace_event_status"] == "FAILED"


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED"])
def test_timed_out_and_aborted_finish_the_trace_failed(client: TestClient, status: str) -> None:
    event = example("timed-out")
    event["detail"]["status"] = status
    assert client.post(URL, json=event).status_code == 202
    found = summary(client)
    assert (found["done"], found["state"], found["outcome"]) == (True, "FAILED", "FAILED")
    assert found["errors"] == [{"message": {"en": status}}]


def test_an_array_as_an_api_destination_posts_it(client: TestClient) -> None:
    batch = [example("running"), example("failed")]
    other = copy.deepcopy(example("succeeded"))
    other["detail"]["name"] = "roads-1"
    answer = client.post(URL, json=[*batch, other], headers={"Waymark-Tenant": "okdata"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 3 and len(answer.json()["event_ids"]) == 3
    assert summary(client, **{"Waymark-Tenant": "okdata"})["state"] == "FAILED"
    assert summary(client, "roads-1", **{"Waymark-Tenant": "okdata"})["state"] == "SUCCEEDED"
    assert client.get(f"/v1/traces/{TRACE}").status_code == 404  # another tenant's


def test_an_event_delivered_twice_is_stored_once(client: TestClient) -> None:
    first = client.post(URL, json=example("failed")).json()["event_ids"]
    again = client.post(URL, json=example("failed")).json()["event_ids"]
    assert first == again
    assert summary(client)["event_count"] == 1


def test_the_example_aws_documents_as_it_stands(client: TestClient) -> None:
    """The "Execution Started" example of the Step Functions developer guide, verbatim."""
    documented = {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "012345678912",
        "time": "2019-02-26T19:42:21Z",
        "region": "us-east-1",
        "resources": [EXECUTION_ARN],
        "detail": {
            "executionArn": EXECUTION_ARN,
            "stateMachineArn": "arn:aws:states:us-east-1:012345678912:stateMachine:state-machine",
            "name": "execution-name",
            "status": "RUNNING",
            "startDate": 1551225271984,
            "stopDate": None,
            "input": "{}",
            "output": None,
        },
    }
    assert client.post(URL, json=documented).status_code == 202
    found = summary(client, "execution-name")
    assert found["current"]["component"] == "state-machine"
    assert found["started_at"] == "2019-02-26T23:54:31.984000Z"


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        (
            lambda e: e.update({"detail-type": "EC2 Instance State-change Notification"}),
            "detail-type",
        ),
        (lambda e: e.update({"source": "aws.ec2"}), "source"),
        (lambda e: e["detail"].pop("name"), "detail.name"),
        (lambda e: e["detail"].update({"name": "has space"}), "detail.name"),
        (lambda e: e["detail"].update({"status": "DONE"}), "detail.status"),
        (lambda e: e["detail"].update({"startDate": "yesterday"}), "detail.startDate"),
        (lambda e: e["detail"].update({"stopDate": 10**20}), "detail.stopDate"),
        (lambda e: e.pop("detail"), "detail"),
    ],
)
def test_a_bad_field_is_named_and_nothing_is_stored(
    client: TestClient, change: Any, loc: str
) -> None:
    good = example("running")
    good["detail"]["name"] = "other-trace"
    bad = example("failed")
    change(bad)
    answer = client.post(URL, json=[good, bad])
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert [".".join(map(str, e["loc"])) for e in problem["errors"]] == [f"body.1.{loc}"]
    assert client.get("/v1/traces/other-trace").status_code == 404
    assert client.get(f"/v1/traces/{TRACE}").status_code == 404


def test_malformed_bodies(client: TestClient) -> None:
    not_json = client.post(URL, content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.headers["content-type"] == "application/problem+json"
    assert client.post(URL, json="text").status_code == 400
    assert client.post(URL, json=[]).status_code == 422
    assert client.post(URL, json=[example("running")] * 1001).status_code == 413
    big = example("running")
    big["detail"]["input"] = "x" * (1024 * 1024)
    assert client.post(URL, json=big).status_code == 413
