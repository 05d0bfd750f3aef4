"""From bytes on the wire to records ready to store: parsing, validation, tenant, pipelines.

Shared by every way in (the ``/v1`` API, the translators, the collector), so that an
event means the same thing whichever door it came through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from waymark import storable
from waymark.errors import BadRequest, InvalidFields, TooLarge
from waymark.model import (
    DEFAULT_TENANT,
    MAX_BATCH,
    TRACE_ID_MAX,
    Event,
    Record,
    is_token,
    now_us,
    to_record,
)
from waymark.model import MAX_REQUEST_BYTES as MAX_REQUEST_BYTES  # re-exported for the doors
from waymark.pipelines import Pipelines

_events = TypeAdapter(list[Event])


def field_errors(
    exc: ValidationError, prefix: Sequence[Any], names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"loc", "msg"}``, under ``prefix``; ``names`` renames the first
    part of each location (a native field back to an anchor's name for it)."""
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        if loc and names and isinstance(loc[0], str):
            loc[0] = names.get(loc[0], loc[0])
        out.append({"loc": [*prefix, *loc], "msg": err["msg"]})
    return out


def invalid(errors: list[dict[str, Any]]) -> InvalidFields:
    """Fields with wrong values, each ``{"loc": [...], "msg": ...}``; the detail names the first."""
    return InvalidFields(_detail(errors), errors)


def malformed(loc: list[Any], msg: str) -> BadRequest:
    """A value of the wrong kind where the request's structure needs another (a string
    where the body must be an object, say): the request is malformed, not a field wrong."""
    errors: list[dict[str, Any]] = [{"loc": loc, "msg": msg}]
    return BadRequest(_detail(errors), errors)


def _detail(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def load_json(raw: bytes, where: Sequence[Any] = ("body",)) -> Any:
    """Parse a request body (read within :data:`MAX_REQUEST_BYTES`): 400 if it is not JSON,
    422 naming the field under ``where`` if a store cannot hold it (:mod:`waymark.storable`)."""
    return storable.load(raw, where)


def parse_events(data: Any) -> list[Event]:
    """One event object or a list of 1 to 1,000; every error names its field."""
    if isinstance(data, list):
        if not data:
            raise invalid([{"loc": ["body"], "msg": "must hold 1 to 1000 events, not none"}])
        if len(data) > MAX_BATCH:
            raise TooLarge(f"batch of {len(data)} events; at most {MAX_BATCH} are accepted")
        try:
            return _events.validate_python(data)
        except ValidationError as exc:
            raise invalid(field_errors(exc, ("body",))) from exc
    if isinstance(data, dict):
        try:
            return [Event.model_validate(data)]
        except ValidationError as exc:
            raise invalid(field_errors(exc, ("body",))) from exc
    raise malformed(["body"], "must be an event object or a list of them")


def check_tenant(value: str | None, where: Sequence[str] = ("header", "Waymark-Tenant")) -> str:
    if value is None or value == "":
        return DEFAULT_TENANT
    if len(value) > TRACE_ID_MAX or not is_token(value):
        raise invalid(
            [{"loc": list(where), "msg": "must be 1-200 printable characters without whitespace"}]
        )
    return value


def to_records(
    events: Sequence[Event],
    tenant: str,
    pipelines: Pipelines,
    *,
    received_us: int | None = None,
    submitted_by: str | None = None,
) -> list[Record]:
    """Resolve the events of one request (or one bus message) into records; each pipeline
    decides which of them finish a trace.

    An event without a time takes the time of receipt plus its position in the request, in
    microseconds (the first event +0, the next +1, ...), so that events sent together
    without times keep the order they were sent in under the sort key (time, event id),
    however their ids compare. The position is the same on every delivery of a bus message,
    so a re-delivered event resolves to the same record.

    ``submitted_by``: who sent them (see :func:`waymark.model.to_record`)."""
    received = now_us() if received_us is None else received_us
    finishes = pipelines.finishes
    return [
        to_record(
            event,
            tenant,
            received,
            timestamp_us=received + i,
            finishing=finishes(tenant, event),
            submitted_by=submitted_by,
        )
        for i, event in enumerate(events)
    ]
