"""OpenLineage run events (https://openlineage.io/spec) to native events.

trace id      run.facets.parent.root.run.runId, else run.facets.parent.run.runId,
              else run.runId
component     job.namespace            operation   job.name
status        START, RUNNING, OTHER -> IN_PROGRESS; COMPLETE -> SUCCESS;
              FAIL, ABORT -> FAILED (an ABORT says so in ``message``)
trace_status  the root run's own START -> STARTED, its COMPLETE/FAIL/ABORT -> FINISHED;
              every other event CONTINUE
inputs        inputs[] and outputs[] as ``<namespace>/<name>``
outputs
errors        the ``errorMessage`` run facet (its stack trace, else its message, is the
exception     ``exception``)
end_time      eventTime (and ``start_time`` too for START)
event_id      uuid5 of (runId, eventType, eventTime): a re-sent event is a duplicate
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from waymark.model import ErrorItem, Event, Name, Status, Text, TraceId, TraceStatus
from waymark.translate import clip, one_or_many

_EVENT_IDS = uuid.UUID("0b9e4a57-1f3c-4d8e-a6b2-7c5d9e0f1a2b")

EventType = Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]

STATUS = {
    "START": Status.IN_PROGRESS,
    "RUNNING": Status.IN_PROGRESS,
    "OTHER": Status.IN_PROGRESS,
    "COMPLETE": Status.SUCCESS,
    "FAIL": Status.FAILED,
    "ABORT": Status.FAILED,
}
ROOT_TRACE_STATUS = {
    "START": TraceStatus.STARTED,
    "COMPLETE": TraceStatus.FINISHED,
    "FAIL": TraceStatus.FINISHED,
    "ABORT": TraceStatus.FINISHED,
}


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Dataset(_Part):
    namespace: Name
    name: Text

    @property
    def uri(self) -> str:
        sep = "" if self.namespace.endswith("/") else "/"
        return f"{self.namespace}{sep}{self.name}"


class Job(_Part):
    namespace: Name
    name: Name


class RunRef(_Part):
    run_id: TraceId = Field(alias="runId")


class ParentRun(_Part):
    run: RunRef


class ParentFacet(_Part):
    run: RunRef
    root: ParentRun | None = None


class ErrorMessageFacet(_Part):
    message: Text
    stack_trace: StrictStr | None = Field(None, alias="stackTrace")


class RunFacets(_Part):
    parent: ParentFacet | None = None
    error_message: ErrorMessageFacet | None = Field(None, alias="errorMessage")


class Run(_Part):
    run_id: TraceId = Field(alias="runId")
    facets: RunFacets | None = None


class RunEvent(_Part):
    """The parts of a RunEvent that Waymark reads; every other field and facet is ignored."""

    event_type: EventType = Field("OTHER", alias="eventType")
    event_time: StrictStr = Field(alias="eventTime")
    run: Run
    job: Job
    inputs: list[Dataset] = []
    outputs: list[Dataset] = []

    @property
    def trace_id(self) -> str:
        parent = self.run.facets.parent if self.run.facets else None
        if parent is None:
            return self.run.run_id
        return parent.root.run.run_id if parent.root else parent.run.run_id


def event_id(run_id: str, event_type: str, event_time: str) -> str:
    return str(uuid.uuid5(_EVENT_IDS, f"{run_id}\n{event_type}\n{event_time}"))


def to_event(run_event: RunEvent) -> Event:
    """One run event as a native event; ``ValidationError`` (native names) if it cannot be
    one, e.g. an ``eventTime`` that is not a time."""
    kind = run_event.event_type
    trace_id = run_event.trace_id
    is_root = run_event.run.run_id == trace_id
    failure = run_event.run.facets.error_message if run_event.run.facets else None
    fields: dict[str, Any] = {
        "event_id": event_id(run_event.run.run_id, kind, run_event.event_time),
        "trace_id": trace_id,
        "status": STATUS[kind],
        "trace_status": ROOT_TRACE_STATUS.get(kind, TraceStatus.CONTINUE)
        if is_root
        else TraceStatus.CONTINUE,
        "component": run_event.job.namespace,
        "operation": run_event.job.name,
        "end_time": run_event.event_time,
        "attributes": {"openlineage.runId": run_event.run.run_id, "openlineage.eventType": kind},
    }
    if kind == "START":
        fields["start_time"] = run_event.event_time
    if kind == "ABORT":
        fields["message"] = "run aborted"
    if failure is not None:
        fields["errors"] = [ErrorItem(message={"en": failure.message})]
        fields["exception"] = clip(failure.stack_trace or failure.message)
    if run_event.inputs:
        fields["inputs"] = [d.uri for d in run_event.inputs]
    if run_event.outputs:
        fields["outputs"] = [d.uri for d in run_event.outputs]
    return Event.model_validate(fields)


_NAMES = {"end_time": "eventTime", "start_time": "eventTime", "trace_id": "run"}


def parse(data: Any) -> list[Event]:
    """One run event or a list of 1 to 1,000, as native events; all or nothing.
    :class:`BadRequest` lists each bad field (with its index in a list)."""
    return one_or_many(
        data, "a run event", lambda item: to_event(RunEvent.model_validate(item)), names=_NAMES
    )
