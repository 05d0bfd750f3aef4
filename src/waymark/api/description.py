"""The API description (``/openapi.json``): every request and answer of every door.

FastAPI describes the routes it sees; most of Waymark's routes read their own bodies and
answer with bytes they encode themselves, so their request and answer shapes are declared
here, once, per operation (:data:`OPERATIONS`), and :func:`complete` writes them into the
generated document: the request body with its examples (the files of ``examples/``), the
success answer's schema, and every error answer in the shape of the operation's door
(RFC 9457 problem details on ``/v1``, the anchor's own shape on the front doors).
``tests/test_openapi.py`` holds every operation to having them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema
from starlette.routing import BaseRoute

from waymark.lineage import Lineage
from waymark.model import (
    MAX_BATCH,
    MAX_REQUEST_BYTES,
    DateTime,
    Event,
    Status,
    Summary,
    TraceStatus,
)
from waymark.translate.gsm import DetailsProperties, QueryRequest, StatusProperties
from waymark.translate.okdata import StatusItem
from waymark.translate.openlineage import RunEvent
from waymark.translate.stepfunctions import StatusChange

PROBLEM_JSON = "application/problem+json"
JSON = "application/json"

# -- answers --------------------------------------------------------------------------------


class Accepted(BaseModel):
    """Events accepted: durable once this answer is sent."""

    accepted: int
    event_ids: list[str]


class AcceptedCount(BaseModel):
    """Messages accepted: durable once this answer is sent."""

    accepted: int


class TraceCreated(BaseModel):
    trace_id: str


class TraceStart(Event):
    """A trace's first event: an event without ``trace_id`` (the server makes it), with
    ``domain`` and ``domain_id``."""

    trace_id: SkipJsonSchema[str] = ""
    domain: str
    domain_id: str


class TraceRef(BaseModel):
    """okdata's answer to a path lookup."""

    id: str
    trace_id: str


class StoredEvent(Event):
    """An event as stored: the fields it was sent with, its id, status and trace status
    (defaults filled in), its event time and when it was received."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_id: str
    status: Status
    trace_status: TraceStatus
    time: DateTime = Field(description="end_time, else start_time, else when it was received")
    received_at: DateTime


class EventsPage(BaseModel):
    items: list[StoredEvent]
    next_cursor: str | None = Field(description="the next page's cursor; null on the last")


class SummaryPage(BaseModel):
    items: list[Summary]
    next_cursor: str | None = Field(description="the next page's cursor; null on the last")


class PathTouch(BaseModel):
    trace_id: str
    event_id: str
    at: DateTime = Field(description="the event's time")
    received_at: DateTime = Field(description="when the event was received")


class PathTouches(BaseModel):
    items: list[PathTouch]
    next_cursor: str | None = Field(description="the next page's cursor; null on the last")


class WebhookOut(BaseModel):
    """A webhook subscription (never its secret)."""

    id: str
    url: str
    events: list[str]
    dataset: str | None
    component: str | None
    created_at: DateTime
    failed_at: DateTime | None = Field(description="when a message was last given up on")
    failure: str | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing secret, `whsec_<base64>`; shown only here")


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None = Field(description="the next page's cursor; null on the last")


class DeliveryOut(BaseModel):
    """A message's last delivery attempt."""

    id: str = Field(description="the message's `webhook-id`, the same on every attempt")
    trace_id: str
    type: str
    created_at: DateTime | None
    attempts: int
    attempted_at: DateTime | None
    status_code: int | None
    error: str | None
    delivered_at: DateTime | None
    gave_up_at: DateTime | None


class Deliveries(BaseModel):
    items: list[DeliveryOut]


class ItemsPage(BaseModel):
    """A page of a trace's distinct errors (each as its events reported it) or paths."""

    items: list[Any]
    next_cursor: str | None = Field(description="the next page's cursor; null on the last")


class OkdataItem(StatusItem):
    """One event in okdata's names (every field, null where unset)."""

    trace_id: str
    trace_event_id: str


class GsmStatus(BaseModel):
    """A stored event as GSM status properties (null where the event did not say)."""

    correlationId: str  # GSM's names
    recordId: str | None
    recordIdVersion: str | None
    stage: str | None
    status: Status
    message: str | None
    errorCode: int | None
    userEmail: str | None
    timestamp: int | None = Field(description="milliseconds since the epoch")
    additionalProperties: dict[str, Any] | None


class GsmDetails(BaseModel):
    """Stored dataset details as GSM datasetDetails properties."""

    correlationId: str  # GSM's names
    datasetId: str
    datasetVersionId: str | None
    datasetType: str | None
    recordCount: int | None
    timestamp: int = Field(description="milliseconds since the epoch")


class GsmQueryAnswer(BaseModel):
    results: list[GsmStatus]
    cursor: str | None


class GsmDetailsAnswer(BaseModel):
    results: list[GsmDetails]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    warnings: list[str] = Field(
        description="each store setting that lets an accepted event be lost to an OS crash"
        " or a power loss"
    )
    detail: str | None = None


class GsmMessage(BaseModel):
    kind: Literal["status"]
    properties: StatusProperties


class GsmDetailsMessage(BaseModel):
    kind: Literal["datasetDetails"]
    properties: DetailsProperties


# -- errors, in each door's shape -----------------------------------------------------------


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='where: ["body", 3, "trace_id"], ["query", ...]')
    msg: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str
    status: int
    title: str
    detail: str
    request_id: str
    errors: list[FieldError] | None = Field(None, description="every bad field")


class OkdataError(BaseModel):
    message: str = Field(description="every bad field, named")
    request_id: str


class GsmFieldError(BaseModel):
    index: int | None = Field(description="the message's place in the list")
    field: str
    message: str


class GsmError(BaseModel):
    code: int
    reason: str
    message: str
    request_id: str
    errors: list[GsmFieldError] | None = None


class MarquezError(BaseModel):
    code: int
    message: str
    request_id: str
    errors: list[FieldError] | None = None


ERROR_TEXT = {
    400: "Malformed: not JSON, or the wrong kind of JSON value where the request's structure"
    " needs another",
    401: "No credential, or one that is not valid",
    403: "The credential does not hold the role, tenant or dataset this needs",
    404: "Not found",
    413: f"Body over {MAX_REQUEST_BYTES // (1024 * 1024)} MiB or more than {MAX_BATCH:,} items",
    422: "Fields with wrong values, each named",
    503: "A backend (store or bus) cannot be reached now; try again after Retry-After seconds",
}
#: the error answers every operation may give.
COMMON_ERRORS = (401, 403, 422, 503)
#: and those of an operation that takes a body.
BODY_ERRORS = (400, 413)


# -- operations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """What one operation takes and answers beyond what its route declares. An operation
    not listed in :data:`OPERATIONS` is described by its route alone, with the errors
    every operation may give."""

    answer: type[BaseModel] | dict[str, Any] | None = None  # None: as the route declares
    empty: bool = False  # the success answer has no body
    body: type[BaseModel] | dict[str, Any] | None = None
    examples: tuple[str, ...] = ()  # files of examples/
    replies: dict[int, type[BaseModel]] = field(default_factory=dict)  # own error shapes
    media: str = JSON  # the success answer's media type


def _one_or_many(model: type[BaseModel]) -> dict[str, Any]:
    ref = _ref(model)
    return {"oneOf": [ref, {"type": "array", "items": ref, "minItems": 1, "maxItems": MAX_BATCH}]}


def _list_of(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": _ref(model), "minItems": 1, "maxItems": MAX_BATCH}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/v1/events"): Operation(
        Accepted, body=_one_or_many(Event), examples=("native-events.json",)
    ),
    ("GET", "/v1/traces/{trace_id}"): Operation(Summary),
    ("POST", "/v1/traces"): Operation(TraceCreated, body=TraceStart),
    ("GET", "/v1/traces"): Operation(SummaryPage),
    ("GET", "/v1/traces/{trace_id}/events"): Operation(EventsPage),
    ("GET", "/v1/paths"): Operation(PathTouches),
    ("GET", "/v1/traces/{trace_id}/lineage"): Operation(Lineage),
    ("GET", "/v1/traces/{trace_id}/errors"): Operation(ItemsPage),
    ("POST", "/v1/webhooks"): Operation(WebhookCreated),
    ("GET", "/v1/webhooks"): Operation(WebhookPage),
    ("GET", "/v1/webhooks/{webhook_id}"): Operation(WebhookOut),
    ("DELETE", "/v1/webhooks/{webhook_id}"): Operation(empty=True),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): Operation(Deliveries),
    ("GET", "/v1/traces/{trace_id}/paths"): Operation(ItemsPage),
    ("GET", "/v1/stream"): Operation(
        {
            "type": "string",
            "description": "Server-Sent Events without end: `event: summary` (data: the"
            " trace's summary, as `GET /v1/traces/{trace_id}` answers it), `event: reset`"
            ' (data: `{"reason": ...}`; list the traces again), `event: ready` (data: `{}`),'
            " each with an `id` to resume after; a `: keep-alive` comment with the id when"
            " nothing else was sent for a while.",
        },
        media="text/event-stream",
    ),
    ("POST", "/status"): Operation(TraceCreated, body=StatusItem, examples=("okdata-create.json",)),
    ("GET", "/status/{trace_id}"): Operation({"type": "array", "items": _ref(OkdataItem)}),
    ("POST", "/status/{trace_id}"): Operation(
        OkdataItem,
        body=StatusItem,
        examples=("okdata-update.json", "okdata-update-failed.json", "okdata-update-legacy.json"),
    ),
    ("GET", "/status-from-path/{b64}"): Operation(TraceRef),
    ("POST", "/api/status-publisher/v1/status"): Operation(
        AcceptedCount, body=_list_of(GsmMessage), examples=("gsm-status.json",)
    ),
    ("POST", "/api/status-publisher/v1/dataset-details"): Operation(
        AcceptedCount, body=_list_of(GsmDetailsMessage), examples=("gsm-dataset-details.json",)
    ),
    ("POST", "/api/status-processor/v1/status/query"): Operation(GsmQueryAnswer, body=QueryRequest),
    ("GET", "/api/status-processor/v1/dataset-details"): Operation(GsmDetailsAnswer),
    ("POST", "/api/v1/lineage"): Operation(
        empty=True, body=_one_or_many(RunEvent), examples=("openlineage-child-complete.json",)
    ),
    ("POST", "/aws/step-functions/events"): Operation(
        Accepted,
        body=_one_or_many(StatusChange),
        examples=(
            "stepfunctions-running.json",
            "stepfunctions-succeeded.json",
            "stepfunctions-failed.json",
            "stepfunctions-timed-out.json",
        ),
    ),
    ("GET", "/healthz"): Operation(Health),
    ("GET", "/readyz"): Operation(Readiness, replies={503: Readiness}),
    ("GET", "/metrics"): Operation(
        {"type": "string", "description": "Prometheus text exposition format 0.0.4"},
        media="text/plain",
    ),
}

#: request bodies referred to inside the operations' schemas
_BODIES: tuple[type[BaseModel], ...] = (
    Event,
    RunEvent,
    StatusChange,
    GsmMessage,
    GsmDetailsMessage,
)
#: answers referred to inside the operations' schemas, and the doors' error shapes
_ANSWERS: tuple[type[BaseModel], ...] = (
    OkdataItem,
    ProblemDetails,
    OkdataError,
    GsmError,
    MarquezError,
)


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _examples(names: Iterable[str]) -> dict[str, Any]:
    folder = resources.files("waymark.api").joinpath("examples")
    return {
        name.removesuffix(".json"): {"value": json.loads(folder.joinpath(name).read_text())}
        for name in names
    }


def _content(media_type: str, schema: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    return {media_type: {"schema": _ref(schema) if isinstance(schema, type) else schema}}


def _error_shape(route: APIRoute) -> tuple[type[BaseModel], str]:
    """The model and media type of the route's errors: its door's, or problem details."""
    model: type[BaseModel] | None = getattr(route, "error_model", None)
    return (model, JSON) if model is not None else (ProblemDetails, PROBLEM_JSON)


def complete(schema: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """``schema`` (FastAPI's document of ``routes``) with every operation's request body,
    examples, success answer and error answers declared."""
    bodies = {*_BODIES, *(op.body for op in OPERATIONS.values() if isinstance(op.body, type))}
    answers = {*_ANSWERS, *(op.answer for op in OPERATIONS.values() if isinstance(op.answer, type))}
    answers |= {m for op in OPERATIONS.values() for m in op.replies.values()}
    _, generated = models_json_schema(
        [(m, "validation") for m in sorted(bodies, key=_name)]
        + [(m, "serialization") for m in sorted(answers, key=_name)],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(generated.get("$defs", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            described = schema["paths"].get(route.path_format, {}).get(method.lower())
            if described is None:
                continue
            operation = OPERATIONS.get((method, route.path_format), Operation())
            _describe(described, operation, route, *_error_shape(route))
    _markdown(schema)
    return schema


def _describe(
    described: dict[str, Any],
    operation: Operation,
    route: APIRoute,
    error: type[BaseModel],
    media: str,
) -> None:
    generated = described["responses"]
    ok = next((s for s in generated if s.startswith("2")), str(route.status_code or 200))
    success: dict[str, Any] = dict(generated.get(ok, {"description": "Successful"}))
    declared = success.get("content", {}).get(JSON, {}).get("schema")
    if operation.answer is not None and not declared:  # a route's own model wins
        success["content"] = _content(operation.media, operation.answer)
    elif operation.empty:
        success = {"description": "Accepted; no body"}
    responses: dict[str, Any] = {ok: success}
    statuses = set(COMMON_ERRORS)
    if "{" in route.path_format:  # a trace, or a file, that may not be there
        statuses.add(404)
    if "requestBody" in described:  # a body the route declares itself
        statuses |= set(BODY_ERRORS)
    if operation.body is not None:
        statuses |= set(BODY_ERRORS)
        body: dict[str, Any] = {"required": True, "content": _content(JSON, operation.body)}
        if operation.examples:
            body["content"][JSON]["examples"] = _examples(operation.examples)
        described["requestBody"] = body
    for status in sorted(statuses):
        own = operation.replies.get(status)
        answer: dict[str, Any] = {
            "description": ERROR_TEXT[status],
            "content": _content(JSON, own) if own else _content(media, error),
        }
        if status == 503:
            answer["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
            }
        responses[str(status)] = answer
    described["responses"] = responses


def _markdown(node: Any) -> None:
    """Descriptions taken from docstrings, with their literals as Markdown's (```x``` ->
    `` `x` ``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = value.replace("``", "`")
            else:
                _markdown(value)
    elif isinstance(node, list):
        for value in node:
            _markdown(value)
