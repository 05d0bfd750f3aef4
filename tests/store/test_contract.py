"""The store contract: what every backend must do, run against SQLite and PostgreSQL."""

from __future__ import annotations

import secrets

import pytest

from tests.store.conftest import rec, write_concurrently
from waymark.errors import BadCursor
from waymark.model import State, Status, now_us
from waymark.store import open_store
from waymark.store.base import DatasetDetails, EventQuery, TraceQuery
from waymark.store.sql import SqlStore
from waymark.summary import head, head_of

# Ids that sort differently bytewise than in a case- or accent-aware collation.
AWKWARD_IDS = ["a", "B", "_x", "é", "Z9", "-1", "ab", "中"]


def all_events(store: SqlStore, tenant: str, trace_id: str, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = store.events(tenant, trace_id, limit=limit, cursor=cursor)
        ids += [item["event_id"] for item in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


# -- appends -------------------------------------------------------------------------------


def test_same_event_twice_in_one_batch_is_stored_once(store: SqlStore) -> None:
    first = rec("t", "e1", component="first")
    again = rec("t", "e1", component="second")
    result = store.append([first, again])
    assert result.inserted == 1
    assert result.traces == [("default", "t")]
    summary = store.summary("default", "t")
    assert summary is not None
    assert summary.event_count == 1
    assert summary.current.component == "first"
    assert [e["component"] for e in store.events("default", "t").items] == ["first"]


def test_same_event_in_a_later_batch_changes_nothing(store: SqlStore) -> None:
    store.append([rec("t", "e1", at=10), rec("t", "e2", at=20, trace_status="FINISHED")])
    before = store.summary("default", "t")
    result = store.append([rec("t", "e2", at=99, status="FAILED"), rec("t", "e1", at=5)])
    assert result.inserted == 0
    assert result.traces == []
    assert store.summary("default", "t") == before
    assert [e["time"] for e in store.events("default", "t").items] == [
        "1970-01-01T00:00:00.000010Z",
        "1970-01-01T00:00:00.000020Z",
    ]


def test_a_batch_mixing_new_and_stored_events_adds_only_the_new(store: SqlStore) -> None:
    store.append([rec("t", "e1", at=10)])
    result = store.append([rec("t", "e1", at=10), rec("t", "e2", at=20), rec("u", "e3")])
    assert result.inserted == 2
    assert result.traces == [("default", "t"), ("default", "u")]
    summary = store.summary("default", "t")
    assert summary is not None and summary.event_count == 2


def test_the_partials_an_append_returns_are_the_stored_ones(store: SqlStore) -> None:
    store.append([rec("t", "e1", at=10, user="ann"), rec("u", "e2", at=5)])
    assert store.append([rec("w", "e0")]).partials is None  # not asked for
    result = store.append(
        [rec("t", "e3", at=30, trace_status="FINISHED", status="FAILED"), rec("v", "e4", at=7)],
        partials=True,
    )
    if result.partials is None:  # this backend does not return them: the feed reads instead
        return
    assert sorted(result.partials) == result.traces == [("default", "t"), ("default", "v")]
    for (tenant, trace_id), partial in result.partials.items():
        stored = store.summary(tenant, trace_id)
        assert stored is not None
        stall = store.pipelines.default.stall_timeout_us
        assert head(tenant, trace_id, partial, now_us=now_us(), stall_timeout_us=stall) == (
            head_of(stored)
        )
    assert result.partials[("default", "t")].event_count == 2


def test_a_failing_batch_stores_nothing(store: SqlStore) -> None:
    store.append([rec("t", "e1", at=10, component="kept")])
    before = store.summary("default", "t")
    good = rec("t", "e2", at=20, path="/in")
    broken = rec("u", "e3", at=30)._replace(paths=(None,))
    with pytest.raises(Exception):  # noqa: B017  (each backend raises its own integrity error)
        store.append([good, broken])
    assert store.summary("default", "t") == before
    assert store.summary("default", "u") is None
    assert all_events(store, "default", "t", 10) == ["e1"]
    assert store.paths("default", "/in") == []
    # The store still works after the failure.
    assert store.append([good]).inserted == 1


def test_concurrent_writers_of_overlapping_batches(store: SqlStore) -> None:
    """Threads append the same events in opposite orders: no deadlock, each stored once."""
    records = [
        rec(f"t{i % 7}", f"e{i:03}", at=i, trace_status="FINISHED" if i == 60 else "CONTINUE")
        for i in range(80)
    ]
    batches = [records[i : i + 20] for i in range(0, 80, 20)]
    orders = [batches, batches[::-1], [b[::-1] for b in batches], batches[1:] + batches[:1]]
    assert sum(write_concurrently(store, orders)) == 80
    counts = {s.trace_id: s.event_count for s in store.summaries("default", ["t0", "t6"])}
    assert counts == {"t0": 12, "t6": 11}


# -- reads ---------------------------------------------------------------------------------


def test_summary_of_an_unknown_trace_is_none(store: SqlStore) -> None:
    store.append([rec("t", "e1")])
    assert store.summary("default", "nope") is None
    assert [s.trace_id for s in store.summaries("default", ["nope", "t"])] == ["t"]


def test_events_page_in_key_order_without_gaps_or_repeats(store: SqlStore) -> None:
    records = [rec("t", eid, at=7) for eid in AWKWARD_IDS]  # same time: ids decide
    records += [rec("t", f"late-{i}", at=100 + i % 3) for i in range(13)]
    store.append(records[::-1])
    expected = [r.event_id for r in sorted(records, key=lambda r: r.key)]
    for limit in (1, 4, 7, 100):
        assert all_events(store, "default", "t", limit) == expected


def test_events_carry_the_stored_document_and_receipt_time(store: SqlStore) -> None:
    store.append([rec("t", "e1", body={"files_incoming": ["s3://a"]}, attributes={"n": 1})])
    (item,) = store.events("default", "t").items
    assert item["body"] == {"files_incoming": ["s3://a"]}
    assert item["attributes"] == {"n": 1}
    assert item["received_at"] == "1970-01-01T00:00:05.000000Z"


def test_a_cursor_not_given_out_is_refused(store: SqlStore) -> None:
    store.append([rec("t", "e1")])
    with pytest.raises(BadCursor):
        store.events("default", "t", cursor="not-a-cursor")
    with pytest.raises(BadCursor):
        store.search("default", TraceQuery(), cursor="WzEsMl0")  # [1,2]: wrong types


def _search_ids(store: SqlStore, query: TraceQuery, tenant: str = "default") -> list[str]:
    return [s.trace_id for s in store.search(tenant, query, limit=1000).items]


def test_search_filters(store: SqlStore) -> None:
    store.append(
        [
            rec("a", "a1", at=10, domain="ds", domain_id="ds/1", user="ann", component="up"),
            rec("a", "a2", at=20, component="route", stage="ROUTE"),
            rec("b", "b1", at=30, domain="ds", domain_id="ds/2", component="up"),
            rec("b", "b2", at=40, status="FAILED", trace_status="FINISHED", stage="WRITE"),
            rec("c", "c1", at=50, domain="other", user="bob", trace_status="FINISHED"),
        ]
    )
    assert _search_ids(store, TraceQuery()) == ["c", "b", "a"]
    assert _search_ids(store, TraceQuery(domain="ds")) == ["b", "a"]
    assert _search_ids(store, TraceQuery(domain_id="ds/1")) == ["a"]
    assert _search_ids(store, TraceQuery(component="route")) == ["a"]
    assert _search_ids(store, TraceQuery(stage="WRITE")) == ["b"]
    assert _search_ids(store, TraceQuery(user="bob")) == ["c"]
    assert _search_ids(store, TraceQuery(done=True)) == ["c", "b"]
    assert _search_ids(store, TraceQuery(done=False)) == ["a"]
    assert _search_ids(store, TraceQuery(state=State.FAILED)) == ["b"]
    assert _search_ids(store, TraceQuery(state=State.SUCCEEDED)) == ["c"]
    assert _search_ids(store, TraceQuery(since_us=40, until_us=50)) == ["b"]
    assert _search_ids(store, TraceQuery(domain="ds", done=True)) == ["b"]


def test_search_pages_most_recent_first_without_gaps_or_repeats(store: SqlStore) -> None:
    # Several traces share an update time: the trace id breaks the tie, bytewise.
    store.append([rec(tid, f"e-{tid}", at=100 + i % 4) for i, tid in enumerate(AWKWARD_IDS * 2)])
    store.append([rec(f"t{i:02}", f"f{i}", at=i) for i in range(17)])
    expected = _search_ids(store, TraceQuery())
    assert len(expected) == len(AWKWARD_IDS) + 17
    for limit in (1, 5, 50):
        seen: list[str] = []
        cursor = None
        while True:
            page = store.search("default", TraceQuery(), limit=limit, cursor=cursor)
            seen += [s.trace_id for s in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected
    updated = [s.updated_at for s in store.search("default", TraceQuery(), limit=100).items]
    assert updated == sorted(updated, reverse=True)


def test_path_lookup_newest_first(store: SqlStore) -> None:
    store.append(
        [
            rec("t1", "e1", at=10, path="s3://in/file.csv"),
            rec("t2", "e2", at=30, inputs=["s3://in/file.csv"], outputs=["s3://out/x"]),
            rec("t3", "e3", at=20, body={"files_outgoing": ["s3://in/file.csv"]}),
            rec("t4", "e4", at=40, path="s3://in/other.csv"),
        ]
    )
    hits = store.paths("default", "s3://in/file.csv")
    assert [(h.trace_id, h.event_id) for h in hits] == [("t2", "e2"), ("t3", "e3"), ("t1", "e1")]
    assert hits[0].at == "1970-01-01T00:00:00.000030Z"
    assert [h.trace_id for h in store.paths("default", "s3://in/file.csv", limit=1)] == ["t2"]
    assert store.paths("default", "s3://nowhere") == []


def test_path_lookup_answers_the_latest_arrival_first(store: SqlStore) -> None:
    """A re-upload of the same key, reported by a producer whose clock is behind, is the
    first answer: lookups go by when events were received, not by their event time."""
    key = "s3://in/report.csv"
    store.append([rec("first", "e1", at=5_000, received_us=10_000, path=key)])
    store.append([rec("again", "e2", at=1_000, received_us=20_000, path=key)])
    store.append([rec("other", "e3", at=9_000, received_us=30_000, path="s3://in/else.csv")])
    hits = store.paths("default", key)
    assert [h.trace_id for h in hits] == ["again", "first"]
    assert (hits[0].at, hits[0].received_at) == (
        "1970-01-01T00:00:00.001000Z",
        "1970-01-01T00:00:00.020000Z",
    )
    assert [h.trace_id for h in store.paths("default", key, limit=1)] == ["again"]


def test_search_by_component_or_stage_matches_any_event_of_a_trace(store: SqlStore) -> None:
    store.append(
        [
            rec("a", "a1", at=10, component="uploader", stage="UPLOAD"),
            rec("a", "a2", at=20, component="converter", stage="CONVERT"),
            rec("a", "a3", at=30, component="indexer", stage="INDEX"),
            rec("b", "b1", at=40, component="uploader", stage="UPLOAD"),
            rec("b", "b2", at=50, component="writer", trace_status="FINISHED"),
            rec("c", "c1", at=60, component="converter", stage="UPLOAD"),
            rec("a", "a1", at=10, component="ignored-repeat", tenant="other"),
        ]
    )
    assert _search_ids(store, TraceQuery(component="uploader")) == ["b", "a"]
    assert _search_ids(store, TraceQuery(component="converter")) == ["c", "a"]
    assert _search_ids(store, TraceQuery(stage="UPLOAD")) == ["c", "b", "a"]
    # each filter on its own: an event of the component, an event at the stage
    assert _search_ids(store, TraceQuery(component="converter", stage="UPLOAD")) == ["c", "a"]
    assert _search_ids(store, TraceQuery(component="uploader", done=True)) == ["b"]
    assert _search_ids(store, TraceQuery(component="nobody")) == []
    assert _search_ids(store, TraceQuery(component="uploader"), tenant="other") == []
    assert _search_ids(store, TraceQuery(component="ignored-repeat"), tenant="other") == ["a"]
    # a re-sent event adds nothing
    store.append([rec("b", "b1", at=40, component="uploader", stage="UPLOAD")])
    assert _search_ids(store, TraceQuery(component="uploader")) == ["b", "a"]


def test_search_by_a_common_component_pages_by_recency(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A component named by more traces than one lookup reads filters the summaries read
    by recency instead; both ways give the same pages."""
    store.append(
        [rec(f"t{i:02}", f"e{i}", at=i, component="router" if i % 3 else "writer")
         for i in range(40)]
    )  # fmt: skip
    wanted = [f"t{i:02}" for i in reversed(range(40)) if i % 3]

    def pages() -> list[str]:
        ids, cursor = [], None
        while True:
            page = store.search("default", TraceQuery(component="router"), limit=7, cursor=cursor)
            ids += [s.trace_id for s in page.items]
            cursor = page.next_cursor
            if cursor is None:
                return ids

    assert pages() == wanted
    monkeypatch.setattr(store, "step_lookup", 5)
    assert pages() == wanted


def test_a_path_longer_than_an_index_entry_is_found(store: SqlStore) -> None:
    long_path = "s3://bucket/" + secrets.token_hex(4980)  # 9,972 random characters
    store.append([rec("t", "e1", path=long_path, inputs=[long_path + "/in"])])
    assert [h.event_id for h in store.paths("default", long_path)] == ["e1"]
    assert [h.event_id for h in store.paths("default", long_path + "/in")] == ["e1"]
    assert store.paths("default", long_path[:-1]) == []


def test_lineage_of_a_trace(store: SqlStore) -> None:
    store.append(
        [
            rec("t", "e1", at=10, inputs=["raw"], outputs=["clean"]),
            rec("t", "e2", at=20, body={"files_incoming": ["clean"], "files_outgoing": ["idx"]}),
            rec("t", "e3", at=30, path="report"),
        ]
    )
    lineage = store.lineage("default", "t")
    assert lineage is not None
    assert lineage.nodes == ["raw", "clean", "idx", "report"]
    assert lineage.edges == [
        {"from": "raw", "to": "clean", "event_id": "e1"},
        {"from": "clean", "to": "idx", "event_id": "e2"},
    ]
    assert store.lineage("default", "unknown") is None


def test_summary_errors_and_paths_in_key_order(store: SqlStore) -> None:
    oops = {"message": {"en": "oops"}}
    late = {"message": {"en": "late"}}
    store.append([rec("t", "e2", at=20, errors=[late, oops], path="/b")])
    store.append([rec("t", "e1", at=10, errors=[oops], path="/a")])
    summary = store.summary("default", "t")
    assert summary is not None
    assert summary.errors == [oops, late]
    assert summary.paths == ["/a", "/b"]


def test_find_events(store: SqlStore) -> None:
    store.append(
        [
            rec("t1", "e1", at=10, record_id="r1", stage="INGEST", status="SUCCESS"),
            rec("t1", "e2", at=20, record_id="r1", stage="WRITE", status="FAILED"),
            rec("t2", "e3", at=15, record_id="r2", stage="INGEST", status="FAILED"),
            rec("t2", "e4", at=25, record_id="r1", stage="INDEX", status="SKIPPED"),
        ]
    )

    def ids(query: EventQuery, limit: int = 100) -> list[str]:
        out: list[str] = []
        cursor = None
        while True:
            page = store.find_events("default", query, limit=limit, cursor=cursor)
            out += [item["event_id"] for item in page.items]
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    assert ids(EventQuery(record_id="r1")) == ["e1", "e2", "e4"]
    assert ids(EventQuery(record_id="r1"), limit=1) == ["e1", "e2", "e4"]
    assert ids(EventQuery(stages=("INGEST",))) == ["e1", "e3"]
    assert ids(EventQuery(statuses=("FAILED", "SKIPPED"))) == ["e3", "e2", "e4"]
    assert ids(EventQuery(trace_id="t2", statuses=("FAILED",))) == ["e3"]
    assert ids(EventQuery(record_id="r1", stages=("WRITE", "INDEX"))) == ["e2", "e4"]


def test_dataset_details_newest_wins(store: SqlStore) -> None:
    def details(time_us: int, count: int, version: str | None = "1") -> DatasetDetails:
        return DatasetDetails("default", "t", "ds", version, "csv", count, time_us, time_us + 1)

    store.put_dataset_details([details(10, 5), details(10, 7, version=None)])
    store.put_dataset_details([details(30, 9)])
    store.put_dataset_details([details(20, 1)])  # older than the stored one: ignored
    found = store.dataset_details("default", trace_id="t")
    assert [(d.dataset_version_id, d.record_count, d.time_us) for d in found] == [
        (None, 7, 10),
        ("1", 9, 30),
    ]
    assert store.dataset_details("default", dataset_id="ds") == found
    assert store.dataset_details("default", dataset_id="other") == []
    with pytest.raises(ValueError):
        store.dataset_details("default")


def test_dead_letters_keep_raw_bytes_newest_first(store: SqlStore) -> None:
    store.park([("waymark.events.a", "not JSON", b"\xff\x00{")])
    store.park([("statuschangedtopic", "trace_id: field required", b'{"x": 1}')])
    letters = store.dead_letters()
    assert [(d.subject, d.reason, d.raw) for d in letters] == [
        ("statuschangedtopic", "trace_id: field required", b'{"x": 1}'),
        ("waymark.events.a", "not JSON", b"\xff\x00{"),
    ]
    assert letters[0].id > letters[1].id
    assert len(store.dead_letters(limit=1)) == 1


def test_dead_letters_are_read_and_discarded_by_id(store: SqlStore) -> None:
    store.park([("s", f"reason {i}", b"x%d" % i) for i in range(3)])
    first, second, third = sorted(x.id for x in store.dead_letters())
    assert [x.raw for x in store.dead_letters(ids=[third, first])] == [b"x2", b"x0"]
    assert store.dead_letters(ids=[]) == []
    assert store.discard_dead_letters([first, third, third + 100]) == 2
    assert [x.id for x in store.dead_letters()] == [second]
    assert store.discard_dead_letters([]) == 0
    assert store.discard_dead_letters([first]) == 0


# -- tenants -------------------------------------------------------------------------------


def test_every_query_is_tenant_scoped(store: SqlStore) -> None:
    """Two tenants use the same trace and event ids; neither sees the other's rows."""
    for tenant, status in (("north", "SUCCESS"), ("south", "FAILED")):
        store.append(
            [
                rec(
                    "t",
                    "e1",
                    tenant=tenant,
                    at=10,
                    status=status,
                    component=tenant,
                    stage=tenant,
                    domain=tenant,
                    domain_id=f"{tenant}/1",
                    user=tenant,
                    record_id="r",
                    path="/shared",
                    inputs=[f"in-{tenant}"],
                    outputs=[f"out-{tenant}"],
                    trace_status="FINISHED",
                )
            ]
        )
        store.put_dataset_details([DatasetDetails(tenant, "t", "ds", "1", tenant, 1, 10, 10)])
    for tenant, other in (("north", "south"), ("south", "north")):
        summary = store.summary(tenant, "t")
        assert summary is not None
        assert (summary.tenant, summary.event_count, summary.current.component) == (
            tenant,
            1,
            tenant,
        )
        assert summary.outcome is (Status.SUCCESS if tenant == "north" else Status.FAILED)
        assert [e["component"] for e in store.events(tenant, "t").items] == [tenant]
        assert [s.domain for s in store.search(tenant, TraceQuery()).items] == [tenant]
        for query in (
            TraceQuery(domain=other),
            TraceQuery(domain_id=f"{other}/1"),
            TraceQuery(component=other),
            TraceQuery(stage=other),
            TraceQuery(user=other),
        ):
            assert store.search(tenant, query).items == []
        assert len(store.paths(tenant, "/shared")) == 1
        assert store.paths(tenant, f"in-{other}") == []
        lineage = store.lineage(tenant, "t")
        assert lineage is not None and f"in-{other}" not in lineage.nodes
        found = store.find_events(tenant, EventQuery(record_id="r")).items
        assert [e["component"] for e in found] == [tenant]
        assert [d.dataset_type for d in store.dataset_details(tenant, trace_id="t")] == [tenant]
        assert [d.dataset_type for d in store.dataset_details(tenant, dataset_id="ds")] == [tenant]
    assert store.summary("west", "t") is None
    assert store.events("west", "t").items == []
    assert store.lineage("west", "t") is None


# -- commits seen from elsewhere --------------------------------------------------------------


def test_the_commit_marker_changes_with_every_commit_from_anywhere(
    store_url: str, store: SqlStore
) -> None:
    """A backend that gives a commit marker changes it on each commit, by this store or by
    another on the same database, and not otherwise; one that cannot tell gives None."""
    marker = store.commit_marker()
    if marker is None:  # this backend cannot tell: waiters fall back on their timer
        return
    assert store.commit_marker() == marker
    store.append([rec("t", "e1")])
    assert store.commit_marker() != marker
    marker = store.commit_marker()
    store.put_dataset_details([DatasetDetails("default", "t", "ds", None, "csv", 1, 1, 2)])
    assert store.commit_marker() != marker
    marker = store.commit_marker()
    store.summary("default", "t")
    assert store.commit_marker() == marker  # a read is no commit
    other = open_store(store_url)
    try:
        other.append([rec("t", "e2")])
    finally:
        other.close()
    assert store.commit_marker() != marker
