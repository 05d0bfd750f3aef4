"""The summary rule (docs/architecture.md), as a pure function and as a commutative merge.

:func:`summarize` is the definition: it takes the *set* of a trace's records and
returns its :class:`~waymark.model.Summary`. Stores do not call it on every
write; they keep a :class:`Partial` per trace, whose :func:`merge` is
commutative, associative and idempotent over disjoint sets of events, so a
batch's partial can be folded into the stored one by an upsert in any order, by
any number of writers. The property tests hold the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from waymark.model import (
    LIST_END_BYTES,
    LIST_ENDS,
    Current,
    Links,
    Record,
    State,
    Status,
    Summary,
    TraceEventStatus,
    TraceStatus,
    iso,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate for a trace's deciding event: the fields of one event that a summary
    can take over, its key and what it says. (The SDK's ``Step`` is a step being tracked.)"""

    time_us: int
    event_id: str
    status: Status
    trace_status: TraceStatus
    component: str | None
    stage: str | None
    operation: str | None

    @property
    def key(self) -> tuple[int, str]:
        return (self.time_us, self.event_id)

    @classmethod
    def of(cls, record: Record) -> Candidate:
        return cls(  # positional: keywords cost a frozen dataclass much more
            record.time_us,
            record.event_id,
            record.status,
            record.trace_status,
            record.component,
            record.stage,
            record.operation,
        )


@dataclass(frozen=True, slots=True)
class Origin:
    """Who the trace belongs to: taken from the least-key event naming a domain or user."""

    time_us: int
    event_id: str
    domain: str | None
    domain_id: str | None
    user: str | None

    @property
    def key(self) -> tuple[int, str]:
        return (self.time_us, self.event_id)


@dataclass(frozen=True, slots=True)
class Partial:
    """The mergeable part of a summary: every field is a min, a max, a sum or an or.

    ``event_count`` is a sum, so partials may only be merged over *disjoint* sets
    of events; stores guarantee that by folding in only newly inserted events.
    """

    event_count: int
    started_us: int
    updated_us: int
    last: Candidate
    finish: Candidate | None
    origin: Origin | None

    @property
    def done(self) -> bool:
        return self.finish is not None

    @property
    def deciding(self) -> Candidate:
        return self.finish if self.finish is not None else self.last

    @classmethod
    def of(cls, record: Record) -> Partial:
        step = Candidate.of(record)
        origin = None
        if record.domain is not None or record.domain_id is not None or record.user is not None:
            origin = Origin(
                record.time_us, record.event_id, record.domain, record.domain_id, record.user
            )
        return cls(
            1,
            record.start_us if record.start_us is not None else record.time_us,
            record.time_us,
            step,
            step if record.finishing else None,
            origin,
        )


def _max_step(a: Candidate | None, b: Candidate | None) -> Candidate | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.key >= b.key else b


def _min_origin(a: Origin | None, b: Origin | None) -> Origin | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.key <= b.key else b


def merge(a: Partial, b: Partial) -> Partial:
    """Join two partials of disjoint event sets. The SQL upserts implement the same join."""
    last = _max_step(a.last, b.last)
    assert last is not None
    return Partial(
        event_count=a.event_count + b.event_count,
        started_us=min(a.started_us, b.started_us),
        updated_us=max(a.updated_us, b.updated_us),
        last=last,
        finish=_max_step(a.finish, b.finish),
        origin=_min_origin(a.origin, b.origin),
    )


def partials(records: Iterable[Record]) -> dict[tuple[str, str], Partial]:
    """One partial per (tenant, trace id), for a batch of distinct, newly stored records.

    The same answer as folding :meth:`Partial.of` of each record with :func:`merge`, taken
    per trace in one pass (every append runs this on every event). Distinct records of a
    trace have distinct keys, so the greatest and least keys are unique."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        key = (record.tenant, record.trace_id)
        group = groups.get(key)
        if group is None:
            groups[key] = [record]
        else:
            group.append(record)
    return {key: _partial(group) for key, group in groups.items()}


def _partial(group: list[Record]) -> Partial:
    if len(group) == 1:
        return Partial.of(group[0])
    last = finish = origin = group[0]
    updated_us = last.time_us
    has_finish = last.finishing
    has_origin = last.domain is not None or last.domain_id is not None or last.user is not None
    started_us = last.start_us if last.start_us is not None else last.time_us
    for r in group[1:]:
        time_us = r.time_us
        start_us = r.start_us if r.start_us is not None else time_us
        if start_us < started_us:
            started_us = start_us
        if time_us > updated_us:
            updated_us = time_us
        key = (time_us, r.event_id)
        if key > (last.time_us, last.event_id):
            last = r
        if r.finishing and (not has_finish or key > (finish.time_us, finish.event_id)):
            finish, has_finish = r, True
        if (r.domain is not None or r.domain_id is not None or r.user is not None) and (
            not has_origin or key < (origin.time_us, origin.event_id)
        ):
            origin, has_origin = r, True
    return Partial(
        len(group),
        started_us,
        updated_us,
        Candidate.of(last),
        Candidate.of(finish) if has_finish else None,
        Origin(origin.time_us, origin.event_id, origin.domain, origin.domain_id, origin.user)
        if has_origin
        else None,
    )


def error_key(error: Any) -> bytes:
    """What makes two errors the same: equal JSON, whatever the order of its keys."""
    return orjson.dumps(error, option=orjson.OPT_SORT_KEYS)


def unique_errors(errors: Iterable[Any]) -> list[Any]:
    """Errors without repeats, first occurrence kept (equal JSON means equal error)."""
    seen: set[bytes] = set()
    out = []
    for error in errors:
        fingerprint = error_key(error)
        if fingerprint not in seen:
            seen.add(fingerprint)
            out.append(error)
    return out


def unique_paths(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(paths))


@dataclass(frozen=True, slots=True)
class Ends:
    """What a summary shows of one of its lists (errors or paths): how many there are, and
    the first and the last few, none in both, each end within
    :data:`~waymark.model.LIST_END_BYTES` of JSON."""

    count: int
    first: list[Any]
    last: list[Any]

    @classmethod
    def of(
        cls, count: int, head: Sequence[tuple[Any, int]], tail: Sequence[tuple[Any, int]]
    ) -> Ends:
        """From the list's first :data:`~waymark.model.LIST_ENDS` items and its last ones
        after those (as (item, size of its JSON)): the longest run of each end that fits
        (an item too large for it ends its run; a store need not read it)."""
        return cls(count, _fit(head), _fit(tail[::-1])[::-1])

    @classmethod
    def of_list(cls, items: Sequence[Any]) -> Ends:
        """The ends of a whole list (what :func:`summarize` has)."""
        sized = [(item, len(orjson.dumps(item))) for item in items]
        return cls.of(
            len(items), sized[:LIST_ENDS], sized[max(LIST_ENDS, len(items) - LIST_ENDS) :]
        )


def _fit(items: Iterable[tuple[Any, int]]) -> list[Any]:
    out, room = [], LIST_END_BYTES
    for item, size in items:
        room -= size
        if room < 0:
            break
        out.append(item)
    return out


def state_of(partial: Partial, now_us: int, stall_timeout_us: int | None) -> State:
    if partial.done:
        return State.FAILED if partial.deciding.status is Status.FAILED else State.SUCCEEDED
    if stall_timeout_us is not None and now_us - partial.updated_us > stall_timeout_us:
        return State.STALLED
    return State.RUNNING


def render(
    tenant: str,
    trace_id: str,
    partial: Partial,
    errors: Ends,
    paths: Ends,
    *,
    now_us: int,
    stall_timeout_us: int | None,
) -> Summary:
    """Turn a partial plus what it shows of the trace's errors and paths into a summary."""
    deciding = partial.deciding
    done = partial.done
    finished_us = deciding.time_us if done else None
    end_us = finished_us if finished_us is not None else partial.updated_us
    origin = partial.origin
    return Summary(
        trace_id=trace_id,
        tenant=tenant,
        done=done,
        trace_status=TraceStatus.FINISHED if done else deciding.trace_status,
        trace_event_status=(
            TraceEventStatus.FAILED if deciding.status is Status.FAILED else TraceEventStatus.OK
        ),
        outcome=deciding.status,
        state=state_of(partial, now_us, stall_timeout_us),
        started_at=iso(partial.started_us),
        updated_at=iso(partial.updated_us) or "",
        finished_at=iso(finished_us),
        duration_ms=max(0, end_us - partial.started_us) / 1000,
        event_count=partial.event_count,
        domain=origin.domain if origin else None,
        domain_id=origin.domain_id if origin else None,
        user=origin.user if origin else None,
        current=Current(
            event_id=deciding.event_id,
            component=deciding.component,
            stage=deciding.stage,
            operation=deciding.operation,
            status=deciding.status,
            time=iso(deciding.time_us) or "",
        ),
        error_count=errors.count,
        errors=errors.first,
        last_errors=errors.last,
        path_count=paths.count,
        paths=paths.first,
        last_paths=paths.last,
        links=Links.of(trace_id),
    )


HEAD_FIELDS = (
    "trace_id",
    "tenant",
    "done",
    "state",
    "trace_status",
    "trace_event_status",
    "outcome",
    "updated_at",
    "event_count",
    "current",
)
"""The fields of a summary that the change feed carries (its head)."""


def head(
    tenant: str, trace_id: str, partial: Partial, *, now_us: int, stall_timeout_us: int | None
) -> dict[str, Any]:
    """A summary's :data:`HEAD_FIELDS` as JSON-ready values, straight from its partial:
    what :func:`render` gives for them, without the trace's errors and paths."""
    deciding = partial.deciding
    done = partial.done
    return {
        "trace_id": trace_id,
        "tenant": tenant,
        "done": done,
        "state": state_of(partial, now_us, stall_timeout_us).value,
        "trace_status": TraceStatus.FINISHED.value if done else deciding.trace_status.value,
        "trace_event_status": (
            TraceEventStatus.FAILED if deciding.status is Status.FAILED else TraceEventStatus.OK
        ).value,
        "outcome": deciding.status.value,
        "updated_at": iso(partial.updated_us),
        "event_count": partial.event_count,
        "current": {
            "event_id": deciding.event_id,
            "component": deciding.component,
            "stage": deciding.stage,
            "operation": deciding.operation,
            "status": deciding.status.value,
            "time": iso(deciding.time_us),
        },
    }


def head_of(summary: Summary) -> dict[str, Any]:
    """The head of a rendered summary (:data:`HEAD_FIELDS`), as JSON-ready values."""
    return summary.model_dump(mode="json", include=set(HEAD_FIELDS))


def summarize(
    records: Iterable[Record],
    *,
    now_us: int,
    stall_timeout_us: int | None = None,
) -> Summary | None:
    """The summary rule itself: a pure function of the set of a trace's records.

    Written straight from the rule in docs/architecture.md, without :func:`merge`, so
    that the tests that compare the two check something. Records with the same event id count
    once (the first one given wins, as the store's insert does).
    """
    unique: dict[str, Record] = {}
    for record in records:
        unique.setdefault(record.event_id, record)
    ordered = sorted(unique.values(), key=lambda r: r.key)
    if not ordered:
        return None
    finishing = [r for r in ordered if r.finishing]
    deciding = finishing[-1] if finishing else ordered[-1]
    with_origin = [
        r for r in ordered if r.domain is not None or r.domain_id is not None or r.user is not None
    ]
    origin = with_origin[0] if with_origin else None
    partial = Partial(
        event_count=len(ordered),
        started_us=min(r.start_us if r.start_us is not None else r.time_us for r in ordered),
        updated_us=max(r.time_us for r in ordered),
        last=Candidate.of(ordered[-1]),
        finish=Candidate.of(deciding) if finishing else None,
        origin=(
            Origin(origin.time_us, origin.event_id, origin.domain, origin.domain_id, origin.user)
            if origin
            else None
        ),
    )
    return render(
        ordered[0].tenant,
        ordered[0].trace_id,
        partial,
        Ends.of_list(unique_errors(error for r in ordered for error in r.errors)),
        Ends.of_list(unique_paths(path for r in ordered for path in r.paths)),
        now_us=now_us,
        stall_timeout_us=stall_timeout_us,
    )
