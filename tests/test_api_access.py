"""Authentication and authorization on every door: the access guard, API keys through
the whole app on both stores, tenants, dataset scope, ``submitted_by``, and the secret
that never shows again."""

from __future__ import annotations

import base64
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount

from waymark.api import access, problems
from waymark.api.app import create_app
from waymark.auth.grants import Principal, parse_grant
from waymark.auth.keys import make_key
from waymark.config import Settings
from waymark.errors import Unauthenticated
from waymark.model import now_us
from waymark.store import Store

KEYS = Settings(auth=("keys",))


def add_key(
    store: Store, *grants: str, name: str = "k", expires_in: timedelta | None = None
) -> str:
    """A new key in the store; its secret."""
    made = make_key([parse_grant(g) for g in grants], name=name, expires_in=expires_in)
    store.add_api_key(made.key)
    return made.secret


def bearer(secret: str, tenant: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secret}"}
    if tenant is not None:
        headers["Waymark-Tenant"] = tenant
    return headers


# -- every route ------------------------------------------------------------------------------

_PARAMS = {
    "trace_id": "t-1",
    "webhook_id": "wh_1",
    "b64": base64.b64encode(b"raw/f").decode(),
    "name": "app.js",
}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: _PARAMS[m.group(1)], path)


def every_route(app: Any) -> list[tuple[BaseRoute, str]]:
    return [
        (route, method)
        for route in problems.served_routes(app.router.routes)
        for method in sorted(getattr(route, "methods", None) or {"GET"})
    ]


def test_every_route_declares_what_it_needs(tmp_path: Path) -> None:
    app = create_app(Settings(store=f"sqlite:///{tmp_path / 'w.db'}", auth=("keys",)))
    routes = every_route(app)
    assert len(routes) > 20
    undeclared = [
        f"{method} {getattr(route, 'path', route)}"
        for route, method in routes
        if access.declared(route)[method] is None
    ]
    assert undeclared == []
    # and nothing is declared that the app does not serve (a stale or misspelt entry)
    served = {("GET" if m == "HEAD" else m, getattr(r, "path", "")) for r, m in routes}
    assert set(access.NEEDS) - served == set()


def test_no_route_answers_without_a_credential(tmp_path: Path) -> None:
    """Every route the app serves, with every method it takes, asked without a credential:
    only the open ones (health, the page's files) answer; every other one is 401."""
    app = create_app(Settings(store=f"sqlite:///{tmp_path / 'w.db'}", auth=("keys",)))
    answered = []
    with TestClient(app) as client:
        for route, method in every_route(app):
            path = concrete(getattr(route, "path", ""))
            if isinstance(route, Mount):  # static files: one of them
                path += "/swagger-ui-bundle.js"
            scope = {"type": "http", "method": method, "path": path, "headers": []}
            found = access._route_of(list(problems.served_routes(app.router.routes)), scope)
            assert found == (route, True)
            answer = client.request(method, path, headers={"data-partition-id": "alpha"})
            need = access.declared(route)[method]
            assert need is not None
            if need.open:
                assert answer.status_code != 401, f"{method} {path}"
                answered.append(f"{method} {path}")
            else:
                assert answer.status_code == 401, f"{method} {path}: {answer.status_code}"
                assert answer.headers["www-authenticate"].startswith("Bearer")
        # a path no route serves, or a method a route does not take, is refused the same
        # way, before "not found" or "method not allowed"
        assert client.get("/no/such/route").status_code == 401
        assert client.delete("/v1/events").status_code == 401
    assert sorted(answered) == [
        "GET /",
        "GET /docs/static/swagger-ui-bundle.js",
        "GET /healthz",
        "GET /readyz",
        "GET /ui/app.js",
    ]


def test_with_auth_off_nothing_is_asked(client: TestClient) -> None:
    answer = client.post("/v1/events", json={"trace_id": "t"}, headers={"Authorization": "x"})
    assert answer.status_code == 202
    item = client.get("/v1/traces/t/events").json()["items"][0]
    assert "submitted_by" not in item


# -- the guard, with an authenticator of the tests ---------------------------------------------


@dataclass
class Tokens:
    """An authenticator of the tests: known tokens, and ``bad`` refused as its own."""

    principals: dict[str, Principal]

    async def authenticate(self, credential: str) -> Principal | None:
        if credential == "bad":
            raise Unauthenticated("token expired")
        return self.principals.get(credential)


def test_the_guard_tries_each_way_in_in_turn(tmp_path: Path) -> None:
    everyone = Principal("ops", frozenset({parse_grant("*:admin")}))
    with TestClient(
        create_app(Settings(store=f"sqlite:///{tmp_path / 'w.db'}", auth=("keys",)))
    ) as c:
        c.app.state.authenticators = [  # type: ignore[attr-defined]
            Tokens({}),
            Tokens({"t1": everyone}),
        ]
        sent = c.post("/v1/events", json={"trace_id": "t"}, headers=bearer("t1", "any-tenant"))
        assert sent.status_code == 202, sent.text
        # "*" holds every tenant, so no single one: without the header, the default tenant
        assert c.get("/v1/traces/t", headers=bearer("t1")).status_code == 404
        assert c.get("/v1/traces/t", headers=bearer("t1", "any-tenant")).json()["tenant"] == (
            "any-tenant"
        )
        refused = c.get("/v1/traces/t", headers=bearer("bad", "any-tenant"))
        assert refused.status_code == 401 and refused.json()["detail"] == "token expired"
        assert c.get("/v1/traces/t", headers=bearer("t2", "x")).status_code == 401
        # the API's description: any valid credential
        assert c.get("/openapi.json", headers=bearer("t1")).status_code == 200
        # signed in, a request for no route, or a method a route does not take, is told so
        assert c.get("/no/such/route", headers=bearer("t1")).status_code == 404
        assert c.delete("/v1/events", headers=bearer("t1")).status_code == 405


def test_a_server_whose_ways_in_are_not_ready_refuses(tmp_path: Path) -> None:
    with TestClient(
        create_app(Settings(store=f"sqlite:///{tmp_path / 'w.db'}", auth=("keys",)))
    ) as c:
        c.app.state.authenticators = []  # type: ignore[attr-defined]
        assert c.get("/v1/traces/t", headers=bearer("x")).status_code == 503
        assert c.get("/healthz").status_code == 200


# -- API keys through the app, on both stores -----------------------------------------------------


def test_refusals(app_client: TestClient, store: Store) -> None:
    c = app_client
    reader = add_key(store, "alpha:reader", name="viewer")
    expired = add_key(store, "alpha:admin", expires_in=timedelta(seconds=1))
    revoked_secret = add_key(store, "alpha:admin", name="old")
    revoked_id = revoked_secret.split("_")[1]
    store.revoke_api_key(revoked_id, now_us())
    time.sleep(1.1)
    event = {"trace_id": "t"}

    def refused(headers: dict[str, str], status: int, words: str) -> None:
        answer = c.post("/v1/events", json=event, headers={"Waymark-Tenant": "alpha", **headers})
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert words in answer.json()["detail"]
        if status == 401:
            assert answer.headers["www-authenticate"] == 'Bearer realm="waymark"'

    refused({}, 401, "no credential")
    refused({"Authorization": "Bearer garbage"}, 401, "not an API key or token")
    refused({"Authorization": "Basic dXNlcjpwdw=="}, 401, "must be 'Bearer")
    refused({"Authorization": "Bearer "}, 401, "must be 'Bearer")
    refused({"Authorization": "Bearer wmk_0123456789abcdef_short"}, 401, "malformed")
    refused(bearer(revoked_secret), 401, "revoked")
    refused(bearer(expired), 401, "expired")
    refused(bearer(reader), 403, "no writer role in tenant 'alpha'")
    refused(bearer(reader, "beta"), 403, "no role in tenant 'beta'")
    # nothing of any refused request was stored
    assert store.summary("alpha", "t") is None


def test_tenant_and_roles(app_client: TestClient, store: Store) -> None:
    c = app_client
    writer = add_key(store, "alpha:writer", "alpha:reader", name="ingest")
    both = add_key(store, "alpha:reader", "beta:reader")
    admin = add_key(store, "beta:admin")
    # one tenant: the header may be left out
    assert c.post("/v1/events", json={"trace_id": "t"}, headers=bearer(writer)).status_code == 202
    assert c.get("/v1/traces/t", headers=bearer(writer)).json()["tenant"] == "alpha"
    # two tenants: the header picks one; without it the tenant is "default", not held
    assert c.get("/v1/traces/t", headers=bearer(both, "alpha")).status_code == 200
    assert c.get("/v1/traces/t", headers=bearer(both)).status_code == 403
    assert c.get("/v1/traces/t", headers=bearer(both, "beta")).status_code == 404
    # admin holds reader and writer in its tenant, and nothing elsewhere
    assert c.post("/v1/events", json={"trace_id": "b"}, headers=bearer(admin)).status_code == 202
    assert c.get("/v1/traces/b", headers=bearer(admin)).status_code == 200
    assert c.get("/v1/traces/t", headers=bearer(admin, "alpha")).status_code == 403
    # a bad tenant header is named, once the credential is known
    bad = c.get("/v1/traces/t", headers=bearer(both, "a b"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["header", "Waymark-Tenant"]


def test_each_door_refuses_in_its_own_shape(app_client: TestClient, store: Store) -> None:
    c = app_client
    reader = add_key(store, "alpha:reader")
    okdata = c.post("/status", json={}, headers={"Authorization": "Bearer nope"})
    assert okdata.status_code == 401 and set(okdata.json()) == {"message", "request_id"}
    assert okdata.headers["www-authenticate"].startswith("Bearer")
    # a path of okdata's door that no route takes is refused in okdata's shape too
    nowhere = c.get("/status/a/b")
    assert nowhere.status_code == 401 and set(nowhere.json()) == {"message", "request_id"}
    gsm = c.post("/api/status-publisher/v1/status", json=[], headers={"data-partition-id": "alpha"})
    assert gsm.status_code == 401 and gsm.json()["code"] == 401 and "reason" in gsm.json()
    lineage = c.post("/api/v1/lineage", json={}, headers=bearer(reader))
    assert lineage.status_code == 403 and lineage.json()["code"] == 403
    # GSM's tenant is its data-partition-id
    query = {"statusQuery": {"correlationId": "t"}}
    gsm_reads = c.post(
        "/api/status-processor/v1/status/query",
        json=query,
        headers={"Authorization": f"Bearer {reader}", "data-partition-id": "alpha"},
    )
    assert gsm_reads.status_code == 200, gsm_reads.text
    elsewhere = c.post(
        "/api/status-processor/v1/status/query",
        json=query,
        headers={"Authorization": f"Bearer {reader}", "data-partition-id": "beta"},
    )
    assert elsewhere.status_code == 403 and elsewhere.json()["code"] == 403


def test_dataset_scope(app_client: TestClient, store: Store) -> None:
    c = app_client
    admin = add_key(store, "alpha:admin", name="admin")
    sales = add_key(store, "alpha:writer:sales", "alpha:reader:sales", name="sales-ingest")
    for trace, domain_id in (("s", "sales/1/latest"), ("h", "hr/1"), ("n", None)):
        event: dict[str, Any] = {"trace_id": trace, "path": "raw/f", "inputs": ["raw/f"]}
        if domain_id:
            event["domain_id"] = domain_id
        assert c.post("/v1/events", json=event, headers=bearer(admin)).status_code == 202

    # writes: only events whose domain_id names the dataset; the refusal names the field
    ok = c.post("/v1/events", json={"trace_id": "s", "domain_id": "sales"}, headers=bearer(sales))
    assert ok.status_code == 202, ok.text
    batch = [{"trace_id": "s", "domain_id": "sales/2"}, {"trace_id": "h", "domain_id": "hr/1"}]
    refused = c.post("/v1/events", json=batch, headers=bearer(sales))
    assert refused.status_code == 403
    assert refused.json()["errors"] == [
        {"loc": ["body", 1, "domain_id"], "msg": "may not write dataset 'hr'"}
    ]
    assert "body[1].domain_id" in refused.json()["detail"]
    none = c.post("/v1/events", json={"trace_id": "s"}, headers=bearer(sales))
    assert none.status_code == 403 and "no dataset" in none.json()["detail"]
    assert store.summary("alpha", "s").event_count == 2  # type: ignore[union-attr]
    created = c.post("/v1/traces", json={"domain": "d", "domain_id": "hr/1"}, headers=bearer(sales))
    assert created.status_code == 403
    update = {
        "domain": "d",
        "domain_id": "sales",
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": "2026-01-01T00:00:01Z",
        "trace_status": "CONTINUE",
        "trace_event_status": "OK",
        "component": "c",
    }
    okdata = c.post("/status/h", json=update, headers=bearer(sales))
    assert okdata.status_code == 404, okdata.text  # a trace of another dataset, as if absent
    assert c.post("/status/s", json=update, headers=bearer(sales)).status_code == 200

    # reads: other datasets' traces are not there
    for path in ("/v1/traces/h", "/v1/traces/h/events", "/v1/traces/h/lineage", "/status/h"):
        assert c.get(path, headers=bearer(sales)).status_code == 404, path
        assert c.get(path, headers=bearer(admin)).status_code == 200, path
    assert c.get("/v1/traces/s", headers=bearer(sales)).status_code == 200
    found = c.get("/v1/traces", headers=bearer(sales)).json()["items"]
    assert [s["trace_id"] for s in found] == ["s"]
    assert len(c.get("/v1/traces", headers=bearer(admin)).json()["items"]) == 3
    hits = c.get("/v1/paths", params={"path": "raw/f"}, headers=bearer(sales)).json()["items"]
    assert {h["trace_id"] for h in hits} == {"s"}
    b64 = base64.b64encode(b"raw/f").decode()
    newest = c.get(f"/status-from-path/{b64}", headers=bearer(sales))
    assert newest.json()["trace_id"] == "s"


def test_submitted_by_is_recorded_and_cannot_be_sent(app_client: TestClient, store: Store) -> None:
    c = app_client
    ingest = add_key(store, "alpha:admin", name="ingest-bot")
    assert c.post("/v1/events", json={"trace_id": "t"}, headers=bearer(ingest)).status_code == 202
    started = c.post(
        "/status",
        json={
            "domain": "dataset",
            "domain_id": "d/1",
            "component": "c",
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-01T00:00:01Z",
        },
        headers=bearer(ingest),
    )
    assert started.status_code == 200, started.text
    lineage = {
        "eventType": "START",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": "0190a2d4-0000-7000-8000-000000000001"},
        "job": {"namespace": "n", "name": "j"},
        "producer": "https://example.com",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json",
    }
    assert c.post("/api/v1/lineage", json=lineage, headers=bearer(ingest)).status_code == 201
    gsm = [
        {
            "kind": "status",
            "properties": {"correlationId": "g", "stage": "S", "status": "SUCCESS", "timestamp": 1},
        }
    ]
    assert (
        c.post(
            "/api/status-publisher/v1/status",
            json=gsm,
            headers={"Authorization": f"Bearer {ingest}", "data-partition-id": "alpha"},
        ).status_code
        == 200
    )
    for trace in ("t", started.json()["trace_id"], "g"):
        items = c.get(f"/v1/traces/{trace}/events", headers=bearer(ingest)).json()["items"]
        assert [i["submitted_by"] for i in items] == ["ingest-bot"], trace
    history = c.get(f"/status/{started.json()['trace_id']}", headers=bearer(ingest)).json()
    assert history[0]["submitted_by"] == "ingest-bot"
    # a producer cannot claim to be someone else: the field is refused, by name
    claimed = c.post(
        "/v1/events", json={"trace_id": "t", "submitted_by": "admin"}, headers=bearer(ingest)
    )
    assert claimed.status_code == 422
    assert claimed.json()["errors"][0]["loc"] == ["body", "submitted_by"]


def test_a_revoked_key_stops_on_every_replica_within_10_seconds(
    store_url: str, store: Store
) -> None:
    secret = add_key(store, "alpha:reader")
    key_id = secret.split("_")[1]
    apps = [create_app(Settings(store=store_url, auth=("keys",))) for _ in range(2)]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        for replica in (one, two):  # both have the key in their cache now
            assert replica.get("/v1/traces", headers=bearer(secret)).status_code == 200
        store.revoke_api_key(key_id, now_us())
        revoked_at = time.monotonic()
        stopped: dict[int, float] = {}
        while len(stopped) < 2 and time.monotonic() - revoked_at < 15:
            for i, replica in enumerate((one, two)):
                if (
                    i not in stopped
                    and replica.get("/v1/traces", headers=bearer(secret)).status_code == 401
                ):
                    stopped[i] = time.monotonic() - revoked_at
            time.sleep(0.2)
    assert sorted(stopped) == [0, 1], stopped
    assert max(stopped.values()) < 10


def test_the_secret_never_shows_again(
    store_url: str, store: Store, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """After ``keys create`` printed it, the secret is in no stored byte, no log line and no
    answer: not when it is used, refused, listed or revoked."""
    from typer.testing import CliRunner

    from waymark.cli import app as cli

    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    made = runner.invoke(
        cli, ["keys", "create", "--tenant", "alpha", "--role", "admin", "--store", store_url]
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert re.fullmatch(r"wmk_[0-9a-f]{16}_[\w-]{43}", secret)
    key_id = secret.split("_")[1]
    seen: list[str] = []
    with TestClient(create_app(Settings(store=store_url, auth=("keys",)))) as c:
        for answer in (
            c.post("/v1/events", json={"trace_id": "t"}, headers=bearer(secret)),
            c.get("/v1/traces/t/events", headers=bearer(secret)),
            c.get("/v1/traces/t", headers=bearer(secret)),
            c.get("/v1/traces/t", headers=bearer(secret + "x")),
            c.get("/v1/traces/t", headers=bearer(secret, "beta")),
            c.get("/v1/traces/t", headers=bearer(secret[:-1] + "_")),
        ):
            seen.append(answer.text + repr(answer.headers))
    for args in (["list", "--format", "json"], ["list"], ["revoke", key_id]):
        out = runner.invoke(cli, ["keys", *args, "--store", store_url])
        assert out.exit_code == 0, out.output
        seen.append(out.output)
    assert key_id in seen[-3] and "submitted_by" in seen[1]
    seen += [r.getMessage() for r in caplog.records]
    assert caplog.records  # the server did log its requests' refusals
    for text in seen:
        assert secret not in text and secret.split("_", 2)[2] not in text
    assert not _stored_anywhere(store_url, store, secret, tmp_path)


def _stored_anywhere(store_url: str, store: Store, secret: str, tmp_path: Path) -> bool:
    needle = secret.split("_", 2)[2]  # the random part alone, in any row or byte
    if store_url.startswith("sqlite"):
        files = [p for p in tmp_path.iterdir() if p.name.startswith("waymark.db")]
        assert files
        return any(needle.encode() in p.read_bytes() for p in files)
    import psycopg

    with psycopg.connect(store_url) as conn:  # the store URL names the test's schema
        listed = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        tables = [r[0] for r in listed]
        assert "api_keys" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                if needle in repr(row):
                    return True
    return False
