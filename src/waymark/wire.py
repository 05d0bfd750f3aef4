"""The bus message format: how events and dataset details travel on JetStream between
producers and collectors.

Subject: ``waymark.events.<tenant token>`` on stream ``WAYMARK``, for both kinds of
message. Body (JSON), one tenant per message::

    {"tenant": "opendes", "received_us": 1795337103439176, "events": [{...}, ...],
     "submitted_by": "ingest-key"}
    {"kind": "dataset_details", "v": 1, "tenant": "opendes", "received_us": 1795337103439176,
     "details": [{"trace_id": ..., "dataset_id": ..., "dataset_version_id": ...,
                  "dataset_type": ..., "record_count": ..., "time_us": ...}, ...]}

A body without ``kind`` holds events: the native event objects (the ``POST /v1/events``
shape) with ``event_id`` always set, so that a re-delivered message stores nothing new.
This is the format every producer has written from the start (format 1 of kind
``events``), and it stays readable. Every other kind names itself and its format version
``v``; a collector parks a kind or version it does not know, with a reason that says so,
to be replayed (``waymark dead-letters --replay``) once it is upgraded. ``details`` are
GSM dataset details (:class:`waymark.store.base.DatasetDetails`), ``time_us`` in
microseconds since the epoch; storing them twice leaves one row, so a re-delivery is
harmless.

``received_us`` is when the front door accepted them (microseconds since the epoch).
``submitted_by`` (optional) is who the API accepted them from, with authentication on
(an API key's name, a token's client); a collector records it with each event. Whoever
may publish to the stream may set it: bus credentials are the API's and collectors'.
Header ``Nats-Msg-Id`` is the event id for a one-event message, else a digest of the
message's event ids, or of its details, so the server's duplicate window drops a retried
publish. The API (bus sink) and the collector use these functions.

The producer's half (names, stream settings, :func:`encode` of events) is defined in
:mod:`waymark.jetstream`, which the SDK's ``nats`` transport imports without the
server; it is re-exported here, so that the server finds the whole format in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError

from waymark import storable
from waymark.batching import split_batches
from waymark.errors import BadRequest, TooLarge
from waymark.ingest import check_tenant, field_errors, invalid, parse_events
from waymark.jetstream import CHANGES_PREFIX as CHANGES_PREFIX
from waymark.jetstream import EVENTS_PREFIX as EVENTS_PREFIX
from waymark.jetstream import GSM_SUBJECT as GSM_SUBJECT
from waymark.jetstream import STREAM as STREAM
from waymark.jetstream import Message as Message
from waymark.jetstream import changes_subject as changes_subject
from waymark.jetstream import encode as encode
from waymark.jetstream import events_subject as events_subject
from waymark.jetstream import msg_id as msg_id
from waymark.jetstream import subject_token as subject_token
from waymark.jetstream import with_event_ids as with_event_ids
from waymark.model import MAX_BATCH, Event, Name, Record, TraceId
from waymark.store.base import DatasetDetails

EVENTS_KIND = "events"
DETAILS_KIND = "dataset_details"
#: the format version of each kind this code reads and writes.
VERSIONS = {EVENTS_KIND: 1, DETAILS_KIND: 1}
#: most bytes of dataset details in one message, well under the server's payload limit
#: (1 MB by default) so that a full request's details are never refused for their size.
DETAILS_BYTES = 512 * 1024


def encode_records(records: Sequence[Record]) -> list[Message]:
    """Bus messages for records accepted by the API, one per tenant."""
    by_sender: dict[tuple[str, str | None], list[Record]] = {}
    for record in records:
        key = (record.tenant, record.doc.get("submitted_by"))
        by_sender.setdefault(key, []).append(record)
    out = []
    for (tenant, by), group in by_sender.items():
        docs = [_event_fields(r.doc) for r in group]
        out.append(encode(tenant, docs, group[0].received_us, submitted_by=by))
    return out


_EVENT_FIELDS = frozenset(Event.model_fields)


def _event_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored doc back to the input shape (drops derived fields such as ``time``, and
    ``submitted_by``, which travels beside the events)."""
    return {k: v for k, v in doc.items() if k in _EVENT_FIELDS}


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one bus message holds: events or dataset details (the other list empty)."""

    tenant: str
    received_us: int
    events: list[Event] = field(default_factory=list)
    details: list[DatasetDetails] = field(default_factory=list)
    submitted_by: str | None = None


def decode(payload: bytes) -> Decoded:
    """Parse a bus message of any kind; :class:`BadRequest` (naming the field) if it is not
    a valid one, or one of a kind or version this code does not know."""
    data = storable.load(payload, ("message",), "message is not JSON", storable.BUS_DEPTH)
    if not isinstance(data, dict):
        raise BadRequest("message must be an object with tenant, received_us and events")
    kind = _kind(data)
    tenant = check_tenant(data.get("tenant"), ("message", "tenant"))
    received = data.get("received_us")
    if not isinstance(received, int) or isinstance(received, bool) or received < 0:
        raise BadRequest(
            "message.received_us must be a non-negative integer",
            [{"loc": ["message", "received_us"], "msg": "must be a non-negative integer"}],
        )
    if kind == DETAILS_KIND:
        return Decoded(tenant, received, details=_details(data.get("details"), tenant, received))
    submitted_by = data.get("submitted_by")
    if submitted_by is not None and (not isinstance(submitted_by, str) or len(submitted_by) > 500):
        raise invalid(
            [{"loc": ["message", "submitted_by"], "msg": "must be text of at most 500 characters"}]
        )
    events = parse_events(data.get("events"))
    missing = [i for i, e in enumerate(events) if not e.event_id]
    if missing:
        raise BadRequest(
            "every event on the bus needs an event_id",
            [
                {"loc": ["message", "events", i, "event_id"], "msg": "Field required"}
                for i in missing
            ],
        )
    return Decoded(tenant, received, events, submitted_by=submitted_by)


def _kind(data: dict[str, Any]) -> str:
    """The message's kind, once its format version is known to be one this code reads."""
    kind = data.get("kind", EVENTS_KIND)
    if not isinstance(kind, str) or kind not in VERSIONS:
        known = " or ".join(VERSIONS)
        raise invalid(
            [{"loc": ["message", "kind"], "msg": f"unknown kind {kind!r}: must be {known}"}]
        )
    version = data.get("v", 1)
    if type(version) is not int or version != VERSIONS[kind]:
        raise invalid(
            [
                {
                    "loc": ["message", "v"],
                    "msg": f"{kind} format {version!r} is not known here (this collector"
                    f" reads format {VERSIONS[kind]}): upgrade it, then replay the message",
                }
            ]
        )
    return kind


# -- dataset details ----------------------------------------------------------------------


class _DetailsItem(BaseModel):
    """One dataset details entry of a bus message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trace_id: TraceId
    dataset_id: Name
    dataset_version_id: Name | None = None
    dataset_type: Name | None = None
    record_count: Annotated[StrictInt, Field(ge=0)] | None = None
    time_us: Annotated[StrictInt, Field(ge=0)]


_details_items = TypeAdapter(list[_DetailsItem])


def _details(data: Any, tenant: str, received_us: int) -> list[DatasetDetails]:
    where = ["message", "details"]
    if not isinstance(data, list) or not data:
        raise invalid([{"loc": where, "msg": f"must hold 1 to {MAX_BATCH} dataset details"}])
    if len(data) > MAX_BATCH:
        raise TooLarge(f"{len(data)} dataset details in one message; at most {MAX_BATCH}")
    try:
        items = _details_items.validate_python(data)
    except ValidationError as exc:
        raise invalid(field_errors(exc, where)) from exc
    return [
        DatasetDetails(
            tenant=tenant,
            trace_id=d.trace_id,
            dataset_id=d.dataset_id,
            dataset_version_id=d.dataset_version_id,
            dataset_type=d.dataset_type,
            record_count=d.record_count,
            time_us=d.time_us,
            received_us=received_us,
        )
        for d in items
    ]


def encode_details(details: Sequence[DatasetDetails]) -> list[Message]:
    """Bus messages for dataset details: one per tenant, split where one would hold more than
    :data:`MAX_BATCH` entries or :data:`DETAILS_BYTES`. The message id is a digest of the
    tenant and the entries, so a retried publish of the same details is dropped."""
    by_tenant: dict[str, list[DatasetDetails]] = {}
    for d in details:
        by_tenant.setdefault(d.tenant, []).append(d)
    out = []
    for tenant, group in by_tenant.items():
        docs = [
            {
                "trace_id": d.trace_id,
                "dataset_id": d.dataset_id,
                "dataset_version_id": d.dataset_version_id,
                "dataset_type": d.dataset_type,
                "record_count": d.record_count,
                "time_us": d.time_us,
            }
            for d in group
        ]
        sizes = [len(orjson.dumps(doc)) + 1 for doc in docs]
        for run in split_batches(docs, sizes, MAX_BATCH, DETAILS_BYTES):
            digest = hashlib.sha256(orjson.dumps([tenant, run])).hexdigest()
            body = {
                "kind": DETAILS_KIND,
                "v": VERSIONS[DETAILS_KIND],
                "tenant": tenant,
                "received_us": group[0].received_us,
                "details": run,
            }
            out.append(
                Message(
                    events_subject(tenant),
                    {"Nats-Msg-Id": f"details-{digest}"},
                    orjson.dumps(body),
                )
            )
    return out
