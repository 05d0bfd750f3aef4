"""The store contract: what every backend must do, run against SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.store.conftest import rec, write_concurrently
from waymark.errors import BadCursor
from waymark.model import Record, State, Status, now_us
from waymark.pipelines import Pipeline, Pipelines
from waymark.store import open_store
from waymark.store.base import (
    LINEAGE_SCAN_EVENTS,
    ApiKey,
    DatasetDetails,
    EventQuery,
    Page,
    TraceQuery,
    encode_cursor,
)
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


def test_an_append_says_which_traces_it_turned_done(store: SqlStore) -> None:
    assert store.append([rec("t", "e1", at=10, status="IN_PROGRESS")]).turned == []
    done = rec("t", "e2", at=20, status="SUCCESS", trace_status="FINISHED")
    assert store.append([done, rec("u", "e3", at=5)]).turned == ["SUCCEEDED"]
    assert store.append([done]).turned == []  # a repeat turns nothing
    earlier = rec("t", "e4", at=15, status="FAILED", trace_status="FINISHED")
    assert store.append([earlier]).turned == []  # not the deciding event
    later = rec("t", "e5", at=30, status="FAILED", trace_status="FINISHED")
    assert store.append([later]).turned == ["FAILED"]  # the outcome turned
    again = rec("t", "e6", at=40, status="FAILED", trace_status="FINISHED")
    assert store.append([again]).turned == []  # decided anew, the same outcome


def test_concurrent_appends_count_each_trace_turned_once(store: SqlStore) -> None:
    """Four writers each finish the same ten traces, at once: each trace turned once."""
    writers = [
        [[rec(f"t{i}", f"w{w}-t{i}", at=w, status="SUCCESS", trace_status="FINISHED")]
         for i in range(10)]
        for w in range(4)
    ]  # fmt: skip
    start = threading.Barrier(len(writers))

    def write(batches: list[list[Record]]) -> list[str]:
        start.wait()
        return [state for batch in batches for state in store.append(batch).turned]

    with ThreadPoolExecutor(len(writers)) as pool:
        turned = [state for states in pool.map(write, writers) for state in states]
    assert turned == ["SUCCEEDED"] * 10


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


def test_overview_counts_traces_by_state_per_dataset_failing_first(store: SqlStore) -> None:
    now = now_us()
    fin = {"trace_status": "FINISHED"}
    store.append(
        [
            rec("ok1", "o1", at=now - 10_000_000, domain_id="parking/1", **fin),
            rec("ok2", "o2", at=now - 20_000_000, domain_id="parking/2", **fin),
            rec("run", "r1", at=now - 5_000_000, domain_id="parking/2"),
            rec("bad1", "b1", at=now - 7_000_000, domain_id="bikes/1", status="FAILED", **fin),
            rec("ok3", "o3", at=now - 8_000_000, domain_id="bikes", **fin),
            rec("plain", "p1", at=now - 9_000_000),
            rec("old", "x1", at=now - 3_600_000_000, domain_id="trees/1", status="FAILED", **fin),
        ]
    )
    view = store.overview("default", now - 60_000_000)
    assert view.counts == {"RUNNING": 2, "SUCCEEDED": 3, "FAILED": 1, "STALLED": 0}
    assert [(d.dataset, d.counts, d.total) for d in view.datasets] == [
        ("bikes", {"RUNNING": 0, "SUCCEEDED": 1, "FAILED": 1, "STALLED": 0}, 2),
        ("parking", {"RUNNING": 1, "SUCCEEDED": 2, "FAILED": 0, "STALLED": 0}, 3),
        (None, {"RUNNING": 1, "SUCCEEDED": 0, "FAILED": 0, "STALLED": 0}, 1),
    ]
    assert view.datasets[1].updated_us == now - 5_000_000
    for state in State:  # the same verdicts as search's
        found = _search_ids(store, TraceQuery(state=state, since_us=now - 60_000_000))
        assert view.counts[state.value] == len(found), state
    assert (view.more_datasets, view.truncated) == (0, False)
    wider = store.overview("default", now - 7 * 86_400_000_000, limit=1)
    assert [d.dataset for d in wider.datasets] == ["bikes"]  # trees: as many failed, fewer traces
    assert wider.more_datasets == 3 and wider.counts["FAILED"] == 2
    assert store.overview("other", 0).counts == dict.fromkeys(view.counts, 0)


def test_overview_counts_a_silent_trace_as_stalled(store_url: str) -> None:
    rules = Pipelines(default=Pipeline(stall_timeout_s=60))
    stalling = open_store(store_url, rules)
    try:
        now = now_us()
        stalling.append([rec("quiet", "q1", at=now - 120_000_000, domain_id="d/1")])
        stalling.append([rec("busy", "b1", at=now - 1_000_000, domain_id="d/1")])
        view = stalling.overview("default", now - 3_600_000_000)
        assert view.datasets[0].counts == {"RUNNING": 1, "SUCCEEDED": 0, "FAILED": 0, "STALLED": 1}
    finally:
        stalling.close()


def test_overview_counts_only_the_most_recent_traces_and_says_so(store: SqlStore) -> None:
    store.overview_traces = 3
    now = now_us()
    store.append([rec(f"t{i}", f"e{i}", at=now - i * 1_000_000, domain_id="d") for i in range(5)])
    view = store.overview("default", now - 60_000_000)
    assert view.truncated and sum(view.counts.values()) == 3
    assert not store.overview("default", now - 2_500_000).truncated  # t0, t1, t2: all of it


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
            rec("t", "e1", at=10, inputs=["raw"], outputs=["clean"], component="conv"),
            rec("t", "e2", at=20, body={"files_incoming": ["clean"], "files_outgoing": ["idx"]}),
            rec("t", "e3", at=30, path="report"),  # names a path, reads and writes nothing
            rec("t", "e4", at=40, inputs=["idx", "idx"], status="FAILED"),  # only read
        ]
    )
    lineage = store.lineage("default", "t")
    assert lineage is not None and lineage.next_cursor is None
    assert [n["id"] for n in lineage.nodes] == [
        "step:e1", "path:raw", "path:clean", "step:e2", "path:idx", "step:e4",
    ]  # fmt: skip
    assert lineage.nodes[0] == {
        "id": "step:e1",
        "kind": "step",
        "event_id": "e1",
        "component": "conv",
        "stage": None,
        "operation": None,
        "status": "SUCCESS",
        "time": "1970-01-01T00:00:00.000010Z",
    }
    assert lineage.nodes[1] == {"id": "path:raw", "kind": "path", "path": "raw"}
    assert lineage.nodes[5]["status"] == "FAILED"
    assert [(e["from"], e["to"]) for e in lineage.edges] == [
        ("path:raw", "step:e1"),
        ("step:e1", "path:clean"),
        ("path:clean", "step:e2"),
        ("step:e2", "path:idx"),
        ("path:idx", "step:e4"),
    ]
    assert store.lineage("default", "unknown") is None
    past_the_end = store.lineage("default", "t", cursor=encode_cursor(1 << 40, "zz", 0))
    assert past_the_end is not None and past_the_end.nodes == []


Edges = set[tuple[str, str]]


def all_lineage(
    store: SqlStore, trace_id: str, limit: int
) -> tuple[list[list[str]], Edges, dict[str, dict[str, object]]]:
    """Every page's node ids, every edge, every node by id."""
    pages: list[list[str]] = []
    edges: Edges = set()
    nodes: dict[str, dict[str, object]] = {}
    cursor = None
    while True:
        page = store.lineage("default", trace_id, limit=limit, cursor=cursor)
        assert page is not None
        ids = [n["id"] for n in page.nodes]
        assert len(ids) <= limit and len(page.edges) <= limit
        assert len(set(ids)) == len(ids)
        for edge in page.edges:  # both ends of every edge are on its page
            assert edge["from"] in ids and edge["to"] in ids
            assert (edge["from"], edge["to"]) not in edges
            edges.add((edge["from"], edge["to"]))
        nodes.update({n["id"]: n for n in page.nodes})
        pages.append(ids)
        if page.next_cursor is None:
            return pages, edges, nodes
        cursor = page.next_cursor


def test_lineage_grows_with_inputs_and_outputs_not_their_product(store: SqlStore) -> None:
    """3 steps of 1,000 inputs and 1,000 outputs each: 6,000 edges (not 3,000,000) on pages
    of at most ``limit`` nodes and edges, every edge once, every path a node."""
    store.append(
        [
            rec(
                "big",
                f"e{n}",
                at=n,
                inputs=[f"in/{n}/{i}" for i in range(1000)],
                outputs=[f"out/{n}/{i}" for i in range(1000)],
            )
            for n in range(3)
        ]
    )
    pages, edges, nodes = all_lineage(store, "big", limit=1000)
    assert len(edges) == 6000
    assert len(pages) == 7  # 6,000 edges at 999 or 1,000 a page
    assert ("path:in/1/999", "step:e1") in edges and ("step:e2", "path:out/2/0") in edges
    assert sum(1 for n in nodes.values() if n["kind"] == "step") == 3
    assert len(nodes) == 6003
    first = store.lineage("default", "big")
    assert first is not None and first.next_cursor is not None  # said when it was cut


def test_lineage_pages_read_a_bounded_number_of_events(store: SqlStore) -> None:
    quiet = [rec("long", f"q{n:05}", at=n) for n in range(LINEAGE_SCAN_EVENTS + 10)]
    store.append([*quiet, rec("long", "w", at=10**6, inputs=["a"], outputs=["b"])])
    first = store.lineage("default", "long")
    assert first is not None and first.nodes == [] and first.next_cursor is not None
    pages, edges, _ = all_lineage(store, "long", limit=10)
    assert edges == {("path:a", "step:w"), ("step:w", "path:b")}
    assert len(pages) == 2


def test_summary_errors_and_paths_in_key_order(store: SqlStore) -> None:
    oops = {"message": {"en": "oops"}}
    late = {"message": {"en": "late"}}
    store.append([rec("t", "e2", at=20, errors=[late, oops], path="/b")])
    store.append([rec("t", "e1", at=10, errors=[oops], path="/a")])
    summary = store.summary("default", "t")
    assert summary is not None
    assert summary.errors == [oops, late]
    assert summary.paths == ["/a", "/b"]


def all_items(store: SqlStore, trace_id: str, kind: str, limit: int) -> list[list[object]]:
    pages: list[list[object]] = []
    cursor = None
    while True:
        page = store.trace_items("default", trace_id, kind, limit=limit, cursor=cursor)
        assert page is not None
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_a_summary_counts_errors_and_paths_and_shows_their_ends(store: SqlStore) -> None:
    """Many errors and paths, some repeated, arriving out of order and in several batches:
    the summary counts the distinct ones and shows the first and last five; the lists page
    through all of them, each once, in key order."""

    def error(n: int) -> dict[str, object]:
        return {"message": {"en": f"failed {n}"}}

    made = [
        rec("t", f"e{n:04}", at=n, errors=[error(n), error(0)], path=f"/p/{n % 700}")
        for n in range(1000)
    ]
    for start in (600, 0, 300):  # out of order
        store.append(made[start : start + 300])
    store.append(made[900:])
    summary = store.summary("default", "t")
    assert summary is not None
    assert (summary.error_count, summary.path_count) == (1000, 700)
    assert summary.errors == [error(n) for n in range(5)]
    assert summary.last_errors == [error(n) for n in range(995, 1000)]
    assert summary.paths == [f"/p/{n}" for n in range(5)]
    assert summary.last_paths == [f"/p/{n}" for n in range(695, 700)]
    assert summary.links.errors == "/v1/traces/t/errors"
    pages = all_items(store, "t", "error", limit=300)
    assert [len(p) for p in pages] == [300, 300, 300, 100]
    assert [e for p in pages for e in p] == [error(n) for n in range(1000)]
    assert [p for page in all_items(store, "t", "path", limit=1000) for p in page] == [
        f"/p/{n}" for n in range(700)
    ]
    with pytest.raises(BadCursor):
        store.trace_items("default", "t", "error", cursor="bad")


def test_concurrent_writers_count_an_error_they_both_add_once(store: SqlStore) -> None:
    shared = {"message": {"en": "disk full"}}
    writers = [
        [
            [
                rec(
                    "t",
                    f"w{w}-{n}",
                    at=n,
                    errors=[shared, {"message": {"en": f"{w}-{n}"}}],
                    path=f"/{n % 3}",
                )
            ]
            for n in range(20)
        ]
        for w in range(4)
    ]
    write_concurrently(store, writers)
    summary = store.summary("default", "t")
    assert summary is not None
    assert (summary.error_count, summary.path_count) == (81, 3)
    assert summary.errors[0] == shared


def test_a_summary_leaves_out_what_would_make_it_large(store: SqlStore) -> None:
    """Each end of a list holds at most LIST_END_BYTES of JSON; a larger item ends its run
    (it is counted, and paged like any other: a page of large items holds at least one)."""
    big = [{"message": {"en": f"{n}" + "x" * 400_000}} for n in range(3)]
    small = {"message": {"en": "small"}}
    store.append([rec("t", "e1", at=1, errors=[small, big[0]]), rec("t", "e2", at=2, errors=big)])
    summary = store.summary("default", "t")
    assert summary is not None
    assert (summary.error_count, summary.errors, summary.last_errors) == (4, [small], [])
    assert len(summary.model_dump_json()) < 1000
    pages = all_items(store, "t", "error", limit=100)
    assert pages == [[small, big[0], big[1]], [big[2]]]  # about 1 MiB a page
    assert store.trace_items("default", "nope", "error") is None
    assert store.trace_items("default", "t", "path") == Page([], None)


def test_a_page_of_events_holds_about_a_mebibyte(store: SqlStore) -> None:
    store.append([rec("t", f"e{n}", at=n, meta={"blob": "x" * 400_000}) for n in range(4)])
    store.append([rec("t", f"s{n}", at=10 + n) for n in range(3)])
    first = store.events("default", "t", limit=100)
    assert [e["event_id"] for e in first.items] == ["e0", "e1", "e2"]  # past 1 MiB with e2
    assert first.next_cursor is not None
    rest = store.events("default", "t", limit=100, cursor=first.next_cursor)
    assert [e["event_id"] for e in rest.items] == ["e3", "s0", "s1", "s2"]
    assert rest.next_cursor is None
    assert [len(store.events("default", "t", limit=2).items)] == [2]


def test_path_lookups_page_newest_first(store: SqlStore) -> None:
    store.append([rec(f"t{n % 3}", f"e{n:02}", at=n // 2, inputs=["/shared"]) for n in range(25)])
    seen: list[str] = []
    cursor = None
    while True:
        hits = store.paths("default", "/shared", limit=11, cursor=cursor)
        seen += [h.event_id for h in hits[:10]]
        if len(hits) <= 10:
            break
        cursor = encode_cursor(hits[9].received_us, hits[9].time_us, hits[9].event_id)
    assert seen == [f"e{n:02}" for n in reversed(range(25))]


def test_event_counts_of_traces_in_any_tenants(store: SqlStore) -> None:
    store.append([rec("t", "e1"), rec("t", "e2"), rec("t", "e3", tenant="west")])
    store.append([rec("u", "e4"), rec("t", "e2")])  # e2 again: stored once
    keys = [("default", "t"), ("west", "t"), ("default", "u"), ("default", "nope")]
    assert store.event_counts(keys) == {("default", "t"): 2, ("west", "t"): 1, ("default", "u"): 1}
    assert store.event_counts([]) == {}


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
        assert lineage is not None
        assert f"path:in-{other}" not in [n["id"] for n in lineage.nodes]
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


# -- dataset scope ---------------------------------------------------------------------------


def _two_datasets(store: SqlStore) -> None:
    """Traces of datasets ``sales`` (ids s1, s2), ``salesy`` (y1, a prefix without its
    ``/``), ``hr`` (h1), and one without a domain_id (n1); every event touches ``raw/f``."""
    store.append(
        [
            rec("s1", "e1", at=10, domain_id="sales/1/latest", path="raw/f"),
            rec("s2", "e2", at=20, domain_id="sales", path="raw/f"),
            rec("y1", "e3", at=30, domain_id="salesy/1", path="raw/f"),
            rec("h1", "e4", at=40, domain_id="hr/2", path="raw/f", stage="S"),
            rec("n1", "e5", at=50, path="raw/f"),
        ]
    )
    store.put_dataset_details(
        [DatasetDetails("default", t, "ds", "1", None, 1, 10, 10) for t in ("s1", "h1")]
    )


def test_dataset_scope_leaves_other_datasets_out_of_every_read(store: SqlStore) -> None:
    _two_datasets(store)
    sales = frozenset({"sales"})
    found = store.search("default", TraceQuery(datasets=sales), limit=10)
    assert sorted(s.trace_id for s in found.items) == ["s1", "s2"]
    assert [p.trace_id for p in store.paths("default", "raw/f", datasets=sales)] == ["s2", "s1"]
    assert [e["event_id"] for e in store.events("default", "s1", datasets=sales).items] == ["e1"]
    assert store.events("default", "h1", datasets=sales).items == []
    assert store.lineage("default", "h1", datasets=sales) is None
    assert store.lineage("default", "s1", datasets=sales) is not None
    by_stage = EventQuery(stages=("S",), datasets=sales)
    assert store.find_events("default", by_stage).items == []
    assert [
        d.trace_id for d in store.dataset_details("default", dataset_id="ds", datasets=sales)
    ] == ["s1"]
    # None is every trace; an empty set is none
    assert len(store.search("default", TraceQuery(), limit=10).items) == 5
    assert store.search("default", TraceQuery(datasets=frozenset()), limit=10).items == []
    assert store.paths("default", "raw/f", datasets=frozenset()) == []
    scoped = store.overview("default", 0, datasets=sales)
    assert [(d.dataset, d.total) for d in scoped.datasets] == [("sales", 2)]
    assert sum(scoped.counts.values()) == 2
    assert store.overview("default", 0, datasets=frozenset()).datasets == []


def test_dataset_scope_filters_before_paging(store: SqlStore) -> None:
    """A page of a scoped search is full of the scope's traces, however many others are
    newer: the filter is in the query, not applied to a page after it was read."""
    store.append([rec(f"h{i}", f"h{i}", at=1000 + i, domain_id="hr") for i in range(30)])
    store.append([rec(f"s{i}", f"s{i}", at=i, domain_id="sales/x") for i in range(5)])
    page = store.search("default", TraceQuery(datasets=frozenset({"sales"})), limit=3)
    assert [s.trace_id for s in page.items] == ["s4", "s3", "s2"]
    assert page.next_cursor is not None
    rest = store.search(
        "default", TraceQuery(datasets=frozenset({"sales"})), limit=3, cursor=page.next_cursor
    )
    assert [s.trace_id for s in rest.items] == ["s1", "s0"]


# -- API keys -------------------------------------------------------------------------------


def test_api_keys_are_stored_listed_and_revoked(store: SqlStore) -> None:
    first = ApiKey("k1", "ingest", ("alpha:writer",), "ab" * 32, 100, expires_us=900)
    second = ApiKey("k2", "viewer", ("alpha:reader:sales", "beta:reader"), "cd" * 32, 200)
    store.add_api_key(first)
    store.add_api_key(second)
    assert store.api_key("k1") == first
    assert store.api_key("nope") is None
    assert store.api_keys() == [second, first]  # newest first
    assert store.api_keys(limit=1) == [second]
    with pytest.raises(ValueError, match="k1"):
        store.add_api_key(first)
    revoked = store.revoke_api_key("k1", 500)
    assert revoked is not None and revoked.revoked_us == 500
    again = store.revoke_api_key("k1", 700)  # the first revocation stands
    assert again is not None and again.revoked_us == 500
    assert store.api_key("k2") == second
    assert store.revoke_api_key("nope", 500) is None


# -- readiness -----------------------------------------------------------------------------


def test_a_write_probe_commits_and_changes_nothing(store: SqlStore) -> None:
    store.append([rec("t", "e1")])
    before = store.summary("default", "t")
    store.check_writable()
    store.check_writable()
    assert store.summary("default", "t") == before
    assert store.events("default", "t").items == store.events("default", "t").items


# -- retention and deletion ----------------------------------------------------------------


def _a_trace_with_everything(store: SqlStore, trace_id: str, tenant: str = "default") -> None:
    store.append(
        [
            rec(trace_id, f"{trace_id}-1", tenant=tenant, at=10, path="s3://in/a.csv"),
            rec(
                trace_id,
                f"{trace_id}-2",
                tenant=tenant,
                at=20,
                inputs=["s3://in/a.csv"],
                outputs=["s3://out/" + "x" * 300],  # a path keyed by its digest
                status="FAILED",
                errors=[{"message": {"en": "boom"}}],
            ),
        ]
    )
    store.put_dataset_details([DatasetDetails(tenant, trace_id, "ds", "1", "csv", 3, 20, 21)])


def _gone(store: SqlStore, trace_id: str, tenant: str = "default") -> None:
    assert store.summary(tenant, trace_id) is None
    assert store.events(tenant, trace_id).items == []
    assert store.trace_items(tenant, trace_id, "error") is None
    assert store.trace_items(tenant, trace_id, "path") is None
    assert store.lineage(tenant, trace_id) is None
    assert store.dataset_details(tenant, trace_id=trace_id) == []
    assert trace_id not in {h.trace_id for h in store.paths(tenant, "s3://in/a.csv")}
    assert trace_id not in {h.trace_id for h in store.paths(tenant, "s3://out/" + "x" * 300)}
    found = store.search(tenant, TraceQuery(), limit=100).items
    assert trace_id not in {s.trace_id for s in found}
    assert store.find_events(tenant, EventQuery(trace_id=trace_id), limit=10).items == []


def test_deleting_a_trace_removes_all_of_it_and_nothing_else(store: SqlStore) -> None:
    _a_trace_with_everything(store, "doomed")
    _a_trace_with_everything(store, "kept")
    _a_trace_with_everything(store, "doomed", tenant="other")
    assert store.delete_traces([("default", "doomed")]) == 1
    _gone(store, "doomed")
    kept = store.summary("default", "kept")
    assert kept is not None and kept.event_count == 2
    assert {h.trace_id for h in store.paths("default", "s3://in/a.csv")} == {"kept"}
    assert [h.trace_id for h in store.paths("default", "s3://out/" + "x" * 300)] == ["kept"]
    assert len(store.dataset_details("default", trace_id="kept")) == 1
    other = store.summary("other", "doomed")  # same id, another tenant: untouched
    assert other is not None and other.event_count == 2
    assert store.delete_traces([("default", "doomed")]) == 0  # nothing left to delete


def test_a_deleted_trace_is_not_found_by_its_steps(store: SqlStore) -> None:
    store.append(
        [
            rec("t", "e1", at=10, component="up", stage="UPLOAD"),
            rec("t", "e2", at=20, component="writer"),
            rec("u", "e3", at=30, component="up", stage="UPLOAD"),
        ]
    )
    assert store.delete_traces([("default", "t")]) == 1
    assert _search_ids(store, TraceQuery(component="up")) == ["u"]
    store.append([rec("t", "e4", at=50, component="other")])  # written again
    assert _search_ids(store, TraceQuery(component="writer")) == []
    assert _search_ids(store, TraceQuery(stage="UPLOAD")) == ["u"]
    assert _search_ids(store, TraceQuery(component="other")) == ["t"]


def test_a_deleted_trace_can_be_written_again_like_a_new_one(store: SqlStore) -> None:
    _a_trace_with_everything(store, "t")
    store.delete_traces([("default", "t")])
    store.append([rec("t", "new", at=50, status="SUCCESS")])
    summary = store.summary("default", "t")
    assert summary is not None
    assert (summary.event_count, summary.error_count, summary.path_count) == (1, 0, 0)


def test_a_tombstone_keeps_out_events_received_before_the_deletion(store: SqlStore) -> None:
    store.append([rec("t", "e1", received_us=now_us() - 10_000_000)])
    store.delete_traces([("default", "t")], tombstone_until_us=now_us() + 60_000_000)
    late = rec("t", "e2", received_us=now_us() - 5_000_000)  # was on the bus
    fresh = rec("t", "e3", received_us=now_us() + 1_000_000)  # sent after the deletion
    other = rec("u", "e4", received_us=now_us() - 5_000_000)
    result = store.append([late, fresh, other])
    assert result.inserted == 2
    assert [e["event_id"] for e in store.events("default", "t").items] == ["e3"]
    assert store.summary("default", "u") is not None


def test_an_expired_tombstone_keeps_nothing_out_and_is_dropped(store: SqlStore) -> None:
    store.append([rec("t", "e1", received_us=now_us() - 10_000_000)])
    store.delete_traces([("default", "t")], tombstone_until_us=now_us() - 1)
    assert store.append([rec("t", "e2", received_us=now_us() - 5_000_000)]).inserted == 1
    assert store.drop_tombstones(now_us()) == 1
    assert store.drop_tombstones(now_us()) == 0


def test_stale_traces_oldest_first_by_tenant_and_domain(store: SqlStore) -> None:
    store.append(
        [
            rec("old", "e1", at=10, domain="dataset"),
            rec("older", "e2", at=5, domain="other"),
            rec("new", "e3", at=100, domain="dataset"),
            rec("elsewhere", "e4", at=1, tenant="b"),
        ]
    )
    stale = store.stale_traces("default", 50)
    assert [(s.trace_id, s.updated_us, s.event_count) for s in stale] == [
        ("older", 5, 1),
        ("old", 10, 1),
    ]
    assert [s.trace_id for s in store.stale_traces("default", 50, domain="dataset")] == ["old"]
    assert [s.trace_id for s in store.stale_traces("default", 50, limit=1)] == ["older"]
    after = (stale[0].updated_us, stale[0].trace_id)
    assert [s.trace_id for s in store.stale_traces("default", 50, after=after)] == ["old"]
    assert store.tenants() == ["b", "default"]


def test_a_prune_passes_by_a_trace_made_newer_since_it_was_listed(store: SqlStore) -> None:
    store.append([rec("t", "e1", at=10), rec("u", "e2", at=10)])
    store.append([rec("t", "e3", at=100)])  # after the listing, before the delete
    assert store.delete_traces([("default", "t"), ("default", "u")], older_than_us=50) == 1
    assert store.summary("default", "u") is None
    summary = store.summary("default", "t")
    assert summary is not None and summary.event_count == 2


def test_a_lease_has_one_holder_until_it_lapses(store: SqlStore) -> None:
    assert store.claim("prune", "a", until_us=100, now_us=0)
    assert not store.claim("prune", "b", until_us=200, now_us=50)  # a holds it
    assert store.claim("prune", "a", until_us=300, now_us=60)  # a renews
    assert not store.claim("prune", "b", until_us=400, now_us=299)
    assert store.claim("prune", "b", until_us=400, now_us=300)  # lapsed: b takes over
    assert not store.claim("prune", "a", until_us=500, now_us=310)
    assert store.claim("other", "a", until_us=500, now_us=310)  # leases are by name
