"""The /v1 API in-process: every endpoint, every error, tenants, paging, ?wait."""

from __future__ import annotations

import gc
import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES
from waymark.api.app import SERVER_GC_THRESHOLD, create_app, serve_app
from waymark.config import Settings

TRACE = "parking-fees-5b0e"


def native_examples() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((EXAMPLES / "native-events.json").read_text())
    return loaded


def post(client: TestClient, body: Any, tenant: str | None = None) -> Any:
    headers = {"Waymark-Tenant": tenant} if tenant else {}
    return client.post("/v1/events", json=body, headers=headers)


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


# -- writes -----------------------------------------------------------------------------------


def test_post_batch_then_summary(client: TestClient) -> None:
    r = post(client, native_examples())
    assert r.status_code == 202
    assert r.json()["accepted"] == 3 and len(r.json()["event_ids"]) == 3
    s = client.get(f"/v1/traces/{TRACE}").json()
    assert s["done"] is True and s["state"] == "SUCCEEDED"
    assert s["trace_status"] == "FINISHED" and s["trace_event_status"] == "OK"
    assert s["event_count"] == 3 and s["tenant"] == "default"
    assert s["domain"] == "dataset" and s["domain_id"] == "parking-fees/1"
    assert s["current"]["component"] == "pipeline" and s["current"]["stage"] == "END"
    assert s["started_at"] == "2026-11-20T10:00:00.000000Z"
    assert s["finished_at"] == "2026-11-20T10:00:07.000000Z" and s["duration_ms"] == 7000
    assert s["paths"] == [
        "raw/green/parking-fees/fees.csv",
        "processed/green/parking-fees/fees.parquet",
    ]


def test_a_summary_stays_small_at_20000_events_with_a_path_and_an_error_each(
    client: TestClient,
) -> None:
    """Row 2 of the hardening issue: the summary of 20,000 events, each with a path and an
    error, was 1.7 MB (every error and path). It counts them and shows the first and last
    few, under 64 KiB; the lists page through the rest."""
    for batch in range(20):
        post(client, [{"trace_id": "huge", "event_id": f"e{n:05}",
                       "start_time": 1_790_000_000_000 + n,
                       "path": f"s3://bucket/raw/2026/11/20/part-{n:05}.csv",
                       "errors": [{"message": {"en": f"row {n}: value out of range in column 7",
                                               "nb": f"rad {n}: verdi utenfor gyldig område"}}]}
                      for n in range(batch * 1000, batch * 1000 + 1000)])  # fmt: skip
    r = client.get("/v1/traces/huge")
    assert r.status_code == 200 and len(r.content) < 64 * 1024
    s = r.json()
    assert (s["event_count"], s["error_count"], s["path_count"]) == (20000, 20000, 20000)
    assert [e["message"]["en"][:6] for e in s["errors"]] == [f"row {n}:" for n in range(5)]
    assert s["last_paths"][-1] == "s3://bucket/raw/2026/11/20/part-19999.csv"
    assert s["links"] == {
        "events": "/v1/traces/huge/events",
        "errors": "/v1/traces/huge/errors",
        "paths": "/v1/traces/huge/paths",
        "lineage": "/v1/traces/huge/lineage",
    }
    seen, params = 0, {"limit": 1000}
    while True:
        page = client.get(s["links"]["paths"], params=params).json()
        assert page["items"][0] == f"s3://bucket/raw/2026/11/20/part-{seen:05}.csv"
        seen += len(page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == 20000
    errors = client.get(s["links"]["errors"], params={"limit": 2}).json()
    assert [e["message"]["en"][:6] for e in errors["items"]] == ["row 0:", "row 1:"]
    assert client.get("/v1/traces/nope/errors").status_code == 404
    bad = client.get(s["links"]["errors"], params={"limit": 1001})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "limit"]


def test_single_event_gets_an_id_and_defaults(client: TestClient) -> None:
    r = post(client, {"trace_id": "solo"})
    assert r.status_code == 202 and r.json()["accepted"] == 1
    (event,) = client.get("/v1/traces/solo/events").json()["items"]
    assert event["event_id"] == r.json()["event_ids"][0]
    assert event["status"] == "SUCCESS" and event["trace_status"] == "CONTINUE"
    assert event["received_at"].endswith("Z")


def test_resending_an_event_changes_nothing(client: TestClient) -> None:
    first = {"event_id": "e1", "trace_id": "t", "status": "IN_PROGRESS", "end_time": 1000}
    post(client, first)
    before = client.get("/v1/traces/t").json()
    changed = {**first, "status": "FAILED", "trace_status": "FINISHED"}
    assert post(client, [changed, first]).status_code == 202
    assert client.get("/v1/traces/t").json() == before
    (stored,) = client.get("/v1/traces/t/events").json()["items"]
    assert stored["status"] == "IN_PROGRESS"


def test_times_rfc3339_offsetless_and_epoch_ms(client: TestClient) -> None:
    post(
        client,
        [
            {"event_id": "a", "trace_id": "t", "end_time": "2026-11-20T11:00:00+01:00"},
            {"event_id": "b", "trace_id": "t", "end_time": "2026-11-20T10:00:01"},
            {"event_id": "c", "trace_id": "t", "end_time": 1795168802000},
        ],
    )
    ends = [e["end_time"] for e in client.get("/v1/traces/t/events").json()["items"]]
    assert ends == [
        "2026-11-20T10:00:00.000000Z",
        "2026-11-20T10:00:01.000000Z",
        "2026-11-20T10:00:02.000000Z",
    ]


def test_create_trace(client: TestClient) -> None:
    r = client.post("/v1/traces", json={"domain": "dataset", "domain_id": "parking-fees/1"})
    assert r.status_code == 201
    trace_id = r.json()["trace_id"]
    assert trace_id.startswith("parking-fees-") and len(trace_id) == len("parking-fees-") + 36
    s = client.get(f"/v1/traces/{trace_id}").json()
    assert s["trace_status"] == "STARTED" and s["domain_id"] == "parking-fees/1"
    long = client.post("/v1/traces", json={"domain": "d", "domain_id": "x" * 100 + "/1"})
    assert len(long.json()["trace_id"]) == 80


def test_create_trace_errors(client: TestClient) -> None:
    body = problem(client.post("/v1/traces", json={"domain": "d"}), 422)
    assert body["errors"][0]["loc"] == ["body", "domain_id"]
    body = problem(client.post("/v1/traces", json={"domain": "d", "domain_id": 5}), 422)
    assert body["errors"][0]["loc"] == ["body", "domain_id"]
    problem(client.post("/v1/traces", json=[1]), 400)


# -- bad input --------------------------------------------------------------------------------


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post(
        "/v1/events", content=b'{"trace_id": ', headers={"content-type": "application/json"}
    )
    problem(r, 400)


@pytest.mark.parametrize("body", ["text", 5, True])
def test_a_body_of_the_wrong_kind_is_400(client: TestClient, body: Any) -> None:
    errors = problem(post(client, body), 400)["errors"]
    assert errors == [{"loc": ["body"], "msg": "must be an event object or a list of them"}]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"status": "SUCCESS"}, ["body", "trace_id"]),
        ({"trace_id": "has space"}, ["body", "trace_id"]),
        ({"trace_id": ""}, ["body", "trace_id"]),
        ({"trace_id": "x" * 201}, ["body", "trace_id"]),
        ({"trace_id": "ends-in-newline\n"}, ["body", "trace_id"]),
        ({"trace_id": "no\u3000break"}, ["body", "trace_id"]),
        ({"trace_id": "t", "status": "DONE"}, ["body", "status"]),
        ({"trace_id": "t", "trace_status": "OK"}, ["body", "trace_status"]),
        ({"trace_id": "t", "error_code": "7"}, ["body", "error_code"]),
        ({"trace_id": "t", "end_time": "yesterday"}, ["body", "end_time"]),
        ({"trace_id": "t", "end_time": True}, ["body", "end_time"]),
        ({"trace_id": "t", "end_time": "0001-01-01T00:00:00+01:00"}, ["body", "end_time"]),
        ({"trace_id": "t", "start_time": "9999-12-31T23:59:59-01:00"}, ["body", "start_time"]),
        ({"trace_id": "t", "duration_ms": -1}, ["body", "duration_ms"]),
        ({"trace_id": "t", "inputs": "a.csv"}, ["body", "inputs"]),
        ({"trace_id": "t", "errors": [{"message": "x"}]}, ["body", "errors", 0, "message"]),
        ({"trace_id": "t", "attributes": {"a": {"nested": 1}}}, ["body", "attributes", "a"]),
        ({"trace_id": "t", "body": {"x": "y" * 70_000}}, ["body", "body"]),
        ({"trace_id": "t", "colour": "red"}, ["body", "colour"]),
        ([{"trace_id": "ok"}, {"trace_id": "t", "status": 1}], ["body", 1, "status"]),
        ([], ["body"]),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    client: TestClient, body: Any, loc: list[Any]
) -> None:
    errors = problem(post(client, body), 422)["errors"]
    assert any(e["loc"][: len(loc)] == loc for e in errors), errors


def test_a_rejected_batch_stores_nothing(client: TestClient) -> None:
    problem(post(client, [{"trace_id": "good"}, {"trace_id": "bad", "status": "NOPE"}]), 422)
    problem(client.get("/v1/traces/good"), 404)


def test_too_many_events_or_bytes_is_413(client: TestClient) -> None:
    problem(post(client, [{"trace_id": "t"}] * 1001), 413)
    big = b'[{"trace_id": "t", "message": "' + b"x" * (1024 * 1024) + b'"}]'
    r = client.post("/v1/events", content=big, headers={"content-type": "application/json"})
    problem(r, 413)
    problem(client.get("/v1/traces/t"), 404)


def test_bad_tenant_header_is_422(client: TestClient) -> None:
    body = problem(post(client, {"trace_id": "t"}, tenant="two words"), 422)
    assert body["errors"][0]["loc"] == ["header", "Waymark-Tenant"]


@pytest.mark.parametrize(
    "url",
    [
        "/v1/traces/t?wait=61",
        "/v1/traces/t?wait=-1",
        "/v1/traces/t/events?limit=0",
        "/v1/traces/t/events?cursor=garbage",
        "/v1/traces?state=DONE",
        "/v1/traces?done=perhaps",
        "/v1/traces?since=yesterday",
        "/v1/traces?limit=100000",
        "/v1/traces?cursor=WzEsMl0",
        "/v1/paths",
    ],
)
def test_bad_query_parameters_are_422(client: TestClient, url: str) -> None:
    post(client, {"trace_id": "t"})
    body = problem(client.get(url), 422)
    assert body["errors"][0]["loc"][0] == "query"


def test_unknown_trace_is_404(client: TestClient) -> None:
    for url in ("/v1/traces/nope", "/v1/traces/nope/events", "/v1/traces/nope/lineage"):
        problem(client.get(url), 404)
    problem(client.get("/v1/nowhere"), 404)
    problem(client.delete("/v1/events"), 405)


# -- reads ------------------------------------------------------------------------------------


def test_tenants_are_isolated(client: TestClient) -> None:
    post(client, {"trace_id": "shared", "path": "p/x", "trace_status": "FINISHED"}, tenant="a")
    post(client, {"trace_id": "shared", "status": "FAILED", "path": "p/x"}, tenant="b")
    a = client.get("/v1/traces/shared", headers={"Waymark-Tenant": "a"}).json()
    b = client.get("/v1/traces/shared", headers={"Waymark-Tenant": "b"}).json()
    assert (a["tenant"], a["done"], b["tenant"], b["done"]) == ("a", True, "b", False)
    problem(client.get("/v1/traces/shared"), 404)
    for tenant in ("a", "b"):
        h = {"Waymark-Tenant": tenant}
        assert len(client.get("/v1/traces/shared/events", headers=h).json()["items"]) == 1
        assert len(client.get("/v1/paths?path=p/x", headers=h).json()["items"]) == 1
        items = client.get("/v1/traces", headers=h).json()["items"]
        assert [s["tenant"] for s in items] == [tenant]
    assert client.get("/v1/paths?path=p/x").json()["items"] == []


def test_events_paging_has_no_gaps_or_repeats(client: TestClient) -> None:
    events = [
        {"event_id": f"e{i:03}", "trace_id": "long", "end_time": 1_000_000 + (i % 7) * 1000}
        for i in range(95)
    ]
    post(client, events)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/traces/long/events", params=params).json()
        seen += [e["event_id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(e["event_id"] for e in events)
    assert len(seen) == len(set(seen))
    keys = [(e["end_time"], e["event_id"]) for e in events]
    assert seen == [eid for _, eid in sorted(keys)]


def test_search_filters_and_paging(client: TestClient) -> None:
    batch = []
    for i in range(30):
        batch.append(
            {
                "event_id": f"s{i}",
                "trace_id": f"trace-{i:02}",
                "domain": "dataset",
                "domain_id": f"ds{i % 3}/1",
                "component": "writer" if i % 2 else "reader",
                "stage": "WRITE",
                "user": "alice" if i < 10 else "bob",
                "status": "FAILED" if i % 5 == 0 else "SUCCESS",
                "trace_status": "FINISHED" if i % 4 == 0 else "CONTINUE",
                "end_time": f"2026-11-20T10:00:{i:02}Z",
            }
        )
    post(client, batch)

    def ids(**params: Any) -> list[str]:
        out: list[str] = []
        cursor = None
        while True:
            q = {**params, "limit": 4, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/traces", params=q).json()
            out += [s["trace_id"] for s in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return out

    everything = ids()
    assert everything == [f"trace-{i:02}" for i in reversed(range(30))]
    assert ids(domain_id="ds1/1") == [f"trace-{i:02}" for i in reversed(range(30)) if i % 3 == 1]
    assert ids(component="writer", user="alice") == ["trace-09", "trace-07", "trace-05",
                                                      "trace-03", "trace-01"]  # fmt: skip
    done = [i for i in range(30) if i % 4 == 0]
    assert ids(done="true") == [f"trace-{i:02}" for i in reversed(done)]
    assert ids(state="FAILED") == [f"trace-{i:02}" for i in reversed(done) if i % 5 == 0]
    assert ids(state="SUCCEEDED") == [f"trace-{i:02}" for i in reversed(done) if i % 5]
    assert set(ids(state="STALLED")) == {f"trace-{i:02}" for i in range(30) if i % 4}
    assert ids(state="RUNNING") == []
    assert ids(since="2026-11-20T10:00:25Z", until="2026-11-20T10:00:28Z") == [
        "trace-27",
        "trace-26",
        "trace-25",
    ]
    assert ids(domain="other") == []


def test_path_lookup_newest_first(client: TestClient) -> None:
    post(client, native_examples())
    post(client, {"trace_id": "later", "inputs": ["raw/green/parking-fees/fees.csv"],
                  "end_time": "2026-11-21T00:00:00Z"})  # fmt: skip
    items = client.get("/v1/paths", params={"path": "raw/green/parking-fees/fees.csv"}).json()
    assert [i["trace_id"] for i in items["items"]] == ["later", TRACE, TRACE]
    assert items["items"][0]["at"] == "2026-11-21T00:00:00.000000Z"


def test_path_lookups_page(client: TestClient) -> None:
    post(client, [{"trace_id": f"t{n}", "path": "raw/x.csv", "end_time": 1_790_000_000_000 + n}
                  for n in range(5)])  # fmt: skip
    first = client.get("/v1/paths", params={"path": "raw/x.csv", "limit": 3}).json()
    assert [i["trace_id"] for i in first["items"]] == ["t4", "t3", "t2"]
    params = {"path": "raw/x.csv", "limit": 3, "cursor": first["next_cursor"]}
    rest = client.get("/v1/paths", params=params).json()
    assert [i["trace_id"] for i in rest["items"]] == ["t1", "t0"]
    assert rest["next_cursor"] is None


def test_lineage_from_inputs_outputs_and_body_files(client: TestClient) -> None:
    post(client, native_examples())
    post(client, {"trace_id": TRACE, "event_id": "w",
                  "body": {"files_incoming": ["processed/green/parking-fees/fees.parquet"],
                           "files_outgoing": ["indexed/fees"]}})  # fmt: skip
    lineage = client.get(f"/v1/traces/{TRACE}/lineage").json()
    assert lineage["trace_id"] == TRACE
    assert (lineage["truncated"], lineage["next"]) == (False, None)
    paths = [n["path"] for n in lineage["nodes"] if n["kind"] == "path"]
    assert paths == [
        "raw/green/parking-fees/fees.csv",
        "processed/green/parking-fees/fees.parquet",
        "indexed/fees",
    ]
    steps = {n["id"]: n for n in lineage["nodes"] if n["kind"] == "step"}
    assert steps["step:w"]["event_id"] == "w" and steps["step:w"]["status"] == "SUCCESS"
    assert [(e["from"], e["to"]) for e in lineage["edges"]][-2:] == [
        ("path:processed/green/parking-fees/fees.parquet", "step:w"),
        ("step:w", "path:indexed/fees"),
    ]


def test_lineage_is_paged_and_says_when_it_was_cut(client: TestClient) -> None:
    """Row 1 of the hardening issue: 3 events with 1,000 inputs and 1,000 outputs each. The
    answer grows with the inputs and outputs (6,000 edges over pages of at most ``limit``),
    never with their product (3,000,000 edges, 161 MB)."""
    post(client, [{"trace_id": "wide", "event_id": f"e{n}",
                   "inputs": [f"s3://in/{n}/{i}.csv" for i in range(1000)],
                   "outputs": [f"s3://out/{n}/{i}.parquet" for i in range(1000)]}
                  for n in range(3)])  # fmt: skip
    edges: set[tuple[str, str]] = set()
    pages, largest = 0, 0
    params: dict[str, Any] = {"limit": 5000}
    while True:
        r = client.get("/v1/traces/wide/lineage", params=params)
        assert r.status_code == 200
        largest = max(largest, len(r.content))
        page = r.json()
        pages += 1
        edges |= {(e["from"], e["to"]) for e in page["edges"]}
        assert page["truncated"] is (page["next"] is not None)
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert len(edges) == 6000 and pages == 2
    assert largest < 1024 * 1024
    first = client.get("/v1/traces/wide/lineage").json()  # the default: 1,000 a page
    assert first["truncated"] is True and len(first["edges"]) == 999
    for limit in (1, 5001):
        r = client.get("/v1/traces/wide/lineage", params={"limit": limit})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "limit"]


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


# -- ?wait ------------------------------------------------------------------------------------


def test_wait_answers_soon_after_the_finishing_event(client: TestClient) -> None:
    post(client, {"trace_id": "w", "status": "IN_PROGRESS"})
    finished_at: list[float] = []

    def finish() -> None:
        time.sleep(0.3)
        post(client, {"trace_id": "w", "trace_status": "FINISHED"})
        finished_at.append(time.monotonic())

    worker = threading.Thread(target=finish)
    worker.start()
    r = client.get("/v1/traces/w", params={"wait": 10})
    answered = time.monotonic()
    worker.join()
    assert r.json()["done"] is True
    assert answered - finished_at[0] < 0.1


def test_wait_hears_of_a_finishing_event_another_process_wrote(db_url: str) -> None:
    """Another worker's commit to the same SQLite file wakes the waiter at once, not on
    the half-second safety timer (a second store on the file stands in for the worker)."""
    from waymark.ingest import parse_events, to_records
    from waymark.pipelines import Pipelines
    from waymark.store.sqlite import SQLiteStore

    other = SQLiteStore(db_url)
    finished_at: list[float] = []

    def finish() -> None:
        time.sleep(0.3)
        events = parse_events({"trace_id": "x", "trace_status": "FINISHED"})
        other.append(to_records(events, "default", Pipelines()))
        finished_at.append(time.monotonic())

    try:
        with TestClient(create_app(Settings(store=db_url))) as client:
            post(client, {"trace_id": "x", "status": "IN_PROGRESS"})
            worker = threading.Thread(target=finish)
            worker.start()
            r = client.get("/v1/traces/x", params={"wait": 10})
            answered = time.monotonic()
            worker.join()
    finally:
        other.close()
    assert r.json()["done"] is True
    assert answered - finished_at[0] < 0.1


def test_wait_until_the_trace_exists_then_404_if_it_never_does(client: TestClient) -> None:
    start = time.monotonic()
    problem(client.get("/v1/traces/ghost", params={"wait": 0.3}), 404)
    assert time.monotonic() - start >= 0.3


def test_wait_returns_the_running_summary_at_timeout(client: TestClient) -> None:
    post(client, {"trace_id": "slow", "status": "IN_PROGRESS"})
    r = client.get("/v1/traces/slow", params={"wait": 0.2})
    assert r.status_code == 200 and r.json()["done"] is False


def test_trace_ids_may_hold_slashes(client: TestClient) -> None:
    post(client, {"trace_id": "ds/1/run-7", "trace_status": "FINISHED", "inputs": ["a"],
                  "outputs": ["b"]})  # fmt: skip
    assert client.get("/v1/traces/ds/1/run-7").json()["trace_id"] == "ds/1/run-7"
    assert len(client.get("/v1/traces/ds/1/run-7/events").json()["items"]) == 1
    nodes = client.get("/v1/traces/ds/1/run-7/lineage").json()["nodes"]
    assert [n["id"] for n in nodes if n["kind"] == "path"] == ["path:a", "path:b"]


def test_the_served_app_collects_garbage_less_often(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """``waymark serve`` builds each worker's app with ``serve_app``: the same app, with the
    collector's first threshold raised (3% of a batch's instructions went to collections of
    containers that reference counting frees anyway)."""
    before = gc.get_threshold()
    monkeypatch.setenv("WAYMARK_STORE", f"sqlite:///{tmp_path / 'w.db'}")
    try:
        # The served app answers only loopback Host names while authentication is off.
        with TestClient(serve_app(), base_url="http://localhost") as served:
            assert gc.get_threshold()[0] == SERVER_GC_THRESHOLD > before[0]
            assert served.post("/v1/events", json={"trace_id": "t"}).status_code == 202
    finally:
        gc.set_threshold(*before)


def test_openapi_describes_the_hot_endpoints_too(client: TestClient) -> None:
    """The two Starlette routes are documented beside the FastAPI ones."""
    paths = client.get("/openapi.json").json()["paths"]
    post_events = paths["/v1/events"]["post"]
    assert "202" in post_events["responses"] and post_events["requestBody"]["required"]
    get_trace = paths["/v1/traces/{trace_id}"]["get"]
    wait = next(p for p in get_trace["parameters"] if p["name"] == "wait")
    assert (wait["in"], wait["schema"]["maximum"]) == ("query", 60)
    assert get_trace["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Summary"
    }
    assert {"/v1/traces/{trace_id}/events", "/v1/traces/{trace_id}/lineage", "/status"} <= set(
        paths
    )
