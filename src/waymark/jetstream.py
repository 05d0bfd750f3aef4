"""What a producer needs to publish events to Waymark's JetStream, and nothing of the server.

The API's bus sink, the collectors and the SDK's ``nats`` transport must agree on these
facts: the events stream, its subjects, the settings it is created with, and the native
events message. The SDK must also install and run without the server, so the facts live
here, in a module that imports only :mod:`waymark.model` and orjson. The server side adds
what producers never need: :mod:`waymark.wire` decodes and validates messages for the
collectors (and re-exports this module's names), and :class:`waymark.bus.base.BusSettings`
lets a bus URL change the stream settings whose defaults are given here.

Subject: ``waymark.events.<tenant token>`` on stream ``WAYMARK``. Body (JSON)::

    {"tenant": "opendes", "received_us": 1795337103439176, "events": [{...}, ...]}

``events`` are native event objects (the ``POST /v1/events`` shape) with ``event_id``
always set, so that a re-delivered message stores nothing new. Header ``Nats-Msg-Id`` is
the event id for a one-event message, else a digest of the message's event ids, so that
the stream's duplicate window drops a retried publish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from waymark.model import new_event_id

STREAM = "WAYMARK"
EVENTS_PREFIX = "waymark.events"
EVENTS_SUBJECTS = f"{EVENTS_PREFIX}.>"  # the events stream's subjects
CHANGES_PREFIX = "waymark.changes"
GSM_SUBJECT = "statuschangedtopic"

# How a Waymark stream is created when whoever comes first (an API, a collector, the SDK)
# finds it missing; an existing stream is never changed on the fly (`waymark streams`).
STREAM_STORAGE = "file"  # nats-py StorageType: messages survive a server restart
STREAM_RETENTION = "limits"  # nats-py RetentionPolicy: a consumer's ack deletes nothing
STREAM_MAX_AGE_S = 7 * 24 * 3600.0  # how long the stream keeps messages
STREAM_DUPLICATE_WINDOW_S = 120.0  # a re-published Nats-Msg-Id within this is dropped
STREAM_REPLICAS = 1  # copies in a JetStream cluster (1, 3 or 5)


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


def encode(
    tenant: str,
    events: Sequence[Mapping[str, Any]],
    received_us: int,
    *,
    submitted_by: str | None = None,
) -> Message:
    """One bus message for events of one tenant; gives each event an id if it has none.
    ``submitted_by``: who the API accepted them from (left out when not known)."""
    docs = with_event_ids(events)
    body: dict[str, Any] = {"tenant": tenant, "received_us": received_us, "events": docs}
    if submitted_by is not None:
        body["submitted_by"] = submitted_by
    payload = orjson.dumps(body)
    return Message(
        events_subject(tenant),
        {"Nats-Msg-Id": msg_id([d["event_id"] for d in docs])},
        payload,
    )
