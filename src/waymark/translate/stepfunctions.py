"""Amazon EventBridge "Step Functions Execution Status Change" events to native events.

An EventBridge event (``source`` ``aws.states``) carries in ``detail`` what
``DescribeExecution`` answers: ``executionArn``, ``stateMachineArn``, ``name``,
``status``, ``startDate`` and ``stopDate`` (epoch milliseconds), ``input``, ``output``
and, for a failed execution, ``error`` and ``cause``. The execution's ``name`` is the
trace id (okdata's pipeline router names each execution after the trace it runs).

trace id      detail.name
component     the state machine's name (the end of ``stateMachineArn``)
operation     ``execution``
status        RUNNING, PENDING_REDRIVE -> IN_PROGRESS; SUCCEEDED -> SUCCESS;
              FAILED, TIMED_OUT, ABORTED -> FAILED
trace_status  SUCCEEDED, FAILED, TIMED_OUT, ABORTED -> FINISHED; else CONTINUE
errors        ``error: cause`` of a failed execution (else the status, e.g. "TIMED_OUT")
message       ``error``;   exception: ``cause``
start_time    startDate    end_time: stopDate
attributes    executionArn, stateMachineArn, status, the event's id, account and region
event_id      uuid5 of (executionArn, status, redriveCount): EventBridge delivers at least
              once, and a re-delivered event is a duplicate

``input`` and ``output`` are not kept (they may be 256 KiB each).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from waymark.model import (
    ErrorItem,
    Event,
    Name,
    Status,
    Text,
    TraceId,
    TraceStatus,
    from_us,
)
from waymark.translate import clip, one_or_many

DETAIL_TYPE = "Step Functions Execution Status Change"
SOURCE = "aws.states"

_EVENT_IDS = uuid.UUID("5f0d2c1e-8b7a-4e3f-9c6d-2a1b0e9f8d7c")

ExecutionStatus = Literal[
    "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"
]

STATUS: dict[str, Status] = {
    "RUNNING": Status.IN_PROGRESS,
    "PENDING_REDRIVE": Status.IN_PROGRESS,
    "SUCCEEDED": Status.SUCCESS,
    "FAILED": Status.FAILED,
    "TIMED_OUT": Status.FAILED,
    "ABORTED": Status.FAILED,
}
FINISHED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})

#: epoch milliseconds from 1970 up to the end of year 9999
EpochMs = Annotated[StrictInt, Field(ge=0, le=253_402_300_799_999)]


class Detail(BaseModel):
    """The parts of ``detail`` that Waymark reads; other fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    execution_arn: Name = Field(alias="executionArn")
    state_machine_arn: Name = Field(alias="stateMachineArn")
    name: TraceId
    status: ExecutionStatus
    start_date: EpochMs = Field(alias="startDate")
    stop_date: EpochMs | None = Field(None, alias="stopDate")
    error: Text | None = None
    cause: StrictStr | None = None
    redrive_count: StrictInt | None = Field(None, alias="redriveCount")


class StatusChange(BaseModel):
    """An EventBridge event of detail-type "Step Functions Execution Status Change"."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Name | None = None
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    source: Literal["aws.states"]
    account: Name | None = None
    region: Name | None = None
    detail: Detail


def event_id(detail: Detail) -> str:
    key = f"{detail.execution_arn}\n{detail.status}\n{detail.redrive_count or 0}"
    return str(uuid.uuid5(_EVENT_IDS, key))


def to_event(change: StatusChange) -> Event:
    """One status change as a native event; ``ValidationError`` (native names) if it cannot
    be one, e.g. a date out of range."""
    detail = change.detail
    failed = STATUS[detail.status] is Status.FAILED
    attributes: dict[str, Any] = {
        "executionArn": detail.execution_arn,
        "stateMachineArn": detail.state_machine_arn,
        "status": detail.status,
    }
    for key, value in (("id", change.id), ("account", change.account), ("region", change.region)):
        if value is not None:
            attributes[f"eventbridge.{key}"] = value
    fields: dict[str, Any] = {
        "event_id": event_id(detail),
        "trace_id": detail.name,
        "status": STATUS[detail.status],
        "trace_status": TraceStatus.FINISHED if detail.status in FINISHED else TraceStatus.CONTINUE,
        "component": detail.state_machine_arn.rsplit(":", 1)[-1],
        "operation": "execution",
        "start_time": from_us(detail.start_date * 1000),
        "attributes": attributes,
    }
    if detail.stop_date is not None:
        fields["end_time"] = from_us(detail.stop_date * 1000)
    if failed:
        said = ": ".join(part for part in (detail.error, detail.cause) if part)
        fields["errors"] = [ErrorItem(message={"en": clip(said or detail.status) or ""})]
        if detail.error:
            fields["message"] = detail.error
        if detail.cause:
            fields["exception"] = clip(detail.cause)
    return Event.model_validate(fields)


_NAMES = {"trace_id": "detail.name", "start_time": "detail.startDate"}


def parse(data: Any) -> list[Event]:
    """One EventBridge event or a list of 1 to 1,000, as native events; all or nothing.
    :class:`BadRequest` lists each bad field (with its index in a list)."""
    return one_or_many(
        data,
        "an EventBridge event",
        lambda item: to_event(StatusChange.model_validate(item)),
        where=["body"],
        names=_NAMES,
    )
