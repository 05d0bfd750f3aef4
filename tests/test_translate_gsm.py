"""The GSM translator on its own: Service Bus bodies, timestamps, ids, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import EXAMPLES
from waymark import wire
from waymark.errors import BadRequest
from waymark.ingest import to_records
from waymark.model import Status, iso
from waymark.pipelines import Pipeline, Pipelines
from waymark.translate.gsm import details_properties, from_service_bus, status_properties

RECEIVED = 1_800_000_000_000_000


def bus_body(*items: dict[str, Any], partition: str = "opendes", **extra: Any) -> dict[str, Any]:
    return {"message": {"data": list(items), "data-partition-id": partition, **extra}}


def status(**props: Any) -> dict[str, Any]:
    base = {"correlationId": "c-1", "stage": "INGEST", "status": "IN_PROGRESS"}
    return {"kind": "status", "properties": {**base, **props}}


def test_the_published_service_bus_body_becomes_one_event() -> None:
    body = (EXAMPLES / "gsm-servicebus-body.json").read_bytes()
    records, details = from_service_bus(body, Pipelines(), RECEIVED)
    assert details == []
    (record,) = records
    assert record.tenant == "opendes"
    assert record.trace_id == "7d3f0c8e-2b1a-4c55-9a43-0e6d2f1b8c11"
    assert record.stage == record.component == "WORKFLOW"
    assert record.status is Status.IN_PROGRESS
    assert record.user == "ingest@example.org"
    assert record.record_id == "d2a7c9f0-run"
    assert record.doc["end_time"] == iso(1763632830000 * 1000)
    assert record.finishing is False


def test_timestamp_in_seconds_or_milliseconds() -> None:
    records, _ = from_service_bus(
        bus_body(status(timestamp=1625221800), status(timestamp=1625221800123, stage="B")),
        Pipelines(),
        RECEIVED,
    )
    assert [r.time_us for r in records] == [1625221800_000_000, 1625221800_123_000]
    assert records[0].doc["end_time"] == "2021-07-02T10:30:00.000000Z"


def test_missing_timestamp_is_the_time_of_receipt() -> None:
    (record,), _ = from_service_bus(bus_body(status()), Pipelines(), RECEIVED)
    assert record.end_us == RECEIVED


def test_a_redelivered_message_has_the_same_event_id() -> None:
    body = json.dumps(bus_body(status(timestamp=1625221800000))).encode()
    first, _ = from_service_bus(body, Pipelines(), RECEIVED)
    again, _ = from_service_bus(body, Pipelines(), RECEIVED + 5)
    other, _ = from_service_bus(bus_body(status(timestamp=1625221800001)), Pipelines(), RECEIVED)
    elsewhere, _ = from_service_bus(
        bus_body(status(timestamp=1625221800000), partition="other"), Pipelines(), RECEIVED
    )
    assert first[0].event_id == again[0].event_id
    assert len({first[0].event_id, other[0].event_id, elsewhere[0].event_id}) == 3


def test_correlation_id_defaults_to_the_header_of_the_body() -> None:
    item = status()
    del item["properties"]["correlationId"]
    records, _ = from_service_bus(bus_body(item, **{"correlation-id": "c-9"}), Pipelines(), 0)
    assert records[0].trace_id == "c-9"


def test_final_stage_finishes_per_pipeline() -> None:
    done = status(stage="WORKFLOW", status="SUCCESS")
    records, _ = from_service_bus(bus_body(done, status()), Pipelines(), RECEIVED)
    assert [r.finishing for r in records] == [True, False]
    custom = Pipelines({("opendes", None): Pipeline(frozenset({"INGEST"}), failed_finishes=True)})
    records, _ = from_service_bus(
        bus_body(done, status(status="SUCCESS"), status(stage="X", status="FAILED")),
        custom,
        RECEIVED,
    )
    assert [r.finishing for r in records] == [False, True, True]


def test_failed_message_is_the_events_error() -> None:
    (record,), _ = from_service_bus(
        bus_body(status(status="FAILED", message="no such file", errorCode=404)), Pipelines(), 0
    )
    assert record.errors == ({"message": {"en": "no such file"}},)
    assert record.doc["error_code"] == 404


def test_dataset_details_in_the_same_body() -> None:
    items = json.loads((EXAMPLES / "gsm-dataset-details.json").read_text())
    records, details = from_service_bus(bus_body(*items, status()), Pipelines(), RECEIVED)
    assert len(records) == 1
    (found,) = details
    assert (found.tenant, found.dataset_id, found.dataset_type, found.record_count) == (
        "opendes",
        "opendes:dataset--File.Generic:8a1f",
        "FILE",
        1,
    )
    assert details_properties(found) == items[0]["properties"]


def test_status_properties_round_trip() -> None:
    props = status(
        recordId="r",
        recordIdVersion="2",
        message="m",
        errorCode=0,
        userEmail="u@x",
        timestamp=1763632801200,
        additionalProperties={"workflowName": "csv", "n": 2},
    )["properties"]
    (record,), _ = from_service_bus(
        bus_body({"kind": "status", "properties": props}), Pipelines(), 0
    )
    assert status_properties(record.doc) == props


def locs(exc: pytest.ExceptionInfo[BadRequest]) -> list[list[Any]]:
    return [e["loc"] for e in exc.value.errors]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"status": "DONE"}, "status"),
        ({"stage": None}, "stage"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": -1}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"errorCode": "E42"}, "errorCode"),
        ({"additionalProperties": {"nested": {"a": 1}}}, "additionalProperties"),
        ({"correlationId": "has space"}, "correlationId"),
    ],
)
def test_each_bad_field_is_named_with_its_index(props: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest) as exc:
        from_service_bus(bus_body(status(), status(**props)), Pipelines(), 0)
    assert {tuple(loc[:5]) for loc in locs(exc)} == {("message", "data", 1, "properties", field)}


def test_every_bad_message_is_listed() -> None:
    missing = status()
    del missing["properties"]["correlationId"]
    with pytest.raises(BadRequest) as exc:
        from_service_bus(
            bus_body(status(status="?"), {"kind": "nope", "properties": {}}, missing),
            Pipelines(),
            0,
        )
    assert locs(exc) == [
        ["message", "data", 0, "properties", "status"],
        ["message", "data", 1, "kind"],
        ["message", "data", 2, "properties", "correlationId"],
    ]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b"{not json", None),
        ({"data": []}, ["message"]),
        ({"message": {"data": [status()]}}, ["message", "data-partition-id"]),
        ({"message": {"data": [], "data-partition-id": "p"}}, ["message", "data"]),
        ({"message": {"data-partition-id": "a b", "data": [status()]}}, None),
    ],
)
def test_bad_bodies(body: Any, loc: list[Any] | None) -> None:
    with pytest.raises(BadRequest) as exc:
        from_service_bus(body, Pipelines(), 0)
    if loc is not None:
        assert locs(exc) == [loc]


def test_event_time_and_verdict_survive_a_trip_over_the_bus() -> None:
    body = (EXAMPLES / "gsm-servicebus-body.json").read_text()  # text works as well as bytes
    done = status(stage="WORKFLOW", status="SUCCESS", timestamp=1625221800)
    records, _ = from_service_bus(json.loads(body), Pipelines(), RECEIVED)
    more, _ = from_service_bus(bus_body(done), Pipelines(), RECEIVED)
    records += more
    assert from_service_bus(body, Pipelines(), RECEIVED)[0][0].event_id == records[0].event_id
    (message,) = wire.encode_records(records)
    decoded = wire.decode(message.payload)
    again = to_records(decoded.events, decoded.tenant, Pipelines(), received_us=RECEIVED + 10**9)
    assert [(r.event_id, r.time_us, r.finishing, r.tenant) for r in again] == [
        (r.event_id, r.time_us, r.finishing, r.tenant) for r in records
    ]


def test_numeric_versions_are_taken_as_text() -> None:
    details = {
        "kind": "datasetDetails",
        "properties": {"correlationId": "c-1", "datasetId": "d", "datasetVersionId": 17},
    }
    records, found = from_service_bus(
        bus_body(status(recordIdVersion=1763632801123456), details), Pipelines(), 0
    )
    assert records[0].doc["record_id_version"] == "1763632801123456"
    assert found[0].dataset_version_id == "17"
    with pytest.raises(BadRequest):
        from_service_bus(bus_body(status(recordIdVersion=True)), Pipelines(), 0)
