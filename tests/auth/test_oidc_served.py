"""OpenID Connect end to end: `waymark serve --auth oidc` in front of the tests' own issuer
(:mod:`tests.oidc_issuer`, shaped like a Keycloak realm), and real clients: okdata-sdk
unchanged with a client-credentials token, Waymark's SDK, tracker and CLI with a token,
and every refusal as the HTTP answer a client sees."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from okdata.sdk.config import Config
from okdata.sdk.status import Status
from typer.testing import CliRunner

from tests.conftest import EXAMPLES, LiveServer
from tests.oidc_issuer import ClientApp, Issuer
from waymark.cli import app
from waymark.sdk import AsyncClient, Client, Forbidden, Tracker, Unauthenticated

AUDIENCE = "waymark"
TENANT = "oslo"
UPLOADER = "parking-fees-uploader"


def realm_roles(*roles: str) -> dict[str, Any]:
    """Claims as Keycloak puts realm roles into an access token."""
    return {"realm_access": {"roles": ["offline_access", "uma_authorization", *roles]}}


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with Issuer() as running:
        running.clients[UPLOADER] = ClientApp(
            secret="uploader-secret",
            claims={
                "aud": [AUDIENCE, "account"],
                **realm_roles(f"{TENANT}:writer:parking-fees", f"{TENANT}:reader:parking-fees"),
            },
        )
        yield running


def oidc_args(issuer: Issuer) -> list[str]:
    return [
        "--auth",
        "oidc",
        "--oidc-issuer",
        issuer.url,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-roles-claim",
        "realm_access.roles",
    ]


@pytest.fixture(scope="module")
def server(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    store = f"sqlite:///{tmp_path_factory.mktemp('oidc') / 'w.db'}"
    running = LiveServer(store, args=oidc_args(issuer))
    try:
        yield running
    finally:
        running.stop()


def token(issuer: Issuer, *roles: str, **claims: Any) -> str:
    return issuer.token(aud=AUDIENCE, azp="pipeline-bot", **realm_roles(*roles), **claims)


def call(server: LiveServer, credential: str | None, path: str = "/v1/traces") -> httpx.Response:
    headers = {"Waymark-Tenant": TENANT}
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=10)


# -- okdata-sdk, unchanged --------------------------------------------------------------------


def test_okdata_sdk_writes_and_reads_with_its_client_credentials_token(
    issuer: Issuer, server: LiveServer
) -> None:
    config = Config(
        config={
            "client_id": UPLOADER,
            "client_secret": "uploader-secret",
            "keycloakServerUrl": issuer.base_url,
            "keycloakRealm": issuer.realm,
            "statusApiUrl": f"{server.url}/status",
            "cacheCredentials": False,
            "env": "dev",
        }
    )
    sdk = Status(config=config)
    created = sdk.post(
        f"{server.url}/status", json.loads((EXAMPLES / "okdata-create.json").read_text())
    )
    trace_id = created.json()["trace_id"]
    sdk.update_status(trace_id, json.loads((EXAMPLES / "okdata-update.json").read_text()))
    history = sdk.get_status(trace_id)
    assert [e["component"] for e in history] == ["data-uploader", "s3-writer"]
    assert {e.get("submitted_by") for e in history} == {UPLOADER}
    # One token for all three calls: the SDK keeps it until it nears its expiry.
    assert issuer.hits[f"/realms/{issuer.realm}/protocol/openid-connect/token"] == 1


# -- refusals -----------------------------------------------------------------------------------


def refusal_tokens(issuer: Issuer) -> dict[str, str]:
    now = int(time.time())
    role = f"{TENANT}:reader"
    return {
        "garbage": "garbage",
        "garbage JWT": "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
        "expired": token(issuer, role, iat=now - 900, exp=now - 120),
        "not yet valid": token(issuer, role, nbf=now + 600),
        "wrong issuer": token(issuer, role, iss="http://127.0.0.1:1/realms/other"),
        "wrong audience": issuer.token(aud="account", **realm_roles(role)),
        "alg none": issuer.unsigned_token(aud=AUDIENCE, **realm_roles(role)),
        "HMAC with the public key": issuer.hmac_with_public_key(aud=AUDIENCE, **realm_roles(role)),
        "unknown kid": issuer.token(aud=AUDIENCE, kid="forged", **realm_roles(role)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "garbage JWT",
        "expired",
        "not yet valid",
        "wrong issuer",
        "wrong audience",
        "alg none",
        "HMAC with the public key",
        "unknown kid",
    ],
)
def test_each_bad_token_is_401(issuer: Issuer, server: LiveServer, case: str) -> None:
    credential = refusal_tokens(issuer)[case]
    answer = call(server, credential)
    assert answer.status_code == 401, answer.text
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.headers["content-type"] == "application/problem+json"
    assert credential not in answer.text


def test_no_credential_is_401(server: LiveServer) -> None:
    answer = call(server, None)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_good_token_reads(issuer: Issuer, server: LiveServer) -> None:
    assert call(server, token(issuer, f"{TENANT}:reader")).status_code == 200


def test_roles_tenants_and_datasets_are_403(issuer: Issuer, server: LiveServer) -> None:
    reader = token(issuer, f"{TENANT}:reader")
    posted = httpx.post(
        f"{server.url}/v1/events",
        json={"trace_id": "r-1"},
        headers={"Authorization": f"Bearer {reader}", "Waymark-Tenant": TENANT},
    )
    assert posted.status_code == 403  # a reader may not write
    other_tenant = call(server, token(issuer, "bergen:admin"))
    assert other_tenant.status_code == 403
    no_grants = call(server, token(issuer, "some-other-apps-role"))
    assert no_grants.status_code == 403

    limited = token(issuer, f"{TENANT}:writer:parking-fees", f"{TENANT}:reader:parking-fees")
    headers = {"Authorization": f"Bearer {limited}", "Waymark-Tenant": TENANT}
    elsewhere = httpx.post(
        f"{server.url}/v1/events",
        json={"trace_id": "t-x", "domain_id": "bus-routes/1"},
        headers=headers,
    )
    assert elsewhere.status_code == 403
    admin = token(issuer, f"{TENANT}:admin")
    stored = httpx.post(
        f"{server.url}/v1/events",
        json={"trace_id": "bus-1", "domain_id": "bus-routes/1"},
        headers={"Authorization": f"Bearer {admin}", "Waymark-Tenant": TENANT},
    )
    assert stored.status_code == 202
    assert call(server, admin, "/v1/traces/bus-1").status_code == 200
    assert call(server, limited, "/v1/traces/bus-1").status_code == 404  # not its dataset


def test_a_rotated_key_is_fetched_and_its_tokens_pass(issuer: Issuer, server: LiveServer) -> None:
    assert call(server, token(issuer, f"{TENANT}:reader")).status_code == 200
    certs = f"/realms/{issuer.realm}/protocol/openid-connect/certs"
    fetched = issuer.hits[certs]
    time.sleep(10.5)  # past the server's least interval between two fetches of the keys
    issuer.rotate("RS256")
    assert call(server, token(issuer, f"{TENANT}:reader")).status_code == 200
    assert issuer.hits[certs] == fetched + 1


def test_the_issuer_down_is_503_not_401(tmp_path: Path) -> None:
    with Issuer() as down:
        down.up = False
        running = LiveServer(f"sqlite:///{tmp_path / 'w.db'}", args=oidc_args(down))
        try:
            answer = call(running, token(down, f"{TENANT}:reader"))
        finally:
            running.stop()
    assert answer.status_code == 503
    assert "Retry-After" in answer.headers


# -- Waymark's own clients with a token ---------------------------------------------------------


def test_the_sdk_clients_send_their_token(issuer: Issuer, server: LiveServer) -> None:
    writer = token(issuer, f"{TENANT}:writer", f"{TENANT}:reader")
    with Client(server.url, TENANT, token=writer) as client:
        client.send({"trace_id": "sdk-1", "trace_status": "FINISHED"})
        assert client.wait("sdk-1", timeout=10).done

    async def read() -> bool:
        async with AsyncClient(server.url, TENANT, token=writer) as client:
            return (await client.summary("sdk-1")).done

    assert asyncio.run(read())
    with Client(server.url, TENANT) as anonymous, pytest.raises(Unauthenticated):
        anonymous.summary("sdk-1")
    reader = token(issuer, f"{TENANT}:reader")
    with Client(server.url, TENANT, token=reader) as client, pytest.raises(Forbidden):
        client.send({"trace_id": "sdk-2"})


def test_waymark_token_from_the_environment(
    issuer: Issuer, server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYMARK_TOKEN", token(issuer, f"{TENANT}:writer"))
    with Client(server.url, TENANT) as client:
        assert client.send({"trace_id": "env-1"}).accepted == 1


def test_the_tracker_sends_its_token(issuer: Issuer, server: LiveServer) -> None:
    writer = token(issuer, f"{TENANT}:writer")
    tracker = Tracker(url=server.url, tenant=TENANT, component="loader", token=writer)
    with tracker.step(stage="LOAD", trace_id="tracked-1", trace_status="FINISHED"):
        pass
    assert tracker.flush(10)
    tracker.close()
    assert tracker.stats().sent == 1
    assert call(server, token(issuer, f"{TENANT}:reader"), "/v1/traces/tracked-1").json()["done"]


def test_a_refused_tracker_warns_once_and_never_raises(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker(url=server.url, tenant=TENANT, component="loader", batch_size=1)
    with caplog.at_level(logging.WARNING, logger="waymark.sdk"):
        for i in range(3):

            @tracker.step(stage="LOAD", trace_id=f"refused-{i}")
            def step() -> str:
                return "ran"

            assert step() == "ran"
            assert tracker.flush(10)
        tracker.close()
    refused = [r for r in caplog.records if "refused the tracker's events" in r.getMessage()]
    assert len(refused) == 1
    assert "401" in refused[0].getMessage() and "WAYMARK_TOKEN" in refused[0].getMessage()
    assert tracker.stats().rejected == 3 and tracker.stats().sent == 0


def test_the_cli_sends_its_token(
    issuer: Issuer, server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAYMARK_TOKEN", raising=False)
    writer = token(issuer, f"{TENANT}:writer", f"{TENANT}:reader")
    cli = CliRunner()
    where = ["--url", server.url, "--tenant", TENANT]
    sent = cli.invoke(
        app,
        ["send", "--trace-id", "cli-1", "--trace-status", "FINISHED", *where, "--token", writer],
    )
    assert sent.exit_code == 0, sent.output
    shown = cli.invoke(
        app, ["status", "cli-1", "--format", "json", *where], env={"WAYMARK_TOKEN": writer}
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["done"] is True
    waited = cli.invoke(app, ["wait", "cli-1", "--timeout", "5", *where, "--token", writer])
    assert waited.exit_code == 0
    refused = cli.invoke(app, ["status", "cli-1", *where])
    assert refused.exit_code == 4
    assert "--token or WAYMARK_TOKEN" in refused.output


# -- the other doors with a token -------------------------------------------------------------


def test_openlineage_client_sends_a_token_as_its_api_key(
    issuer: Issuer, server: LiveServer
) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    run_id = "01936a52-6c1e-7b9a-8f3d-2a4b5c6d7e42"
    writer = token(issuer, f"{TENANT}:writer")
    config = HttpConfig.from_dict(
        {"url": server.url, "timeout": 10, "auth": {"type": "api_key", "apiKey": writer}}
    )
    lineage = OpenLineageClient(transport=HttpTransport(config))
    lineage.emit(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="2026-12-03T09:00:00+00:00",
            run=Run(runId=run_id),
            job=Job(namespace="airflow", name="nightly"),
            producer="https://example.org/tests",
        )
    )
    # The token names one tenant, so the client needs no tenant header of its own.
    assert call(server, token(issuer, f"{TENANT}:reader"), f"/v1/traces/{run_id}").json()["done"]


def test_gsm_takes_the_tenant_from_data_partition_id(issuer: Issuer, server: LiveServer) -> None:
    body = (EXAMPLES / "gsm-status.json").read_bytes()
    url = f"{server.url}/api/status-publisher/v1/status"

    def publish(credential: str) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {credential}",
            "data-partition-id": "opendes",
            "Content-Type": "application/json",
        }
        return httpx.post(url, content=body, headers=headers, timeout=10)

    assert publish(token(issuer, "opendes:writer")).status_code == 200
    assert publish(token(issuer, f"{TENANT}:writer")).status_code == 403  # not that partition
