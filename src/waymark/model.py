"""Events, summaries and their enums: the vocabulary every other module speaks.

An *event* is one report by one step of a pipeline. It arrives as an
:class:`Event` (validated input, the native ``/v1`` shape), and is stored as a
:class:`Record`: the same event with its times resolved to integer microseconds
since the epoch (UTC), its sort key fixed and the tenant attached.

A *summary* (:class:`Summary`) answers "where does this trace stand"; it is a
pure function of the set of a trace's records (see :mod:`waymark.summary`).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NamedTuple
from urllib.parse import quote

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)


class Status(StrEnum):
    """What happened at one step (GSM's status values)."""

    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"


TERMINAL_STATUSES = frozenset(
    {Status.SUCCESS, Status.FAILED, Status.SKIPPED, Status.PARTIAL_SUCCESS}
)


class TraceStatus(StrEnum):
    """Where the whole trace is, as the step that reports sees it (okdata)."""

    STARTED = "STARTED"
    CONTINUE = "CONTINUE"
    FINISHED = "FINISHED"


class TraceEventStatus(StrEnum):
    """okdata's per-event verdict: FAILED for a failed step, OK for anything else."""

    OK = "OK"
    FAILED = "FAILED"


class State(StrEnum):
    """The summary's one-word answer."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STALLED = "STALLED"


DEFAULT_TENANT = "default"
MAX_BATCH = 1000
MAX_REQUEST_BYTES = 1024 * 1024  # the largest request body the API reads (the SDK splits to fit)
MAX_BODY_BYTES = 64 * 1024
TRACE_ID_MAX = 200
TRACE_ID_CUT = 80
LIST_ENDS = 5  # a summary's errors and paths: this many first, this many last
LIST_END_BYTES = 6 * 1024  # at most this much JSON at each end of each list
SUMMARY_BYTES = 64 * 1024  # a summary's JSON is smaller than this, whatever its trace


def is_token(value: str) -> bool:
    """An id or a tenant: at least one character, all printable, none of them a space.

    ``str.isprintable`` refuses control and format characters and every separator
    (line breaks, NBSP, U+3000...) except the ASCII space, which is refused here.
    """
    return bool(value) and value.isprintable() and " " not in value


# -- times --------------------------------------------------------------------------------------


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def iso(us: int | None) -> str | None:
    """RFC 3339 in UTC with microseconds, e.g. ``2026-11-20T10:00:00.250000Z``."""
    if us is None:
        return None
    seconds, micro = divmod(us, 1_000_000)
    head = _SECONDS.get(seconds)
    if head is None:
        head = _iso_seconds(seconds)
    return f"{head}.{str(micro).zfill(6)}Z"  # str.zfill: cheaper than a format spec


def _iso_seconds(seconds: int) -> str:
    """``2026-11-20T10:00:00`` for a second since the epoch, remembered: the events of a
    batch, and the rows of a page, mostly share their seconds."""
    if len(_SECONDS) >= 4096:
        _SECONDS.clear()
    head = (_NAIVE_EPOCH + timedelta(seconds=seconds)).isoformat(timespec="seconds")
    _SECONDS[seconds] = head
    return head


_SECONDS: dict[int, str] = {}


def now_us() -> int:
    return time.time_ns() // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def _parse_time(value: Any) -> Any:
    """RFC 3339 text (offset-less means UTC) or an integer of epoch milliseconds."""
    if isinstance(value, bool):
        raise ValueError("must be an RFC 3339 time or epoch milliseconds, not a boolean")
    if isinstance(value, int):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError("epoch milliseconds out of range") from exc
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)  # the usual text, trailing "Z" included
        except ValueError:
            parsed = _parse_loose(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed
    if isinstance(value, datetime) and value.year in (1, 9999):  # also what Python callers pass
        try:  # a time the UTC calendar cannot hold (year 1 east of Greenwich, year 9999 west)
            value.astimezone(UTC) if value.tzinfo else value
        except OverflowError as exc:
            raise ValueError(f"out of range: {value.isoformat()}") from exc
    return value


def _parse_loose(value: str) -> datetime:
    """Text with surrounding blanks or a lower-case ``z``."""
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 time: {value!r}") from exc


def _check_trace_id(value: str) -> str:
    if not is_token(value):
        raise ValueError("must be printable characters without whitespace")
    return value


def _check_body_size(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(orjson.dumps(value)) > MAX_BODY_BYTES:
        raise ValueError(f"must be at most {MAX_BODY_BYTES} bytes as JSON")
    return value


Time = Annotated[
    datetime,
    BeforeValidator(_parse_time),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "description": "milliseconds since the epoch"},
            ],
            "description": "RFC 3339 (without an offset: UTC) or epoch milliseconds",
        },
        mode="validation",
    ),
]
#: a time as the API answers it: RFC 3339 in UTC with microseconds (:func:`iso`).
DateTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
TraceId = Annotated[
    StrictStr,
    Field(min_length=1, max_length=TRACE_ID_MAX),
    AfterValidator(_check_trace_id),
]
Text = Annotated[StrictStr, Field(max_length=10_000)]
Name = Annotated[StrictStr, Field(max_length=500)]
Scalar = StrictStr | StrictInt | StrictFloat | StrictBool | None


class ErrorItem(BaseModel):
    """One error as okdata reports it: ``{"message": {"en": "...", "nb": "..."}}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    message: dict[StrictStr, StrictStr]


class Event(BaseModel):
    """One event as a producer sends it to ``POST /v1/events``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: TraceId | None = None
    trace_id: TraceId
    status: Status = Status.SUCCESS
    trace_status: TraceStatus = TraceStatus.CONTINUE
    component: Name | None = None
    stage: Name | None = None
    operation: Name | None = None
    domain: Name | None = None
    domain_id: Name | None = None
    user: Name | None = None
    message: Text | None = None
    error_code: StrictInt | None = None
    errors: list[ErrorItem] | None = None
    exception: Text | None = None
    path: Text | None = None
    inputs: list[Text] | None = None
    outputs: list[Text] | None = None
    record_id: Name | None = None
    record_id_version: Name | None = None
    start_time: Time | None = None
    end_time: Time | None = None
    duration_ms: Annotated[float, Field(ge=0)] | None = None
    body: Annotated[dict[str, Any] | None, AfterValidator(_check_body_size)] = None
    meta: dict[str, Any] | None = None
    attributes: dict[str, Scalar] | None = None


# -- stored form ----------------------------------------------------------------------------------


class Record(NamedTuple):
    """An event as stored: tenant-scoped, times resolved, sort key fixed.

    ``time_us`` is the event time (``end_time``, else ``start_time``, else the
    message timestamp: the time of receipt plus the event's position in its request)
    and ``(time_us, event_id)`` is the sort key. ``finishing``
    is true when the event finishes its trace (``trace_status`` FINISHED, or a
    pipeline's final stage with a terminal status). ``doc`` is the event as the
    API returns it.

    A named tuple, not a frozen dataclass: every event on every way in becomes one, and a
    frozen dataclass sets each of its twenty fields through ``object.__setattr__``.
    """

    tenant: str
    event_id: str
    trace_id: str
    time_us: int
    start_us: int | None
    end_us: int | None
    received_us: int
    status: Status
    trace_status: TraceStatus
    finishing: bool
    component: str | None
    stage: str | None
    operation: str | None
    domain: str | None
    domain_id: str | None
    user: str | None
    record_id: str | None
    errors: tuple[Any, ...]
    paths: tuple[str, ...]
    doc: dict[str, Any]

    @property
    def key(self) -> tuple[int, str]:
        return (self.time_us, self.event_id)


def new_event_id() -> str:
    """A time-ordered (version 7, RFC 9562) UUID as text: 48 bits of Unix milliseconds, then
    74 random bits.

    Ids made one after another sort near each other, so the stores' (tenant, event_id)
    index takes new entries at its right edge instead of at random pages: SQLite appends
    about twice as fast with them. Event ids are only identities; the sort key of an
    event is its time first, so nothing reads meaning into this order.
    """
    global _HEAD
    ms = time.time_ns() // 1_000_000
    head = _HEAD
    if head[0] != ms:  # the events of a batch mostly share their millisecond
        text = f"{ms:012x}"
        head = _HEAD = (ms, f"{text[:8]}-{text[8:]}-7")
    try:
        tail = _RANDOM.pop()
    except IndexError:
        tail = _refill()
    return head[1] + tail


_HEAD = (-1, "")
"""The last millisecond an id was made in, and the text of an id up to its random bits
(one tuple, so that threads read the two together)."""


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}

_RANDOM: list[str] = []
"""The random ends of ids (74 bits and the variant, as text), read from ``os.urandom``
400 ids at once: one system call per id releases the GIL each time and invites thread
switches in the middle of a batch. Emptied in a forked child, which must not make its
parent's ids."""


def _refill() -> str:
    block = os.urandom(4000).hex()
    _RANDOM.extend(
        f"{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}"
        for r in (block[i : i + 20] for i in range(0, 8000, 20))
    )
    return _RANDOM.pop()


os.register_at_fork(after_in_child=_RANDOM.clear)


def _files(doc: dict[str, Any], listed: str, in_body: str) -> list[str]:
    out = [u for u in doc.get(listed) or () if isinstance(u, str)]
    body = doc.get("body")
    if isinstance(body, dict) and isinstance(body.get(in_body), list):
        out += [u for u in body[in_body] if isinstance(u, str)]
    return out


def inputs_of(doc: dict[str, Any]) -> list[str]:
    """What an event read: ``inputs``, then okdata's ``body.files_incoming``."""
    return _files(doc, "inputs", "files_incoming")


def outputs_of(doc: dict[str, Any]) -> list[str]:
    """What an event wrote: ``outputs``, then okdata's ``body.files_outgoing``."""
    return _files(doc, "outputs", "files_outgoing")


def touched_paths(doc: dict[str, Any]) -> tuple[str, ...]:
    """Every path an event names, in first-seen order: ``path``, its inputs, its outputs
    (the order of the lineage's nodes)."""
    path = doc.get("path")
    named = [path] if isinstance(path, str) else []
    if "inputs" not in doc and "outputs" not in doc and "body" not in doc:
        return tuple(named)  # most events name no lineage: skip gathering it
    return tuple(dict.fromkeys([*named, *inputs_of(doc), *outputs_of(doc)]))


TEXT: dict[StrEnum, str] = {m: m.value for e in (Status, TraceStatus) for m in e}
"""Enum members to their text (exact ``str``, which sqlite3 binds directly): ``.value``
is a call of a Python descriptor, this a dict lookup."""


def to_record(
    event: Event,
    tenant: str,
    received_us: int,
    *,
    timestamp_us: int | None = None,
    finishing: bool | None = None,
    submitted_by: str | None = None,
) -> Record:
    """Resolve an accepted event into its stored form.

    ``timestamp_us`` is the message timestamp, the event time of last resort
    (defaults to the time of receipt). ``finishing`` overrides the default rule
    (``trace_status`` FINISHED); pipelines pass their own verdict. ``submitted_by`` is who
    sent it (an API key's name, a token's client), recorded in ``doc`` when known.

    ``doc`` holds the event's given fields as JSON-ready values, in field order (what
    ``model_dump(mode="json", exclude_none=True)`` gives, at a fraction of its cost: this
    runs for every event on every way in), times as :func:`iso` text, ``event_id`` (last
    when it was made here) and ``time``, the event time.
    """
    given = _fields_of(event)
    doc = {name: value for name, value in given.items() if value is not None}
    status = given["status"]
    trace_status = given["trace_status"]
    doc["status"] = TEXT[status]
    doc["trace_status"] = TEXT[trace_status]
    errors: tuple[Any, ...] = ()
    if "errors" in doc:
        errors = tuple(item.model_dump(mode="json") for item in doc["errors"])
        doc["errors"] = list(errors)
    event_id = given["event_id"] or new_event_id()
    doc["event_id"] = event_id
    start_us = end_us = None
    if "start_time" in doc:
        start_us = to_us(doc["start_time"])
        doc["start_time"] = iso(start_us)
    if "end_time" in doc:
        end_us = to_us(doc["end_time"])
        doc["time"] = doc["end_time"] = iso(end_us)
        time_us = end_us
    elif start_us is not None:
        doc["time"] = doc["start_time"]
        time_us = start_us
    else:
        time_us = received_us if timestamp_us is None else timestamp_us
        doc["time"] = iso(time_us)
    if submitted_by is not None:
        doc["submitted_by"] = submitted_by
    return _tuple_new(
        Record,
        (
            tenant,
            event_id,
            given["trace_id"],
            time_us,
            start_us,
            end_us,
            received_us,
            status,
            trace_status,
            (trace_status is TraceStatus.FINISHED) if finishing is None else finishing,
            given["component"],
            given["stage"],
            given["operation"],
            given["domain"],
            given["domain_id"],
            given["user"],
            given["record_id"],
            errors,
            touched_paths(doc),
            doc,
        ),
    )


def _fields_of(event: Event) -> dict[str, Any]:
    """The event's fields by name, read once: each attribute read on a pydantic model
    passes through its ``__getattr__`` hook, and this runs for every event accepted."""
    return event.__dict__


_tuple_new = tuple.__new__
"""Builds a :class:`Record` without the named tuple's ``__new__`` (a Python function of
twenty arguments), since every accepted event is made into one."""


# -- summary --------------------------------------------------------------------------------------


class Current(BaseModel):
    """The deciding event: the step the trace's answer comes from."""

    event_id: str
    component: str | None
    stage: str | None
    operation: str | None
    status: Status
    time: DateTime


class Links(BaseModel):
    """Where the rest of a trace is, paged: its events, all its errors and paths, its lineage."""

    events: str
    errors: str
    paths: str
    lineage: str

    @classmethod
    def of(cls, trace_id: str) -> Links:
        base = "/v1/traces/" + quote(trace_id, safe="")
        return cls(
            events=base + "/events",
            errors=base + "/errors",
            paths=base + "/paths",
            lineage=base + "/lineage",
        )


class Summary(BaseModel):
    """Where a trace stands (``GET /v1/traces/{trace_id}``).

    Under 64 KiB whatever the trace's size: its errors and paths are counted, and only the
    first five and the last five of each (within 6 KiB of JSON at each end) are in it;
    ``links`` page through them all.
    """

    trace_id: str
    tenant: str
    done: bool
    trace_status: TraceStatus
    trace_event_status: TraceEventStatus
    outcome: Status
    state: State
    started_at: DateTime | None
    updated_at: DateTime
    finished_at: DateTime | None
    duration_ms: float | None
    event_count: int
    domain: str | None
    domain_id: str | None
    user: str | None
    current: Current
    error_count: int = Field(description="how many distinct errors the events reported")
    errors: list[Any] = Field(description="the first distinct errors, in key order")
    last_errors: list[Any] = Field(description="the last ones, none of them in `errors`")
    path_count: int = Field(description="how many distinct paths the events named")
    paths: list[str] = Field(description="the first distinct paths, in first-seen order")
    last_paths: list[str] = Field(description="the last ones, none of them in `paths`")
    links: Links


def dataset_of(domain_id: str | None) -> str | None:
    """The dataset a ``domain_id`` names: its part before the first ``/`` (okdata's
    ``<dataset>/<version>/<edition>``); None when there is no domain_id."""
    if not domain_id:
        return None
    return domain_id.split("/", 1)[0]


def dataset_trace_id(domain_id: str | None) -> str:
    """A new trace id as okdata makes them: the dataset part of ``domain_id``, a dash, a uuid4,
    cut at 80 characters."""
    dataset = (domain_id or "").split("/", 1)[0]
    return f"{dataset}-{uuid.uuid4()}"[:TRACE_ID_CUT]


# -- overview -------------------------------------------------------------------------------------


class StateCounts(BaseModel):
    """How many traces are in each state."""

    RUNNING: int
    SUCCEEDED: int
    FAILED: int
    STALLED: int


class DatasetOverview(BaseModel):
    """One dataset's traces in an overview's window."""

    dataset: str | None = Field(
        description="the part of domain_id before its first '/'; null: traces naming none"
    )
    counts: StateCounts
    total: int
    updated_at: str = Field(description="when the latest of its traces was updated")


class OverviewAnswer(BaseModel):
    """``GET /v1/overview``: the traces updated since ``since``, by state and dataset."""

    since: str
    until: str
    counts: StateCounts = Field(description="every dataset's traces together")
    datasets: list[DatasetOverview] = Field(description="failing first, at most `limit`")
    more_datasets: int = Field(description="how many datasets were left off")
    truncated: bool = Field(
        description="the window held more than 100,000 traces: only the most recent were counted"
    )
