"""The CLI against a live server: every command, every exit code of `wait`."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import LiveServer
from tests.test_api import TRACE, native_examples
from waymark.cli import app

runner = CliRunner()


def run(server: LiveServer, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--url", server.url], input=stdin)
    return result.exit_code, result.output


@pytest.fixture
def loaded(live_server: LiveServer) -> LiveServer:
    r = httpx.post(f"{live_server.url}/v1/events", json=native_examples())
    assert r.status_code == 202
    failed = {
        "trace_id": "broken",
        "status": "FAILED",
        "trace_status": "FINISHED",
        "component": "csv-validator",
        "errors": [{"message": {"nb": "Ugyldig verdi.", "en": "Invalid value."}}],
    }
    assert httpx.post(f"{live_server.url}/v1/events", json=failed).status_code == 202
    return live_server


def test_status_table_json_and_csv(loaded: LiveServer) -> None:
    code, out = run(loaded, "status", TRACE)
    assert code == 0
    for text in ("Done", "Trace ID", "Event status", TRACE, "FINISHED", "OK", "yes"):
        assert text in out
    code, out = run(loaded, "status", "broken", "--format", "json")
    assert code == 0
    assert json.loads(out) == {
        "done": True,
        "trace_id": "broken",
        "trace_status": "FINISHED",
        "trace_event_status": "FAILED",
        "errors": [{"message": {"nb": "Ugyldig verdi.", "en": "Invalid value."}}],
        "state": "FAILED",
        "outcome": "FAILED",
        "last_errors": [],
        "error_count": 1,
    }
    code, out = run(loaded, "status", "broken", "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["Done", "Trace ID", "Status", "Event status", "Errors"],
        ["yes", "broken", "FINISHED", "FAILED", "Invalid value."],
    ]


def test_status_shows_the_first_and_last_errors_of_many(loaded: LiveServer) -> None:
    events = [
        {"trace_id": "many", "event_id": f"m{n:02}", "start_time": f"2026-11-20T10:00:{n:02}Z",
         "errors": [{"message": {"en": f"bad row {n}"}}]}
        for n in range(30)
    ]  # fmt: skip
    assert httpx.post(f"{loaded.url}/v1/events", json=events).status_code == 202
    code, out = run(loaded, "status", "many", "--format", "csv")
    assert code == 0
    shown = list(csv.reader(io.StringIO(out)))[1][4]
    first, last = "; ".join(f"bad row {n}" for n in range(5)), "bad row 25"
    assert shown.startswith(first + "; (20 more); " + last)


def test_history(loaded: LiveServer) -> None:
    code, out = run(loaded, "status", TRACE, "--history", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["Component"] for r in rows] == ["data-uploader", "csv-to-parquet", "pipeline"]
    assert [r["Status"] for r in rows] == ["STARTED", "CONTINUE", "FINISHED"]
    assert rows[0]["Domain ID"] == "parking-fees/1"
    code, out = run(loaded, "history", TRACE, "--format", "json")
    assert [e["component"] for e in json.loads(out)] == [r["Component"] for r in rows]


def test_status_of_unknown_trace_exits_4(loaded: LiveServer) -> None:
    code, out = run(loaded, "status", "nope")
    assert code == 4 and "no trace" in out


def test_path(loaded: LiveServer) -> None:
    code, out = run(loaded, "path", "raw/green/parking-fees/fees.csv", "--format", "json")
    assert code == 0
    assert [h["trace_id"] for h in json.loads(out)] == [TRACE, TRACE]


def test_send_from_file_stdin_and_flags(live_server: LiveServer, tmp_path: object) -> None:
    code, out = run(live_server, "send", "-", stdin=json.dumps(native_examples()))
    assert code == 0 and len(out.split()) == 3
    code, out = run(live_server, "send", "--trace-id", "f", "--status", "FAILED",
                    "--trace-status", "FINISHED", "--component", "c")  # fmt: skip
    assert code == 0
    summary = httpx.get(f"{live_server.url}/v1/traces/f").json()
    assert summary["state"] == "FAILED" and summary["current"]["component"] == "c"
    code, out = run(live_server, "send", "--trace-id", "f", "--status", "MAYBE")
    assert code == 4 and "status" in out
    code, out = run(live_server, "send")
    assert code == 4


def test_wait_exit_codes(loaded: LiveServer) -> None:
    assert run(loaded, "wait", TRACE)[0] == 0
    assert run(loaded, "wait", "broken")[0] == 1
    httpx.post(f"{loaded.url}/v1/events", json={"trace_id": "open", "status": "IN_PROGRESS"})
    assert run(loaded, "wait", "open", "--timeout", "0.5")[0] == 2
    assert run(loaded, "wait", "never", "--timeout", "0.5")[0] == 4


def test_wait_returns_when_the_trace_finishes(loaded: LiveServer) -> None:
    httpx.post(f"{loaded.url}/v1/events", json={"trace_id": "soon", "status": "IN_PROGRESS"})

    def finish() -> None:
        time.sleep(0.5)
        httpx.post(f"{loaded.url}/v1/events", json={"trace_id": "soon", "trace_status": "FINISHED"})

    threading.Thread(target=finish).start()
    code, out = run(loaded, "wait", "soon", "--timeout", "30")
    assert code == 0 and "SUCCEEDED" in out


def test_unreachable_server_exits_4() -> None:
    result = runner.invoke(app, ["status", "x", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 4
    result = runner.invoke(app, ["wait", "x", "--url", "http://127.0.0.1:9", "--timeout", "1"])
    assert result.exit_code == 4
