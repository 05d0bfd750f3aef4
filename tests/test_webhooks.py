"""Webhooks end to end: subscriptions over /v1, deliveries to a real receiver, signed
(checked with the ``standardwebhooks`` package), retried, given up on, never in the way of
ingestion; stalls notified once; both stores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.receiver import Receiver, verified
from tests.test_api_access import add_key, bearer
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.pipelines import Pipeline, Pipelines
from waymark.store import open_store
from waymark.webhooks import BadTarget, resolve


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


def app_client(url: str, pipelines: Pipelines | None = None, **settings: Any) -> TestClient:
    given = {"webhook_allow_private": True, "stall_sweep_s": 0.2, **settings}
    return TestClient(create_app(Settings(store=url, **given), pipelines=pipelines))


def subscribe(client: TestClient, url: str, events: list[str], **more: Any) -> dict[str, Any]:
    answer = client.post("/v1/webhooks", json={"url": url, "events": events, **more})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_subscriptions_over_the_api(store_url: str, receiver: Receiver) -> None:
    with app_client(store_url) as client:
        created = subscribe(client, receiver.url, ["trace.failed"], dataset="ds")
        assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30
        assert created["id"].startswith("wh_")
        shown = client.get(f"/v1/webhooks/{created['id']}").json()
        assert "secret" not in shown
        assert shown == {k: v for k, v in created.items() if k != "secret"}
        second = subscribe(client, receiver.url, ["trace.started"])
        page = client.get("/v1/webhooks", params={"limit": 1}).json()
        assert [h["id"] for h in page["items"]] == [created["id"]]
        rest = client.get("/v1/webhooks", params={"cursor": page["next_cursor"]}).json()
        assert [h["id"] for h in rest["items"]] == [second["id"]]
        assert all("secret" not in h for h in page["items"] + rest["items"])
        other = client.get("/v1/webhooks", headers={"Waymark-Tenant": "other"}).json()
        assert other["items"] == []
        assert client.delete(f"/v1/webhooks/{created['id']}").status_code == 204
        assert client.get(f"/v1/webhooks/{created['id']}").status_code == 404
        assert client.delete(f"/v1/webhooks/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"url": "ftp://example.com/x", "events": ["trace.failed"]}, "url", "http or https"),
        ({"url": "http://127.0.0.1:9/x", "events": ["trace.failed"]}, "url", "not public"),
        ({"url": "http://10.1.2.3/x", "events": ["trace.failed"]}, "url", "not public"),
        ({"url": "http://[::1]/x", "events": ["trace.failed"]}, "url", "not public"),
        ({"url": "https://localhost/x", "events": ["trace.failed"]}, "url", "not public"),
        ({"url": "https://example.com/x", "events": ["trace.done"]}, "events", ""),
        ({"url": "https://example.com/x", "events": []}, "events", ""),
        ({"events": ["trace.failed"]}, "url", ""),
    ],
)
def test_bad_subscriptions_are_refused_naming_the_field(
    db_url: str, body: dict[str, Any], field: str, says: str
) -> None:
    with app_client(db_url, webhook_allow_private=False) as client:
        answer = client.post("/v1/webhooks", json=body)
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert answer.headers["content-type"].startswith("application/problem+json")
        locs = [e["loc"] for e in problem["errors"]]
        assert any(field in loc for loc in locs), problem
        assert says in str(problem)
        assert client.get("/v1/webhooks").json()["items"] == []


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "192.168.1.1", "::1", "fe80::1",
                "::ffff:127.0.0.1", "100.64.0.1", "0.0.0.0"]
)  # fmt: skip
def test_private_addresses_are_no_targets(address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(BadTarget, match="not public"):
        resolve(f"http://{host}/x", allow_private=False)
    assert resolve(f"http://{host}/x", allow_private=True).address == address


def test_a_public_address_is_a_target() -> None:
    target = resolve("https://93.184.215.14:8443/hook", allow_private=False)
    assert (target.scheme, target.port, target.address) == ("https", 8443, "93.184.215.14")


def test_a_failed_trace_is_delivered_signed_after_two_500s(store_url: str) -> None:
    receiver = Receiver(plan=[500, 500])
    try:
        with app_client(store_url) as client:
            hook = subscribe(client, receiver.url, ["trace.failed"])
            quiet = subscribe(client, receiver.url, ["trace.failed"], dataset="elsewhere")
            sent = [
                {"trace_id": "t1", "event_id": "e1", "trace_status": "STARTED",
                 "domain_id": "ds/1", "end_time": "2026-12-01T10:00:00Z"},
                {"trace_id": "t1", "event_id": "e2", "trace_status": "FINISHED",
                 "status": "FAILED", "end_time": "2026-12-01T10:00:05Z"},
            ]  # fmt: skip
            assert client.post("/v1/events", json=sent).status_code == 202
            got = receiver.wait_for(3, type="trace.failed")
            assert [r.status for r in got] == [500, 500, 200]
            assert len({r.headers["webhook-id"] for r in got}) == 1  # the same id each time
            for r in got:
                message = verified(hook["secret"], r)
                assert message["type"] == "trace.failed"
                assert message["data"]["trace_id"] == "t1"
                assert message["data"]["state"] == "FAILED"
            assert got[1].at - got[0].at < 5  # the first retry within 5 s
            time.sleep(1)
            assert len(receiver.got) == 3  # delivered: no more attempts, nothing else
            deliveries = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
            assert [(d["type"], d["attempts"], d["status_code"]) for d in deliveries] == [
                ("trace.failed", 3, 200)
            ]
            assert deliveries[0]["id"] == got[0].headers["webhook-id"]
            assert deliveries[0]["delivered_at"] is not None
            quiet_deliveries = client.get(f"/v1/webhooks/{quiet['id']}/deliveries").json()
            assert quiet_deliveries["items"] == []
    finally:
        receiver.stop()


def test_a_receiver_that_is_down_is_given_up_on(db_url: str) -> None:
    gone = Receiver()
    gone.stop()  # its port now refuses connections
    with app_client(db_url, webhook_give_up_s=2) as client:
        hook = subscribe(client, gone.url, ["trace.started"])
        client.post("/v1/events", json={"trace_id": "t", "event_id": "e"})
        deadline = time.monotonic() + 20
        shown = client.get(f"/v1/webhooks/{hook['id']}").json()
        while shown["failed_at"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
            shown = client.get(f"/v1/webhooks/{hook['id']}").json()
        assert shown["failed_at"] is not None and "ConnectError" in shown["failure"]
        (delivery,) = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
        assert delivery["gave_up_at"] is not None and delivery["attempts"] >= 2
        assert delivery["status_code"] is None


def test_a_hanging_receiver_costs_ingestion_nothing(db_url: str) -> None:
    receiver = Receiver(plan=["hang"] * 100)
    try:
        with app_client(db_url) as client:
            subscribe(client, receiver.url, ["trace.started"])
            # Every trace notifies; the receiver holds every delivery open.
            for i in range(40):
                batch = [{"trace_id": f"t{i}-{j}", "event_id": f"e{i}-{j}"} for j in range(25)]
                answer = client.post("/v1/events", json=batch)
                assert answer.status_code == 202
            assert receiver.wait_for(16)  # the notifier's deliveries are all hanging
            start = time.monotonic()
            for i in range(20):
                answer = client.post("/v1/events", json={"trace_id": f"x{i}", "event_id": f"x{i}"})
                assert answer.status_code == 202
                assert client.get(f"/v1/traces/x{i}").json()["state"] == "RUNNING"
            # 20 writes and reads, while the notifier's every slot is held by the receiver
            # (each delivery hangs for its whole 10 s timeout)
            assert time.monotonic() - start < 10
            assert all(r.status == "hang" for r in receiver.got)
    finally:
        receiver.stop()


def test_a_stalled_trace_is_notified_once(store_url: str, receiver: Receiver) -> None:
    rules = Pipelines(default=Pipeline(stall_timeout_s=1))
    with app_client(store_url, pipelines=rules) as client:
        hook = subscribe(client, receiver.url, ["trace.stalled", "trace.succeeded"])
        client.post("/v1/events", json={"trace_id": "quiet", "event_id": "q1"})
        client.post("/v1/events", json={"trace_id": "done", "event_id": "d1",
                                        "trace_status": "FINISHED"})  # fmt: skip
        (stalled,) = receiver.wait_for(1, timeout=10, type="trace.stalled")
        message = verified(hook["secret"], stalled)
        assert message["data"]["trace_id"] == "quiet" and message["data"]["state"] == "STALLED"
        assert client.get("/v1/traces/quiet").json()["state"] == "STALLED"
        time.sleep(1.5)  # several more sweeps
        assert len(receiver.wait_for(1, timeout=0, type="trace.stalled")) == 1
        assert len(receiver.wait_for(1, timeout=0, type="trace.succeeded")) == 1


def test_subscriptions_need_the_admin_role_in_their_tenant(db_url: str) -> None:
    store = open_store(db_url)
    admin = add_key(store, "acme:admin")
    writer = add_key(store, "acme:writer")
    other = add_key(store, "zeta:admin")
    scoped = add_key(store, "acme:admin:sales")
    store.close()
    body = {"url": "http://127.0.0.1:9/x", "events": ["trace.failed"]}
    with app_client(db_url, auth=("keys",)) as client:
        assert client.post("/v1/webhooks", json=body, headers=bearer(writer)).status_code == 403
        assert client.post("/v1/webhooks", json=body).status_code == 401
        made = client.post("/v1/webhooks", json=body, headers=bearer(admin))
        assert made.status_code == 201
        hook = made.json()["id"]
        assert client.get(f"/v1/webhooks/{hook}", headers=bearer(other)).status_code == 404
        assert client.get("/v1/webhooks", headers=bearer(other)).json()["items"] == []
        assert client.get(f"/v1/webhooks/{hook}", headers=bearer(writer)).status_code == 403
        # a credential of one dataset subscribes only to that dataset's traces
        refused = client.post("/v1/webhooks", json=body, headers=bearer(scoped))
        assert refused.status_code == 403 and "dataset" in refused.text
        ok = client.post("/v1/webhooks", json={**body, "dataset": "sales"}, headers=bearer(scoped))
        assert ok.status_code == 201
