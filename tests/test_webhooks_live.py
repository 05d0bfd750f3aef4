"""Webhooks against ``waymark serve`` processes: the outbox survives a SIGKILL, two
replicas on one PostgreSQL notify each change once, and the CLI manages subscriptions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from tests.conftest import LiveServer
from tests.receiver import Receiver, verified
from waymark.cli import app

PRIVATE = {"WAYMARK_WEBHOOK_ALLOW_PRIVATE": "1"}


def subscribe(server: LiveServer, url: str, *events: str) -> dict[str, str]:
    answer = httpx.post(f"{server.url}/v1/webhooks", json={"url": url, "events": list(events)})
    assert answer.status_code == 201, answer.text
    created: dict[str, str] = answer.json()
    return created


def failed(trace_id: str) -> list[dict[str, str]]:
    return [
        {"trace_id": trace_id, "event_id": f"{trace_id}-a", "trace_status": "STARTED"},
        {"trace_id": trace_id, "event_id": f"{trace_id}-b", "trace_status": "FINISHED",
         "status": "FAILED"},
    ]  # fmt: skip


def test_pending_deliveries_survive_a_sigkill(db_url: str) -> None:
    down = Receiver()
    port = down.port
    down.stop()  # nothing listens on the receiver's port until after the crash
    server = LiveServer(db_url, env=PRIVATE)
    try:
        hook = subscribe(server, f"http://127.0.0.1:{port}/hook", "trace.failed")
        assert httpx.post(f"{server.url}/v1/events", json=failed("t1")).status_code == 202
        deliveries = f"{server.url}/v1/webhooks/{hook['id']}/deliveries"
        deadline = time.monotonic() + 20
        while not httpx.get(deliveries).json()["items"] and time.monotonic() < deadline:
            time.sleep(0.1)
        (attempted,) = httpx.get(deliveries).json()["items"]
        assert attempted["delivered_at"] is None
        # and one the notifier may not have seen at all
        assert httpx.post(f"{server.url}/v1/events", json=failed("t2")).status_code == 202
        server.proc.kill()
        server.proc.wait()
    finally:
        server.stop()
    receiver = Receiver(port=port)
    again = LiveServer(db_url, env=PRIVATE)
    try:
        got = receiver.wait_for(2, timeout=45)
        by_trace = {r.json["data"]["trace_id"]: r for r in got}
        assert set(by_trace) == {"t1", "t2"}
        assert by_trace["t1"].headers["webhook-id"] == attempted["id"]  # the same message
        for r in got:
            assert verified(hook["secret"], r)["type"] == "trace.failed"
    finally:
        again.stop()
        receiver.stop()


def test_two_replicas_on_one_postgresql_notify_each_change_once(pg_url: str) -> None:
    receiver = Receiver()
    servers: list[LiveServer] = []
    try:
        for _ in range(2):  # one at a time, so that a failed start leaves none running
            servers.append(LiveServer(pg_url, env=PRIVATE))
        hook = subscribe(servers[0], receiver.url, "trace.started", "trace.failed")
        for i in range(30):
            server = servers[i % 2]
            sent = failed(f"t{i}")
            # the start and the end through different replicas
            assert httpx.post(f"{server.url}/v1/events", json=sent[:1]).status_code == 202
            other = servers[(i + 1) % 2]
            assert httpx.post(f"{other.url}/v1/events", json=sent[1:]).status_code == 202
        got = receiver.wait_for(60, timeout=30)
        time.sleep(2)  # both notifiers poll several times more
        got = list(receiver.got)
        changes = sorted((r.json["data"]["trace_id"], r.json["type"]) for r in got)
        assert changes == sorted(
            (f"t{i}", kind) for i in range(30) for kind in ("trace.started", "trace.failed")
        )
        assert len({r.headers["webhook-id"] for r in got}) == 60
        for r in got:
            verified(hook["secret"], r)
    finally:
        for server in servers:
            server.stop()
        receiver.stop()


def test_the_cli_manages_subscriptions(tmp_path: Path, db_url: str) -> None:
    receiver = Receiver()
    server = LiveServer(db_url, env=PRIVATE)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["webhooks", *args, "--url", server.url])
        assert result.exit_code == 0, result.output
        return result.output

    try:
        created = json.loads(
            run("create", receiver.url, "--event", "trace.started", "--dataset", "ds")
        )
        assert created["secret"].startswith("whsec_")
        listed = json.loads(run("list"))
        assert [h["id"] for h in listed] == [created["id"]]
        assert "secret" not in listed[0]
        assert json.loads(run("show", created["id"]))["dataset"] == "ds"
        event = {"trace_id": "t", "event_id": "e", "domain_id": "ds/1"}
        httpx.post(f"{server.url}/v1/events", json=event)
        receiver.wait_for(1)
        deadline = time.monotonic() + 10
        shown = json.loads(run("deliveries", created["id"]))
        while not (shown and shown[0]["delivered_at"]) and time.monotonic() < deadline:
            time.sleep(0.1)
            shown = json.loads(run("deliveries", created["id"]))
        assert [(d["type"], d["status_code"]) for d in shown] == [("trace.started", 200)]
        assert run("delete", created["id"]).strip() == f"deleted {created['id']}"
        # a subscription's text from the server reaches the terminal escaped
        hostile = run("create", receiver.url, "--event", "trace.failed", "--component", "a\u202eb")
        assert "\u202e" not in hostile and json.loads(hostile)["component"] == "a\u202eb"
        bad = runner.invoke(app, ["webhooks", "create", "ftp://x/", "--event", "trace.failed",
                                  "--url", server.url])  # fmt: skip
        assert bad.exit_code == 4 and "url" in bad.output
    finally:
        server.stop()
        receiver.stop()
