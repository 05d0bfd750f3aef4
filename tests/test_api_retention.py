"""``DELETE /v1/traces/{trace_id}`` through the whole app on both stores: admin only,
within the admin's datasets, and afterwards every door answers as if the trace never
existed."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import wait_for
from tests.store.conftest import rec
from tests.test_api_access import add_key, bearer
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.model import now_us
from waymark.store import Store


def _send(c: TestClient, key: str, trace_id: str, domain_id: str) -> None:
    events = [
        {"trace_id": trace_id, "domain_id": domain_id, "path": "raw/f", "inputs": ["raw/f"]},
        {
            "trace_id": trace_id,
            "domain_id": domain_id,
            "status": "FAILED",
            "errors": [{"message": {"en": "broken"}}],
            "outputs": ["clean/f"],
        },
    ]
    assert c.post("/v1/events", json=events, headers=bearer(key)).status_code == 202


def _reads(trace_id: str) -> list[str]:
    return [
        f"/v1/traces/{trace_id}{tail}" for tail in ("", "/events", "/lineage", "/errors", "/paths")
    ] + [f"/status/{trace_id}"]


def test_an_admin_deletes_a_trace_and_it_was_never_there(
    app_client: TestClient, store: Store
) -> None:
    c = app_client
    admin = add_key(store, "alpha:admin")
    writer = add_key(store, "alpha:writer", "alpha:reader")
    _send(c, admin, "doomed", "sales/1")
    _send(c, admin, "kept", "sales/1")
    for path in _reads("doomed"):
        assert c.get(path, headers=bearer(admin)).status_code == 200, path

    assert c.delete("/v1/traces/doomed", headers=bearer(writer)).status_code == 403
    assert c.get("/v1/traces/doomed", headers=bearer(admin)).status_code == 200
    answer = c.delete("/v1/traces/doomed", headers=bearer(admin))
    assert answer.status_code == 204, answer.text

    for path in _reads("doomed"):
        assert c.get(path, headers=bearer(admin)).status_code == 404, path
    found = c.get("/v1/traces", headers=bearer(admin)).json()["items"]
    assert [s["trace_id"] for s in found] == ["kept"]
    for file in ("raw/f", "clean/f"):
        hits = c.get("/v1/paths", params={"path": file}, headers=bearer(admin)).json()["items"]
        assert {h["trace_id"] for h in hits} == {"kept"}, file
    b64 = base64.b64encode(b"raw/f").decode()
    assert c.get(f"/status-from-path/{b64}", headers=bearer(admin)).json()["trace_id"] == "kept"
    assert c.get("/v1/traces/kept", headers=bearer(admin)).json()["event_count"] == 2

    again = c.delete("/v1/traces/doomed", headers=bearer(admin))
    assert again.status_code == 404 and "doomed" in again.json()["detail"]


def test_an_admin_of_some_datasets_deletes_only_their_traces(
    app_client: TestClient, store: Store
) -> None:
    c = app_client
    admin = add_key(store, "alpha:admin")
    sales_admin = add_key(store, "alpha:admin:sales")
    _send(c, admin, "s", "sales/1")
    _send(c, admin, "h", "hr/1")
    assert c.delete("/v1/traces/h", headers=bearer(sales_admin)).status_code == 404
    assert c.get("/v1/traces/h", headers=bearer(admin)).status_code == 200
    assert c.delete("/v1/traces/s", headers=bearer(sales_admin)).status_code == 204
    assert c.get("/v1/traces/s", headers=bearer(admin)).status_code == 404


def test_a_bad_trace_id_is_named_and_deletes_nothing(app_client: TestClient, store: Store) -> None:
    c = app_client
    admin = add_key(store, "alpha:admin")
    _send(c, admin, "t", "sales/1")
    answer = c.delete("/v1/traces/" + "x" * 5000, headers=bearer(admin))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["path", "trace_id"]
    assert c.get("/v1/traces/t", headers=bearer(admin)).status_code == 200


def test_the_server_prunes_in_the_background(store_url: str, store: Store, tmp_path: Path) -> None:
    rules = tmp_path / "pipelines.toml"
    rules.write_text("[default]\nretention_days = 30\n")
    old = now_us() - 40 * 86_400 * 1_000_000
    store.append([rec("old", "e1", at=old), rec("new", "e2", at=now_us())])
    settings = Settings(store=store_url, pipelines=str(rules), prune_interval_s=0.1)
    with TestClient(create_app(settings)):
        assert wait_for(lambda: store.summary("default", "old") is None, 10)
    assert store.summary("default", "new") is not None


def test_no_background_prune_with_an_interval_of_zero(
    store_url: str, store: Store, tmp_path: Path
) -> None:
    rules = tmp_path / "pipelines.toml"
    rules.write_text("[default]\nretention_days = 30\n")
    store.append([rec("old", "e1", at=now_us() - 40 * 86_400 * 1_000_000)])
    settings = Settings(store=store_url, pipelines=str(rules), prune_interval_s=0)
    with TestClient(create_app(settings)):
        assert not wait_for(lambda: store.summary("default", "old") is None, 1)


def test_a_bad_prune_interval_is_named() -> None:
    for bad in ("soon", "-1", "inf"):
        with pytest.raises(ValueError, match="WAYMARK_PRUNE_INTERVAL"):
            Settings.resolve(prune_interval=bad)
    assert Settings.resolve(prune_interval="0").prune_interval_s == 0
