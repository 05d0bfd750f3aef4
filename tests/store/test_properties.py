"""The summary rule at store level: for any set of events, however it is permuted,
duplicated, split into batches or spread over concurrent writers, every stored
summary equals :func:`waymark.summary.summarize` of the trace's events.

One store per backend for the module; each example writes under a tenant of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import pg_schema
from tests.store.conftest import BACKENDS, write_concurrently
from waymark.ingest import to_records
from waymark.model import Event, Record, Status, TraceStatus, to_record
from waymark.pipelines import Pipeline, Pipelines
from waymark.store import open_store
from waymark.store.sql import SqlStore
from waymark.summary import summarize

# No stall timeout: a summary's state then depends on its events alone, not on the clock.
TIMELESS = Pipelines(default=Pipeline(stall_timeout_s=None))


@pytest.fixture(scope="module", params=BACKENDS)
def shared_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlStore]:
    if request.param == "postgresql":
        place: contextlib.AbstractContextManager[str] = pg_schema()
    else:
        place = contextlib.nullcontext(f"sqlite:///{tmp_path_factory.mktemp('props')}/w.db")
    with place as url:
        store = open_store(url, TIMELESS)
        assert isinstance(store, SqlStore)
        try:
            yield store
        finally:
            store.close()


# Ids chosen to sort differently bytewise than under a locale collation; few times, so
# that keys tie on time and the event id decides.
ids = st.text(alphabet="aAbB_-9é中", min_size=1, max_size=4)
times = st.sampled_from([1_000, 2_000, 3_000, 4_000])
names = st.none() | st.sampled_from(["router", "writer", "WORKFLOW", "indexer"])
errors = st.none() | st.lists(
    st.sampled_from([{"message": {"en": "disk full"}}, {"message": {"nb": "feil"}}]),
    min_size=1,
    max_size=2,
)
paths = st.none() | st.lists(st.sampled_from(["s3://a", "s3://b", "/c"]), min_size=1, max_size=2)


@st.composite
def event_fields(draw: st.DrawFn) -> dict[str, Any]:
    def moment() -> datetime | None:
        us = draw(st.none() | times)
        return None if us is None else datetime.fromtimestamp(us / 1000, UTC)

    return {
        "trace_id": draw(st.sampled_from(["t1", "t2", "T1"])),
        "status": draw(st.sampled_from(list(Status))),
        "trace_status": draw(st.sampled_from(list(TraceStatus))),
        "component": draw(names),
        "stage": draw(names),
        "domain": draw(st.none() | st.sampled_from(["d1", "d2"])),
        "user": draw(st.none() | st.sampled_from(["ann", "bob"])),
        "errors": draw(errors),
        "path": draw(st.none() | st.sampled_from(["/c", "/d"])),
        "inputs": draw(paths),
        "outputs": draw(paths),
        "start_time": moment(),
        "end_time": moment(),
    }


@st.composite
def event_sets(draw: st.DrawFn) -> list[tuple[dict[str, Any], int, bool]]:
    """Distinct events (unique ids), each with its message timestamp and finishing verdict."""
    event_ids = draw(st.lists(ids, min_size=1, max_size=12, unique=True))
    return [
        ({**draw(event_fields()), "event_id": eid}, draw(times), draw(st.booleans()))
        for eid in event_ids
    ]


def records_of(events: list[tuple[dict[str, Any], int, bool]], tenant: str) -> list[Record]:
    return [
        to_record(Event(**fields), tenant, 9_000, timestamp_us=stamp, finishing=finishing)
        for fields, stamp, finishing in events
    ]


def check_summaries(store: SqlStore, tenant: str, records: list[Record]) -> None:
    by_trace: dict[str, list[Record]] = {}
    for record in records:
        by_trace.setdefault(record.trace_id, []).append(record)
    stored = {s.trace_id: s for s in store.summaries(tenant, sorted(by_trace))}
    assert sorted(stored) == sorted(by_trace)
    for trace_id, trace_records in by_trace.items():
        expected = summarize(trace_records, now_us=0, stall_timeout_us=None)
        assert stored[trace_id] == expected


def batches_of(draw: st.DrawFn, records: list[Record]) -> list[list[Record]]:
    """A permutation of the records with some repeated, cut into batches."""
    repeats = draw(st.lists(st.sampled_from(records), max_size=len(records)))
    stream = draw(st.permutations([*records, *repeats]))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges) if b > a]


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(events=event_sets(), data=st.data())
def test_any_order_duplication_and_batching_gives_the_pure_summary(
    shared_store: SqlStore, events: list[tuple[dict[str, Any], int, bool]], data: st.DataObject
) -> None:
    tenant = uuid.uuid4().hex
    records = records_of(events, tenant)
    for batch in batches_of(data.draw, records):
        shared_store.append(batch)
    check_summaries(shared_store, tenant, records)
    stored = [e["event_id"] for t in ("t1", "t2", "T1") for e in _events(shared_store, tenant, t)]
    assert sorted(stored) == sorted(r.event_id for r in records)


def _events(store: SqlStore, tenant: str, trace_id: str) -> list[dict[str, Any]]:
    return store.events(tenant, trace_id, limit=1000).items


@PROPERTY
@given(events=event_sets(), data=st.data())
def test_concurrent_writers_give_the_pure_summary(
    shared_store: SqlStore, events: list[tuple[dict[str, Any], int, bool]], data: st.DataObject
) -> None:
    tenant = uuid.uuid4().hex
    records = records_of(events, tenant)
    writers = [batches_of(data.draw, records) for _ in range(data.draw(st.integers(2, 4)))]
    write_concurrently(shared_store, writers)
    check_summaries(shared_store, tenant, records)


@st.composite
def requests(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Requests of one trace, each a list of events; some events carry times, most not."""
    event_ids = draw(st.lists(ids, min_size=1, max_size=12, unique=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(event_ids)), max_size=3)))
    edges = [0, *cuts, len(event_ids)]
    out = []
    for a, b in itertools.pairwise(edges):
        if b > a:
            out.append(
                [
                    {**draw(event_fields()), "trace_id": "t1", "event_id": eid}
                    for eid in event_ids[a:b]
                ]
            )
    for request in out:
        for fields in request:
            if draw(st.booleans()):
                fields["start_time"] = fields["end_time"] = None
    return out


def _timeless(fields: dict[str, Any]) -> bool:
    return fields["start_time"] is None and fields["end_time"] is None


@PROPERTY
@given(sent=requests(), data=st.data())
def test_timeless_events_of_a_request_keep_the_order_they_were_sent_in(
    shared_store: SqlStore, sent: list[list[dict[str, Any]]], data: st.DataObject
) -> None:
    tenant = uuid.uuid4().hex
    records: list[Record] = []
    for n, request in enumerate(sent):  # requests received a second apart
        events = [Event(**fields) for fields in request]
        records += to_records(events, tenant, TIMELESS, received_us=(n + 1) * 1_000_000_000)
    for batch in batches_of(data.draw, records):
        shared_store.append(batch)
    check_summaries(shared_store, tenant, records)
    position = {e["event_id"]: i for i, e in enumerate(_events(shared_store, tenant, "t1"))}
    for request in sent:
        timeless = [f["event_id"] for f in request if _timeless(f)]
        assert sorted(timeless, key=position.__getitem__) == timeless
    last = sent[-1][-1]
    if all(_timeless(f) for r in sent for f in r) and not any(r.finishing for r in records):
        summary = shared_store.summary(tenant, "t1")
        assert summary is not None and summary.current.event_id == last["event_id"]
