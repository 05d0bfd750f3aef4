"""The bus message format: how events travel on JetStream between producers and collectors.

Subject: ``waymark.events.<tenant token>`` on stream ``WAYMARK``. Body (JSON)::

    {"tenant": "opendes", "received_us": 1795337103439176, "events": [{...}, ...]}

``events`` are native event objects (the ``POST /v1/events`` shape) with
``event_id`` always set, so that a re-delivered message stores nothing new.
``received_us`` is when the front door accepted them (microseconds since the
epoch). Header ``Nats-Msg-Id`` is the event id for a one-event message, else a
digest of the message's event ids, so the server's duplicate window drops a
retried publish. The API (bus sink), the SDK's ``nats`` transport and the
collector all use these functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from waymark.errors import BadRequest
from waymark.ingest import check_tenant, parse_events
from waymark.model import Event, Record, new_event_id

STREAM = "WAYMARK"
EVENTS_PREFIX = "waymark.events"
CHANGES_PREFIX = "waymark.changes"
GSM_SUBJECT = "statuschangedtopic"


def subject_token(tenant: str) -> str:
    """A tenant as one subject token: ``.``, ``*``, ``>`` and ``%`` are %-escaped."""
    out = []
    for ch in tenant:
        out.append(f"%{ord(ch):02X}" if ch in ".*>%" else ch)
    return "".join(out)


def events_subject(tenant: str) -> str:
    return f"{EVENTS_PREFIX}.{subject_token(tenant)}"


def changes_subject(tenant: str) -> str:
    return f"{CHANGES_PREFIX}.{subject_token(tenant)}"


def msg_id(event_ids: Sequence[str]) -> str:
    if len(event_ids) == 1:
        return event_ids[0]
    return "batch-" + hashlib.sha256("\n".join(event_ids).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    headers: dict[str, str]
    payload: bytes


def with_event_ids(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The events as dicts, each with an ``event_id``: a new one where it has none. A dict
    that has one is passed on as it is (not copied), any other is copied."""
    return [
        e
        if type(e) is dict and e.get("event_id")
        else {**e, "event_id": e.get("event_id") or new_event_id()}
        for e in events
    ]


def encode(tenant: str, events: Sequence[Mapping[str, Any]], received_us: int) -> Message:
    """One bus message for events of one tenant; gives each event an id if it has none."""
    docs = with_event_ids(events)
    payload = orjson.dumps({"tenant": tenant, "received_us": received_us, "events": docs})
    return Message(
        events_subject(tenant),
        {"Nats-Msg-Id": msg_id([d["event_id"] for d in docs])},
        payload,
    )


def encode_records(records: Sequence[Record]) -> list[Message]:
    """Bus messages for records accepted by the API, one per tenant."""
    by_tenant: dict[str, list[Record]] = {}
    for record in records:
        by_tenant.setdefault(record.tenant, []).append(record)
    out = []
    for tenant, group in by_tenant.items():
        docs = [_event_fields(r.doc) for r in group]
        out.append(encode(tenant, docs, group[0].received_us))
    return out


_EVENT_FIELDS = frozenset(Event.model_fields)


def _event_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored doc back to the input shape (drops derived fields such as ``time``)."""
    return {k: v for k, v in doc.items() if k in _EVENT_FIELDS}


@dataclass(frozen=True, slots=True)
class Decoded:
    tenant: str
    received_us: int
    events: list[Event]


def decode(payload: bytes) -> Decoded:
    """Parse a bus message; :class:`BadRequest` (naming the field) if it is not a valid one."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"message is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("message must be an object with tenant, received_us and events")
    tenant = check_tenant(data.get("tenant"), ("message", "tenant"))
    received = data.get("received_us")
    if not isinstance(received, int) or isinstance(received, bool) or received < 0:
        raise BadRequest(
            "message.received_us must be a non-negative integer",
            [{"loc": ["message", "received_us"], "msg": "must be a non-negative integer"}],
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
    return Decoded(tenant, received, events)
