"""OSDU Global Status Monitoring (GSM) messages to native events and back.

GSM stages publish two kinds of message, either as the status publisher's HTTP body (a
JSON list) or, on the bus, inside the Service Bus body
``{"message": {"data": [...], "data-partition-id": ..., "correlation-id": ...}}``::

    {"kind": "status", "properties": {"correlationId": ..., "recordId": ...,
     "recordIdVersion": ..., "stage": ..., "status": ..., "message": ..., "errorCode": ...,
     "userEmail": ..., "timestamp": ..., "additionalProperties": {...}}}
    {"kind": "datasetDetails", "properties": {"correlationId": ..., "datasetId": ...,
     "datasetVersionId": ..., "datasetType": "FILE" | "FILE_COLLECTION",
     "recordCount": ..., "timestamp": ...}}

A status becomes one native event: ``correlationId`` is the trace id, the stage is also the
component, ``timestamp`` (epoch milliseconds, or seconds when below 100,000,000,000) is the
event's ``end_time``, so the event time survives a trip over the bus. The event id is a
uuid5 of the tenant and the message, so a re-delivered message is a duplicate. A FAILED
status's ``message`` is also the event's error. Pipelines decide which statuses finish a
trace (default: a terminal status at stage ``WORKFLOW``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from waymark import storable
from waymark.errors import TooLarge
from waymark.ingest import check_tenant, field_errors, invalid, malformed, to_records
from waymark.model import (
    MAX_BATCH,
    ErrorItem,
    Event,
    Name,
    Record,
    Scalar,
    Status,
    Text,
    TraceId,
    from_us,
    to_us,
)
from waymark.pipelines import Pipelines
from waymark.store.base import DatasetDetails, EventQuery

STATUS_KIND = "status"
DETAILS_KIND = "datasetDetails"
SECONDS_BELOW = 100_000_000_000
_EVENT_IDS = uuid.UUID("6f1c7d2e-3b54-4a8e-9f0d-1e2a3b4c5d6e")


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number: epoch milliseconds, or seconds")
    return value


Timestamp = Annotated[float, BeforeValidator(_number), Field(ge=0, le=253_402_300_799_999)]


def _version_text(value: Any) -> Any:
    """Record and dataset versions are numbers in OSDU; the samples send them as text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Version = Annotated[Name, BeforeValidator(_version_text)]


class DatasetType(StrEnum):
    FILE = "FILE"
    FILE_COLLECTION = "FILE_COLLECTION"


class _Properties(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    correlation_id: TraceId | None = Field(None, alias="correlationId")
    timestamp: Timestamp | None = None


class StatusProperties(_Properties):
    record_id: Name | None = Field(None, alias="recordId")
    record_id_version: Version | None = Field(None, alias="recordIdVersion")
    stage: Name
    status: Status
    message: Text | None = None
    error_code: StrictInt | None = Field(None, alias="errorCode")
    user_email: Name | None = Field(None, alias="userEmail")
    additional_properties: dict[str, Scalar] | None = Field(None, alias="additionalProperties")


class DetailsProperties(_Properties):
    dataset_id: Name = Field(alias="datasetId")
    dataset_version_id: Version | None = Field(None, alias="datasetVersionId")
    dataset_type: DatasetType | None = Field(None, alias="datasetType")
    record_count: Annotated[StrictInt, Field(ge=0)] | None = Field(None, alias="recordCount")


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["status", "datasetDetails"]
    properties: dict[str, Any]


_MODELS: dict[str, type[_Properties]] = {
    STATUS_KIND: StatusProperties,
    DETAILS_KIND: DetailsProperties,
}


def timestamp_us(value: float) -> int:
    """GSM's ``timestamp`` in microseconds: epoch milliseconds, or seconds when below
    100,000,000,000 (the published samples use seconds, the Java services milliseconds)."""
    if value < SECONDS_BELOW:
        return round(value * 1_000_000)
    return round(value * 1_000)


def _at(value: float | None, received_us: int) -> datetime:
    return from_us(received_us if value is None else timestamp_us(value))


def status_event(props: StatusProperties, tenant: str, trace_id: str, received_us: int) -> Event:
    """One status message as a native event (``trace_id`` resolved by the caller)."""
    errors = None
    if props.status is Status.FAILED and props.message:
        errors = [ErrorItem(message={"en": props.message})]
    key = orjson.dumps(
        [tenant, trace_id, props.model_dump(mode="json", exclude={"correlation_id"})],
        option=orjson.OPT_SORT_KEYS,
    ).decode()
    return Event(
        event_id=str(uuid.uuid5(_EVENT_IDS, key)),
        trace_id=trace_id,
        status=props.status,
        component=props.stage,
        stage=props.stage,
        user=props.user_email,
        message=props.message,
        error_code=props.error_code,
        errors=errors,
        record_id=props.record_id,
        record_id_version=props.record_id_version,
        end_time=_at(props.timestamp, received_us),
        attributes=props.additional_properties,
    )


def translate(
    items: Any,
    tenant: str,
    pipelines: Pipelines,
    received_us: int,
    *,
    correlation_id: str | None = None,
    kinds: Sequence[str] = (STATUS_KIND, DETAILS_KIND),
    where: Sequence[Any] = (),
) -> tuple[list[Record], list[DatasetDetails]]:
    """A list of GSM messages as records and dataset details, all or nothing.

    ``correlation_id`` is the trace id of messages without a ``correlationId``; ``kinds``
    the message kinds accepted; ``where`` prefixes each error's ``loc``. Raises
    :class:`BadRequest` listing, per bad message, its index and field.
    """
    if not isinstance(items, list):
        raise malformed([*where], "must be a non-empty list of messages")
    if not items:
        raise invalid([{"loc": [*where], "msg": "must be a non-empty list of messages"}])
    if len(items) > MAX_BATCH:
        raise TooLarge(f"{len(items)} messages; at most {MAX_BATCH} are accepted at once")
    errors: list[dict[str, Any]] = []
    events: list[Event] = []
    details: list[DatasetDetails] = []
    for i, raw in enumerate(items):
        at = [*where, i]
        try:
            item = _Item.model_validate(raw)
        except ValidationError as exc:
            errors += field_errors(exc, at)
            continue
        if item.kind not in kinds:
            errors.append({"loc": [*at, "kind"], "msg": f"must be {' or '.join(kinds)}"})
            continue
        model = _MODELS[item.kind]
        at.append("properties")
        try:
            props = model.model_validate(item.properties)
        except ValidationError as exc:
            errors += field_errors(exc, at)
            continue
        trace_id = props.correlation_id or correlation_id
        if trace_id is None:
            errors.append({"loc": [*at, "correlationId"], "msg": "Field required"})
            continue
        if isinstance(props, StatusProperties):
            try:
                # A message without a timestamp takes the time of receipt plus its place
                # among the status messages, so that a list keeps its order.
                at_us = received_us + len(events)
                events.append(status_event(props, tenant, trace_id, at_us))
            except ValidationError as exc:  # a default correlation id the model refuses
                errors += field_errors(exc, at, {"trace_id": "correlationId"})
        else:
            assert isinstance(props, DetailsProperties)
            details.append(
                DatasetDetails(
                    tenant=tenant,
                    trace_id=trace_id,
                    dataset_id=props.dataset_id,
                    dataset_version_id=props.dataset_version_id,
                    dataset_type=props.dataset_type.value if props.dataset_type else None,
                    record_count=props.record_count,
                    time_us=to_us(_at(props.timestamp, received_us)),
                    received_us=received_us,
                )
            )
    if errors:
        raise invalid(errors)
    return to_records(events, tenant, pipelines, received_us=received_us), details


def from_service_bus(
    body: bytes | Any, pipelines: Pipelines, received_us: int
) -> tuple[list[Record], list[DatasetDetails]]:
    """The messages of one Service Bus body (as it arrives on subject ``statuschangedtopic``)
    as records and dataset details; :class:`BadRequest` (with per-field ``errors``) if any
    part of it is invalid, in which case nothing of it should be stored."""
    data = body
    if isinstance(body, str | bytes | bytearray | memoryview):
        raw = body.encode() if isinstance(body, str) else bytes(body)
        data = storable.load(raw, (), "message is not JSON", storable.BUS_DEPTH)
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise invalid([{"loc": ["message"], "msg": "must be an object with data"}])
    partition = message.get("data-partition-id")
    if not isinstance(partition, str) or not partition:
        raise invalid([{"loc": ["message", "data-partition-id"], "msg": "Field required"}])
    tenant = check_tenant(partition, ("message", "data-partition-id"))
    default_id = message.get("correlation-id")
    return translate(
        message.get("data"),
        tenant,
        pipelines,
        received_us,
        correlation_id=default_id if isinstance(default_id, str) and default_id else None,
        where=("message", "data"),
    )


# -- back to GSM's shape ---------------------------------------------------------------------


def _epoch_ms(text: str | None) -> int | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return to_us(moment) // 1000


def status_properties(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored event as GSM status ``properties`` (epoch-millisecond ``timestamp``)."""
    return {
        "correlationId": doc["trace_id"],
        "recordId": doc.get("record_id"),
        "recordIdVersion": doc.get("record_id_version"),
        "stage": doc.get("stage"),
        "status": doc.get("status"),
        "message": doc.get("message"),
        "errorCode": doc.get("error_code"),
        "userEmail": doc.get("user"),
        "timestamp": _epoch_ms(doc.get("time")),
        "additionalProperties": doc.get("attributes"),
    }


def details_properties(details: DatasetDetails) -> dict[str, Any]:
    """Stored dataset details as GSM ``datasetDetails`` properties."""
    return {
        "correlationId": details.trace_id,
        "datasetId": details.dataset_id,
        "datasetVersionId": details.dataset_version_id,
        "datasetType": details.dataset_type,
        "recordCount": details.record_count,
        "timestamp": details.time_us // 1000,
    }


# -- the status processor's query ------------------------------------------------------------


class StatusQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    correlation_id: TraceId | None = Field(None, alias="correlationId")
    record_id: Name | None = Field(None, alias="recordId")
    stage: list[Name] = Field([], max_length=100)
    status: list[Status] = Field([], max_length=10)


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status_query: StatusQuery = Field(alias="statusQuery")
    limit: Annotated[StrictInt, Field(ge=1, le=1000)] = 100
    cursor: Annotated[StrictStr, Field(max_length=2000)] | None = None


def event_query(data: Any) -> tuple[EventQuery, int, str | None]:
    """``{"statusQuery": {correlationId, recordId, stage: [...], status: [...]}, "limit",
    "cursor"}`` as an event search; at least one filter."""
    if not isinstance(data, dict):
        raise malformed(["body"], "must be an object with statusQuery")
    try:
        request = QueryRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid(field_errors(exc, ("body",))) from exc
    q = request.status_query
    if q.correlation_id is None and q.record_id is None and not q.stage and not q.status:
        raise invalid(
            [
                {
                    "loc": ["body", "statusQuery"],
                    "msg": "give at least one of correlationId, recordId, stage, status",
                }
            ]
        )
    query = EventQuery(
        trace_id=q.correlation_id,
        record_id=q.record_id,
        stages=tuple(q.stage),
        statuses=tuple(s.value for s in q.status),
    )
    return query, request.limit, request.cursor
