"""``GET /metrics`` of a real server, read with prometheus_client's own parser: what each
door accepted and refused, request durations by route template, traces turned done;
summed over the workers of ``waymark serve --workers 2``; protected when authentication
is on; and ``--log-format json``: every line a JSON object, with the request id."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pythonjsonlogger.json import JsonFormatter
from typer.testing import CliRunner

from tests.conftest import EXAMPLES, LiveServer, wait_for
from tests.receiver import Receiver
from waymark import logs
from waymark.cli import app as cli

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of ``url``/metrics, by name and labels (a new connection each time)."""
    answer = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def events(n: int, finished: str | None = None) -> list[dict[str, object]]:
    trace = uuid.uuid4().hex
    out: list[dict[str, object]] = [
        {"trace_id": trace, "component": f"step-{i}", "status": "IN_PROGRESS"} for i in range(n)
    ]
    if finished is not None:
        out.append({"trace_id": trace, "trace_status": "FINISHED", "status": finished})
    return out


def test_metrics_of_one_server(live_server: LiveServer) -> None:
    url = live_server.url
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/v1/events", json=events(3, "SUCCESS")).status_code == 202  # 4 events
        assert http.post("/v1/events", json=events(1, "FAILED")).status_code == 202  # 2
        assert http.post("/v1/events", json={"trace_id": ""}).status_code == 422
        created = http.post(
            "/status", json=json.loads((EXAMPLES / "okdata-create.json").read_text())
        )
        assert created.status_code == 200, created.text
        assert http.post("/status", json={"domain": "d"}).status_code == 422
        assert http.get(f"/v1/traces/{uuid.uuid4().hex}").status_code == 404
        random_path = f"/no/such/{uuid.uuid4().hex}"
        assert http.get(random_path).status_code == 404
    samples = scrape(url)
    assert value(samples, "waymark_events_accepted_total", door="v1") == 6
    assert value(samples, "waymark_events_accepted_total", door="okdata") == 1
    assert value(samples, "waymark_events_accepted_total", door="gsm") == 0
    assert value(samples, "waymark_events_rejected_total", door="v1", status="422") == 1
    assert value(samples, "waymark_events_rejected_total", door="okdata", status="422") == 1
    assert value(samples, "waymark_traces_turned_total", state="SUCCEEDED") == 1
    assert value(samples, "waymark_traces_turned_total", state="FAILED") == 1
    duration = "waymark_http_request_duration_seconds_count"
    assert value(samples, duration, route="/v1/events", method="POST", status="202") == 2
    assert value(samples, duration, route="/v1/events", method="POST", status="422") == 1
    summary = "/v1/traces/{trace_id:summary_trace_id}"
    assert value(samples, duration, route=summary, method="GET", status="404") == 1
    assert value(samples, duration, route="<unmatched>", method="GET", status="404") == 1
    assert not any(random_path in dict(labels).get("route", "") for _, labels in samples)
    assert value(samples, "waymark_store_append_seconds_count") >= 3


def test_counts_are_summed_over_two_workers(db_url: str, tmp_path: Path) -> None:
    server = LiveServer(db_url, args=["--workers", "2"])
    try:
        for _ in range(30):  # each on a new connection, taken by either worker
            assert httpx.post(f"{server.url}/v1/events", json=events(2)).status_code == 202
        directory = _multiproc_dir(server.proc.pid)
        assert directory is not None and Path(directory).is_dir()
        assert len({f.name.rsplit("_", 1)[-1] for f in Path(directory).glob("*.db")}) == 2
        for _ in range(10):  # whichever worker answers, it answers for both
            samples = scrape(server.url)
            assert value(samples, "waymark_events_accepted_total", door="v1") == 60
            route = {"route": "/v1/events", "method": "POST", "status": "202"}
            assert value(samples, "waymark_http_request_duration_seconds_count", **route) == 30
    finally:
        server.stop()
    assert not Path(directory).exists()  # the private directory goes with the server


def test_an_operators_directory_is_used_and_kept(db_url: str, tmp_path: Path) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"left over by an earlier run")
    server = LiveServer(
        db_url, env={"PROMETHEUS_MULTIPROC_DIR": str(given)}, args=["--workers", "2"]
    )
    try:
        assert httpx.post(f"{server.url}/v1/events", json=events(1)).status_code == 202
        samples = scrape(server.url)
        assert value(samples, "waymark_events_accepted_total", door="v1") == 1
        assert not (given / "counter_1.db").exists()  # emptied at start
        assert list(given.glob("*.db"))
    finally:
        server.stop()
    assert given.is_dir()


def _multiproc_dir(parent: int) -> str | None:
    """PROMETHEUS_MULTIPROC_DIR in the environment of a worker of the server ``parent``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        for item in environ:
            if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return item.split(b"=", 1)[1].decode()
    return None


def _key(store: str, tenant: str, role: str) -> str:
    done = CliRunner().invoke(
        cli, ["keys", "create", "--tenant", tenant, "--role", role, "--store", store]
    )
    assert done.exit_code == 0, done.output
    return done.stdout.strip()


def test_with_authentication_a_reader_or_a_metrics_key_reads_them(db_url: str) -> None:
    keys = {
        role: _key(db_url, tenant, role)
        for tenant, role in (("*", "metrics"), ("alpha", "reader"), ("alpha", "writer"))
    }
    server = LiveServer(db_url, env={"WAYMARK_AUTH": "keys"})
    try:

        def bearer(role: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {keys[role]}"}

        assert httpx.get(f"{server.url}/metrics").status_code == 401
        refused = httpx.get(f"{server.url}/metrics", headers=bearer("writer"))
        assert refused.status_code == 403
        post = httpx.post(f"{server.url}/v1/events", json=events(2), headers=bearer("writer"))
        assert post.status_code == 202
        assert httpx.post(f"{server.url}/v1/events", json=events(2)).status_code == 401
        unfit = httpx.post(f"{server.url}/v1/events", json=events(2), headers=bearer("reader"))
        assert unfit.status_code == 403
        by_reader = scrape(server.url, bearer("reader"))
        assert value(by_reader, "waymark_events_accepted_total", door="v1") == 2
        assert value(by_reader, "waymark_events_rejected_total", door="v1", status="401") == 1
        assert value(by_reader, "waymark_events_rejected_total", door="v1", status="403") == 1
        # the refusals came through the access guard, and are timed all the same
        refusals = value(
            by_reader,
            "waymark_http_request_duration_seconds_count",
            route="/metrics",
            method="GET",
            status="401",
        )
        assert refusals == 1
        assert scrape(server.url, bearer("metrics"))  # the metrics key reads /metrics ...
        other = httpx.get(f"{server.url}/v1/traces", headers=bearer("metrics"))
        assert other.status_code == 403  # ... and nothing else
    finally:
        server.stop()


def test_json_logs_carry_the_request_id(db_url: str, tmp_path: Path) -> None:
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                *_serve(db_url),
                "--log-format",
                "json",
                "--log-level",
                "info",
            ],
            stdout=stdout,
            stderr=stderr,
            env=os.environ.copy(),
        )
        port = None
        try:
            assert wait_for(lambda: _port(err) is not None, 20)
            port = _port(err)
            answer = httpx.get(
                f"http://127.0.0.1:{port}/v1/traces/no-such-trace",
                headers={"X-Request-ID": "req-for-the-log"},
            )
            assert answer.status_code == 404
            assert answer.headers["x-request-id"] == "req-for-the-log"
            assert wait_for(lambda: b"req-for-the-log" in err.read_bytes(), 10)
        finally:
            proc.terminate()
            proc.wait(10)
    lines = [line for path in (out, err) for line in path.read_text().splitlines()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    ours = [r for r in records if r.get("request_id") == "req-for-the-log"]
    assert ours and ours[0]["logger"] == "waymark.api" and "404" in ours[0]["message"]
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's own lines too
    assert not any("request_id" in r for r in records if r["logger"].startswith("uvicorn"))
    assert not any("color_message" in r for r in records)  # uvicorn's, with terminal colours


def _serve(store: str) -> list[str]:
    return [sys.executable, "-m", "waymark.cli", "serve", "--port", "0", "--store", store]


def _port(stderr: Path) -> int | None:
    """The port uvicorn says it listens on (``--port 0`` takes a free one)."""
    for line in stderr.read_text().splitlines():
        try:
            message = json.loads(line)["message"]
        except (ValueError, KeyError):
            continue
        if "running on http://127.0.0.1:" in message:
            return int(message.rsplit(":", 1)[1].split()[0])
    return None


def test_a_bad_log_format_is_refused_by_name(db_url: str) -> None:
    done = CliRunner().invoke(cli, ["serve", "--store", db_url, "--log-format", "xml"])
    assert done.exit_code == 1
    assert "WAYMARK_LOG_FORMAT is 'xml': use text or json" in done.output


def test_a_json_line_holds_the_request_id_and_the_exception() -> None:
    formatting = dict(logs.log_config(logs.LogFormat.json, "info")["formatters"]["waymark"])
    formatter = JsonFormatter(**{k: v for k, v in formatting.items() if k != "()"})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(logs.RequestIdFilter())
    log = logging.getLogger("waymark.test_metrics")
    log.addHandler(handler)
    token = logs.REQUEST_ID.set("rid-1")
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        logs.REQUEST_ID.reset(token)
        log.removeHandler(handler)
    record = json.loads(stream.getvalue())
    assert record["request_id"] == "rid-1" and record["message"] == "failed"
    assert record["logger"] == "waymark.test_metrics" and record["level"] == "ERROR"
    assert "RuntimeError: boom" in record["exception"]


def test_webhook_deliveries_by_outcome_and_stalls(db_url: str, tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text("[default]\nstall_timeout_s = 1\n")
    env = {
        "WAYMARK_WEBHOOK_ALLOW_PRIVATE": "1",
        "WAYMARK_WEBHOOK_GIVE_UP_S": "2",
        "WAYMARK_STALL_SWEEP_S": "0.2",
        "WAYMARK_PIPELINES": str(pipelines),
    }
    flaky, down = Receiver(plan=[500], then=200), Receiver(then=500)
    server = LiveServer(db_url, env=env)
    try:
        for receiver in (flaky, down):
            subscribe = {"url": receiver.url, "events": ["trace.failed", "trace.stalled"]}
            assert httpx.post(f"{server.url}/v1/webhooks", json=subscribe).status_code == 201
        assert httpx.post(f"{server.url}/v1/events", json=events(1, "FAILED")).status_code == 202
        assert httpx.post(f"{server.url}/v1/events", json=events(1)).status_code == 202

        def settled() -> bool:
            samples = scrape(server.url)
            return (
                value(samples, DELIVERIES, outcome="gave_up") == 2  # down's two messages
                and value(samples, DELIVERIES, outcome="delivered") == 2  # flaky's, at last
                and value(samples, "waymark_traces_turned_total", state="STALLED") == 1
            )

        assert wait_for(settled, 30)
        samples = scrape(server.url)
        assert value(samples, DELIVERIES, outcome="failed") >= 2  # flaky's first, down's first
        assert value(samples, "waymark_traces_turned_total", state="FAILED") == 1
    finally:
        server.stop()
        flaky.stop()
        down.stop()


def test_stalls_are_counted_once_without_any_webhook(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text("[default]\nstall_timeout_s = 1\n")
    env = {"WAYMARK_STALL_SWEEP_S": "0.2", "WAYMARK_PIPELINES": str(pipelines)}
    server = LiveServer(f"sqlite:///{tmp_path / 'stalls.db'}", env=env)
    try:
        assert httpx.post(f"{server.url}/v1/events", json=events(1)).status_code == 202

        def stalled() -> float:
            return value(scrape(server.url), "waymark_traces_turned_total", state="STALLED")

        assert wait_for(lambda: stalled() == 1, 15)
        time.sleep(1.0)  # five more sweeps: the stall is not counted again
        assert stalled() == 1
    finally:
        server.stop()


DELIVERIES = "waymark_webhook_deliveries_total"
