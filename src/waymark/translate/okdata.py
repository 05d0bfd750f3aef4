"""The okdata status API's items (oslokommune/dataplatform-status-api) to native events and back.

An okdata status item names the same things as a native event, mostly under the same
names::

    okdata                 native
    trace_event_id         event_id
    trace_event_status     status        OK <-> SUCCESS, FAILED <-> FAILED
    s3_path                path
    status_body            body          (its files_incoming/files_outgoing feed lineage)
    duration               duration_ms   (milliseconds, may be a float)

Older producers use legacy names (``id``, ``application``, ``application_id``,
``date_started``, ``date_end``, ``handler``, ``run_status``, ``status``, ``s3path``,
``body``); they are accepted on every POST.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from waymark.ingest import field_errors, invalid, malformed
from waymark.model import (
    ErrorItem,
    Event,
    Name,
    Status,
    Text,
    Time,
    TraceEventStatus,
    TraceStatus,
    dataset_trace_id,
)
from waymark.translate import clip

LEGACY_NAMES = {
    "id": "trace_id",
    "application": "domain",
    "application_id": "domain_id",
    "date_started": "start_time",
    "date_end": "end_time",
    "handler": "component",
    "run_status": "trace_status",
    "status": "trace_event_status",
    "s3path": "s3_path",
    "body": "status_body",
}

# okdata name -> native name, for the fields whose names differ
NATIVE_NAMES = {
    "trace_event_id": "event_id",
    "trace_event_status": "status",
    "s3_path": "path",
    "status_body": "body",
    "duration": "duration_ms",
}
OKDATA_NAMES = {native: okdata for okdata, native in NATIVE_NAMES.items()}

CREATE_REQUIRED = ("domain", "domain_id", "start_time", "end_time", "component")
UPDATE_REQUIRED = (
    "domain",
    "start_time",
    "end_time",
    "trace_status",
    "trace_event_status",
    "component",
)

# The fields of an item as GET /status/{trace_id} lists them, in this order.
ITEM_FIELDS = (
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
)


class StatusItem(BaseModel):
    """One okdata status item as a producer posts it (current names). A ``trace_id`` in it
    is ignored: the server makes it (create) or the path names it (update)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    domain: Name | None = None
    domain_id: Name | None = None
    start_time: Time | None = None
    end_time: Time | None = None
    trace_status: TraceStatus | None = None
    trace_event_status: TraceEventStatus | None = None
    user: Name | None = None
    component: Name | None = None
    operation: Name | None = None
    status_body: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    s3_path: Text | None = None
    duration: Annotated[float, Field(ge=0)] | None = None
    exception: StrictStr | None = None
    errors: list[ErrorItem] | None = None


def current_names(data: Any) -> dict[str, Any]:
    """The body with legacy names replaced by current ones; both at once is an error."""
    if not isinstance(data, dict):
        raise malformed(["body"], "must be a JSON object")
    out = {k: v for k, v in data.items() if k not in LEGACY_NAMES}
    clashes = []
    for legacy, current in LEGACY_NAMES.items():
        if legacy in data:
            if current in data:
                clashes.append(
                    {"loc": ["body", legacy], "msg": f"give {current} or {legacy}, not both"}
                )
            out[current] = data[legacy]
    if clashes:
        raise invalid(clashes)
    return out


def parse_item(data: Any, required: tuple[str, ...]) -> StatusItem:
    """Validate a posted item; :class:`BadRequest` naming each missing or bad field."""
    fields = current_names(data)
    errors = [
        {"loc": ["body", name], "msg": "Field required"}
        for name in required
        if fields.get(name) is None
    ]
    try:
        item = StatusItem.model_validate(fields)
    except ValidationError as exc:
        errors += field_errors(exc, ("body",))
    if errors:
        raise invalid(errors)
    return item


def to_event(item: StatusItem, trace_id: str) -> Event:
    """The item as a native event of the trace (a new event id)."""
    status = Status.FAILED if item.trace_event_status is TraceEventStatus.FAILED else Status.SUCCESS
    fields: dict[str, Any] = {
        "trace_id": trace_id,
        "status": status,
        "trace_status": item.trace_status or TraceStatus.CONTINUE,
        "domain": item.domain,
        "domain_id": item.domain_id,
        "start_time": item.start_time,
        "end_time": item.end_time,
        "user": item.user,
        "component": item.component,
        "operation": item.operation,
        "body": item.status_body,
        "meta": item.meta,
        "path": item.s3_path,
        "duration_ms": item.duration,
        "exception": clip(item.exception),
        "errors": item.errors,
    }
    try:
        return Event.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:  # e.g. a trace id from the path the model refuses
        raise invalid(field_errors(exc, ("body",), OKDATA_NAMES)) from exc


def create_event(data: Any) -> Event:
    """``POST /status``: the first event (STARTED, OK) of a new trace, whose id is the
    dataset part of ``domain_id``, a dash and a uuid4."""
    item = parse_item(data, CREATE_REQUIRED)
    first = item.model_copy(
        update={"trace_status": TraceStatus.STARTED, "trace_event_status": TraceEventStatus.OK}
    )
    return to_event(first, dataset_trace_id(item.domain_id))


def update_event(data: Any, trace_id: str) -> Event:
    """``POST /status/{trace_id}``: one more event of the trace (a ``trace_id`` in the body
    is ignored in favour of the path's)."""
    return to_event(parse_item(data, UPDATE_REQUIRED), trace_id)


def to_item(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored event as an okdata status item (every field, ``None`` where unset), and
    ``submitted_by`` where the event records who sent it (authentication on)."""
    status = doc.get("status")
    item: dict[str, Any] = {}
    for name in ITEM_FIELDS:
        item[name] = doc.get(NATIVE_NAMES.get(name, name))
    if "submitted_by" in doc:
        item["submitted_by"] = doc["submitted_by"]
    item["trace_event_status"] = (
        None
        if status is None
        else (TraceEventStatus.FAILED if status == Status.FAILED else TraceEventStatus.OK).value
    )
    return item
