"""``GET /v1/overview``: counts of traces by state and dataset over a window, bounded; and
the search by dataset that the overview's rows lead to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.test_api import post, problem
from tests.test_api_access import add_key, bearer
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.store import migrate, open_store


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def test_the_last_day_by_default_and_a_week_when_asked(client: TestClient) -> None:
    fin = {"trace_status": "FINISHED"}
    events = [
        {"trace_id": "a", "domain_id": "parking/1", "end_time": ago(hours=1), **fin},
        {
            "trace_id": "b",
            "domain_id": "parking/1",
            "end_time": ago(hours=2),
            "status": "FAILED",
            **fin,
        },
        {"trace_id": "c", "domain_id": "bikes/3", "end_time": ago(minutes=5)},
        {
            "trace_id": "d",
            "domain_id": "trees/1",
            "end_time": ago(days=3),
            "status": "FAILED",
            **fin,
        },
    ]
    assert post(client, events).status_code == 202
    day = client.get("/v1/overview")
    assert day.status_code == 200, day.text
    body = day.json()
    assert body["counts"] == {"RUNNING": 1, "SUCCEEDED": 1, "FAILED": 1, "STALLED": 0}
    assert [(d["dataset"], d["total"]) for d in body["datasets"]] == [("parking", 2), ("bikes", 1)]
    assert body["datasets"][0]["counts"]["FAILED"] == 1
    assert body["truncated"] is False and body["more_datasets"] == 0
    window = datetime.fromisoformat(body["until"]) - datetime.fromisoformat(body["since"])
    assert timedelta(days=1) <= window < timedelta(days=1, seconds=5)
    week = client.get("/v1/overview", params={"since": ago(days=7), "limit": 2}).json()
    assert [d["dataset"] for d in week["datasets"]] == ["parking", "trees"]
    assert week["more_datasets"] == 1 and week["counts"]["FAILED"] == 2


def test_each_tenant_sees_its_own_counts(client: TestClient) -> None:
    post(client, {"trace_id": "x", "domain_id": "ds/1"}, tenant="north")
    south = client.get("/v1/overview", headers={"Waymark-Tenant": "south"}).json()
    assert south["datasets"] == [] and sum(south["counts"].values()) == 0


def test_bad_parameters_are_named(client: TestClient) -> None:
    for params, field in (
        ({"since": "yesterday"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
    ):
        body = problem(client.get("/v1/overview", params=params), 422)
        assert field in str(body), body


def test_a_credential_limited_to_datasets_counts_only_those(db_url: str) -> None:
    migrate.upgrade(db_url)
    store = open_store(db_url)
    try:
        admin = add_key(store, "alpha:admin", name="admin")
        sales = add_key(store, "alpha:reader:sales", name="sales")
        with TestClient(create_app(Settings(store=db_url, auth=("keys",)))) as c:
            events = [
                {"trace_id": "s", "domain_id": "sales/1"},
                {
                    "trace_id": "h",
                    "domain_id": "hr/1",
                    "status": "FAILED",
                    "trace_status": "FINISHED",
                },
            ]
            assert c.post("/v1/events", json=events, headers=bearer(admin)).status_code == 202
            assert c.get("/v1/overview").status_code == 401
            seen = c.get("/v1/overview", headers=bearer(sales)).json()
            assert [d["dataset"] for d in seen["datasets"]] == ["sales"]
            assert seen["counts"] == {"RUNNING": 1, "SUCCEEDED": 0, "FAILED": 0, "STALLED": 0}
            every = c.get("/v1/overview", headers=bearer(admin)).json()
            assert [d["dataset"] for d in every["datasets"]] == ["hr", "sales"]
    finally:
        store.close()


def test_search_by_dataset_takes_every_version(client: TestClient) -> None:
    post(
        client,
        [
            {"trace_id": "a", "domain_id": "parking/1"},
            {"trace_id": "b", "domain_id": "parking/2/latest"},
            {"trace_id": "c", "domain_id": "parking-fees/1"},
            {"trace_id": "d", "domain_id": "parking"},
        ],
    )

    def ids(dataset: str) -> list[str]:
        found = client.get("/v1/traces", params={"dataset": dataset})
        assert found.status_code == 200, found.text
        return sorted(s["trace_id"] for s in found.json()["items"])

    assert ids("parking") == ["a", "b", "d"]
    assert ids("parking/2") == ["b"]
    assert ids("parking-fees") == ["c"]
    assert ids("trees") == []
    problem(client.get("/v1/traces", params={"dataset": "x" * 501}), 422)


def test_search_by_dataset_keeps_to_a_credential_s_datasets(db_url: str) -> None:
    migrate.upgrade(db_url)
    store = open_store(db_url)
    try:
        admin = add_key(store, "alpha:admin", name="admin")
        sales = add_key(store, "alpha:reader:sales", name="sales")
        with TestClient(create_app(Settings(store=db_url, auth=("keys",)))) as c:
            events = [
                {"trace_id": "s", "domain_id": "sales/1"},
                {"trace_id": "h", "domain_id": "hr/1"},
            ]
            assert c.post("/v1/events", json=events, headers=bearer(admin)).status_code == 202

            def ids(key: str, dataset: str) -> list[str]:
                found = c.get("/v1/traces", params={"dataset": dataset}, headers=bearer(key))
                return [s["trace_id"] for s in found.json()["items"]]

            assert ids(sales, "sales") == ["s"] and ids(sales, "sales/1") == ["s"]
            assert ids(sales, "hr") == []  # as if absent
            assert ids(admin, "hr") == ["h"]
    finally:
        store.close()
