"""The bus message format: how events travel on JetStream between producers and collectors.

Subject: ``waymark.events.<tenant token>`` on stream ``WAYMARK``. Body (JSON)::

    {"tenant": "opendes", "received_us": 1795337103439176, "events": [{...}, ...]}

``events`` are native event objects (the ``POST /v1/events`` shape) with
``event_id`` always set, so that a re-delivered message stores nothing new.
``received_us`` is when the front door accepted them (microseconds since the
epoch). Header ``Nats-Msg-Id`` is the event id for a one-event message, else a
digest of the message's event ids, so the server's duplicate window drops a
retried publish. The API (bus sink) and the collector use these functions.

The producer's half (names, stream settings, :func:`encode`) is defined in
:mod:`waymark.jetstream`, which the SDK's ``nats`` transport imports without the
server; it is re-exported here, so that the server finds the whole format in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from waymark.errors import BadRequest
from waymark.ingest import check_tenant, parse_events
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
from waymark.model import Event, Record


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
