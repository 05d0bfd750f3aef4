"""The okdata and OpenLineage mappings on their own (the API tests cover them end to end)."""

from __future__ import annotations

from typing import Any

import pytest

from waymark.errors import BadRequest
from waymark.model import Status, TraceStatus, to_record
from waymark.translate import TEXT_MAX, clip, okdata, openlineage


def test_okdata_round_trip_through_the_native_event() -> None:
    sent = {
        "domain": "dataset",
        "domain_id": "roads/1",
        "start_time": "2026-11-20T10:00:00+00:00",
        "end_time": "2026-11-20T10:00:01+00:00",
        "trace_status": "FINISHED",
        "trace_event_status": "FAILED",
        "user": "u",
        "component": "c",
        "operation": "o",
        "status_body": {"files_incoming": ["a"], "files_outgoing": ["b"]},
        "meta": {"git_rev": "1"},
        "s3_path": "raw/a",
        "duration": 12.5,
        "exception": "boom",
        "errors": [{"message": {"nb": "Feil", "en": "Error"}}],
    }
    event = okdata.update_event(sent, "roads-1")
    assert (event.status, event.trace_status, event.path, event.duration_ms) == (
        Status.FAILED,
        TraceStatus.FINISHED,
        "raw/a",
        12.5,
    )
    record = to_record(event, "t", 0)
    item = okdata.to_item(record.doc)
    assert item["trace_event_id"] == record.event_id
    assert item["start_time"] == "2026-11-20T10:00:00.000000Z"
    for name in set(sent) - {"start_time", "end_time"}:
        assert item[name] == sent[name], name
    assert record.paths == ("raw/a", "a", "b")


def test_okdata_ok_is_success_and_legacy_names_map() -> None:
    legacy = {
        "id": "ignored",
        "application": "dataset",
        "application_id": "x/1",
        "date_started": "2026-11-20T10:00:00",
        "date_end": "2026-11-20T10:00:01",
        "handler": "h",
        "run_status": "CONTINUE",
        "status": "OK",
        "s3path": "p",
        "body": {"k": 1},
    }
    assert okdata.current_names(legacy) == {
        "trace_id": "ignored",
        "domain": "dataset",
        "domain_id": "x/1",
        "start_time": "2026-11-20T10:00:00",
        "end_time": "2026-11-20T10:00:01",
        "component": "h",
        "trace_status": "CONTINUE",
        "trace_event_status": "OK",
        "s3_path": "p",
        "status_body": {"k": 1},
    }
    event = okdata.update_event(legacy, "x-1")
    assert (event.trace_id, event.status, event.component) == ("x-1", Status.SUCCESS, "h")


def test_okdata_create_makes_the_trace_id_from_the_dataset() -> None:
    long_dataset = "d" * 100
    event = okdata.create_event(
        {
            "domain": "dataset",
            "domain_id": f"{long_dataset}/1",
            "start_time": "2026-11-20T10:00:00Z",
            "end_time": "2026-11-20T10:00:00Z",
            "component": "uploader",
            "trace_event_status": "FAILED",
        }
    )
    assert event.trace_id == "d" * 80  # cut at 80, as okdata does
    assert (event.trace_status, event.status) == (TraceStatus.STARTED, Status.SUCCESS)


def test_a_long_exception_text_is_clipped_not_refused() -> None:
    event = okdata.update_event(
        {
            "domain": "dataset",
            "start_time": "2026-11-20T10:00:00Z",
            "end_time": "2026-11-20T10:00:00Z",
            "trace_status": "FINISHED",
            "trace_event_status": "FAILED",
            "component": "c",
            "exception": "x" * 50_000,
        },
        "t",
    )
    assert event.exception is not None and len(event.exception) == TEXT_MAX
    assert clip("short") == "short" and clip(None) is None


def test_okdata_errors_name_every_field() -> None:
    with pytest.raises(BadRequest) as exc:
        okdata.update_event({"trace_status": "NOPE", "duration": "x"}, "t")
    fields = {e["loc"][1] for e in exc.value.errors}  # type: ignore[index]
    assert fields == {
        "domain",
        "start_time",
        "end_time",
        "trace_event_status",
        "component",
        "trace_status",
        "duration",
    }


def run_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-20T10:05:00Z",
        "run": {"runId": "r-1"},
        "job": {"namespace": "ns", "name": "job"},
    }
    event.update(changes)
    return event


def test_openlineage_event_id_is_stable_and_distinct() -> None:
    (a,) = openlineage.parse(run_event())
    (b,) = openlineage.parse(run_event())
    (c,) = openlineage.parse(run_event(eventType="FAIL"))
    (d,) = openlineage.parse(run_event(eventTime="2026-11-20T10:05:01Z"))
    assert a.event_id == b.event_id
    assert len({a.event_id, c.event_id, d.event_id}) == 3


def test_openlineage_dataset_uris() -> None:
    (event,) = openlineage.parse(
        run_event(
            inputs=[{"namespace": "postgres://db:5432", "name": "public.fees"}],
            outputs=[{"namespace": "file:///", "name": "tmp/out.csv"}],
        )
    )
    assert event.inputs == ["postgres://db:5432/public.fees"]
    assert event.outputs == ["file:///tmp/out.csv"]


def test_openlineage_error_facet_and_missing_event_type() -> None:
    (event,) = openlineage.parse(
        run_event(
            eventType="FAIL",
            run={"runId": "r", "facets": {"errorMessage": {"message": "no table"}}},
        )
    )
    assert event.errors is not None and event.errors[0].message == {"en": "no table"}
    assert event.exception == "no table"
    untyped = run_event()
    del untyped["eventType"]
    (other,) = openlineage.parse(untyped)
    assert other.status is Status.IN_PROGRESS


def test_openlineage_batch_limit() -> None:
    with pytest.raises(BadRequest):
        openlineage.parse([run_event()] * 1001)
