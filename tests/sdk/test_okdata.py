"""okdata-aws's ``status_wrapper`` / ``status_add``, reporting through the tracker."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from enum import Enum
from typing import Any

import pytest

from waymark.sdk import Tracker
from waymark.sdk import okdata as shim
from waymark.sdk.okdata import status_add, status_wrapper
from waymark.sdk.transports.memory import MemoryTransport


class LambdaContext:
    function_name = "csv-to-parquet"
    function_version = "$LATEST"


class OkdataTraceStatus(str, Enum):  # noqa: UP042 - okdata-aws's enums are (str, Enum)
    FINISHED = "FINISHED"


@dataclasses.dataclass
class Meta:
    git_rev: str | None = "abc123"
    function_stage: str | None = None


EVENT = {
    "execution_name": "parking-fees-5b0e",
    "requestContext": {"authorizer": {"principalId": "user-1"}, "stage": "prod", "apiId": "a1"},
}


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryTransport]:
    monkeypatch.setenv("SERVICE_NAME", "csv-to-parquet")
    memory = MemoryTransport()
    tracker = Tracker(transport=memory)
    shim.use(tracker)
    yield memory
    shim.use(None)
    tracker.close()


def test_the_call_signatures_are_okdata_aws_s() -> None:
    # okdata-aws 6.0: status_wrapper(sdk_config=None) and status_add(**kwargs)
    wrapper = inspect.signature(status_wrapper)
    assert list(wrapper.parameters) == ["sdk_config"]
    assert wrapper.parameters["sdk_config"].default is None
    [kwargs] = inspect.signature(status_add).parameters.values()
    assert kwargs.kind is inspect.Parameter.VAR_KEYWORD


def test_a_wrapped_handler_reports_one_step(memory: MemoryTransport) -> None:
    @status_wrapper()
    def handler(event: dict[str, Any], context: object) -> dict[str, str]:
        status_add(domain="dataset", domain_id="parking-fees/1")
        status_add(s3_path="raw/green/parking-fees/fees.csv", status_body={"rows": 12})
        status_add(trace_status=OkdataTraceStatus.FINISHED, meta=Meta())
        status_add(start_time="ignored", duration=123)
        return {"status": "ok"}

    assert handler(EVENT, LambdaContext()) == {"status": "ok"}
    [event] = memory.events  # the wrapper flushes before returning, as a Lambda needs
    assert event["trace_id"] == "parking-fees-5b0e"
    assert event["operation"] == "handler"
    assert event["component"] == "csv-to-parquet"
    assert event["user"] == "user-1"
    assert event["domain"] == "dataset"
    assert event["path"] == "raw/green/parking-fees/fees.csv"
    assert event["body"] == {"rows": 12}
    assert event["trace_status"] == "FINISHED"
    assert event["status"] == "SUCCESS"
    assert event["meta"] == {
        "function_name": "csv-to-parquet",
        "function_version": "$LATEST",
        "function_stage": "prod",
        "function_api_id": "a1",
        "git_rev": "abc123",
    }
    assert event["duration_ms"] != 123


def test_an_exception_reports_failed_and_finished_then_propagates(
    memory: MemoryTransport,
) -> None:
    @status_wrapper
    def handler(event: dict[str, Any], context: object) -> None:
        raise PermissionError("no access to bucket")

    with pytest.raises(PermissionError):
        handler(EVENT, None)
    [event] = memory.events
    assert (event["status"], event["trace_status"]) == ("FAILED", "FINISHED")
    assert event["exception"] == "PermissionError: no access to bucket"


def test_trace_event_status_failed_without_an_exception(memory: MemoryTransport) -> None:
    @status_wrapper()
    def handler(event: dict[str, Any], context: object) -> str:
        status_add(
            trace_event_status="FAILED",
            errors=[{"message": {"nb": "Feil", "en": "Error"}}],
            exception=ValueError("kept as text"),
        )
        return "handled"

    assert handler(EVENT, None) == "handled"
    [event] = memory.events
    assert event["status"] == "FAILED"
    assert event["errors"] == [{"message": {"nb": "Feil", "en": "Error"}}]
    assert event["exception"] == "kept as text"


def test_no_execution_name_runs_unreported(memory: MemoryTransport) -> None:
    @status_wrapper()
    def handler(event: dict[str, Any], context: object) -> int:
        status_add(domain="ignored")  # no step: a no-op, as in okdata-aws
        return 7

    assert handler({}, None) == 7
    assert memory.events == []


def test_a_tracker_may_be_passed_as_sdk_config() -> None:
    memory = MemoryTransport()
    with Tracker(transport=memory) as tracker:

        @status_wrapper(tracker)
        def handler(event: dict[str, Any], context: object) -> None:
            pass

        handler(EVENT, None)
    assert [e["trace_id"] for e in memory.events] == ["parking-fees-5b0e"]
