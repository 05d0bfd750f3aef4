"""The okdata status API's real clients (okdata-sdk, okdata-aws) against a live server.

Neither client needs Keycloak here: ``okdata.sdk.config.Config(config={...})`` takes the
settings as a dict, and with no ``client_id``/``client_secret`` or ``username``/``password``
in it ``Authenticate`` finds no token provider and sends no ``Authorization`` header.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest
import requests
from okdata.aws.status import status_add, status_wrapper
from okdata.sdk.config import Config
from okdata.sdk.status import Status
from typer.testing import CliRunner

from tests.conftest import (
    EXAMPLES,
    LiveServer,
)
from waymark.cli import app

INCOMING = "raw/green/parking-fees/version=1/edition=20261120T100000/fees.csv"
OUTGOING = "processed/green/parking-fees/version=1/edition=20261120T100000/fees.parquet"


def sdk_config(server: LiveServer) -> Config:
    return Config(
        config={"statusApiUrl": f"{server.url}/status", "cacheCredentials": False, "env": "dev"}
    )


def lambda_event(trace_id: str) -> dict[str, Any]:
    """What a pipeline step's Lambda receives: the state machine's execution name is the
    trace id."""
    return {"execution_name": trace_id}


def create_trace(server: LiveServer) -> str:
    """The data uploader starts a trace with a plain POST (here through the SDK's session)."""
    sdk = Status(config=sdk_config(server))
    body = json.loads((EXAMPLES / "okdata-create.json").read_text())
    response = sdk.post(f"{server.url}/status", body)
    assert response.status_code == 200
    trace_id: str = response.json()["trace_id"]
    assert trace_id.startswith("parking-fees-")
    return trace_id


def test_wrapped_handlers_report_through_okdata_aws(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id = create_trace(live_server)
    config = sdk_config(live_server)

    monkeypatch.setenv("SERVICE_NAME", "csv-to-parquet")

    @status_wrapper(config)
    def write_parquet(event: dict[str, Any], context: object) -> dict[str, str]:
        status_add(
            domain="dataset",
            domain_id="parking-fees/1",
            status_body={"files_incoming": [INCOMING], "files_outgoing": [OUTGOING]},
        )
        return {"status": "ok"}

    assert write_parquet(lambda_event(trace_id), None) == {"status": "ok"}

    monkeypatch.setenv("SERVICE_NAME", "csv-validator")

    @status_wrapper(config)
    def validate(event: dict[str, Any], context: object) -> None:
        status_add(
            domain="dataset",
            domain_id="parking-fees/1",
            errors=[{"message": {"nb": "Ugyldig verdi.", "en": "Invalid value."}}],
        )
        raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError):
        validate(lambda_event(trace_id), None)

    history = Status(config=config).get_status(trace_id)
    assert [(e["component"], e["trace_status"], e["trace_event_status"]) for e in history] == [
        ("data-uploader", "STARTED", "OK"),
        ("csv-to-parquet", "CONTINUE", "OK"),
        ("csv-validator", "FINISHED", "FAILED"),
    ]
    wrote, failed = history[1], history[2]
    assert all(e["trace_id"] == trace_id for e in history)
    assert len({e["trace_event_id"] for e in history}) == 3
    assert wrote["operation"] == "write_parquet"
    assert wrote["status_body"]["files_outgoing"] == [OUTGOING]
    assert isinstance(wrote["duration"], float)
    assert failed["operation"] == "validate"
    assert failed["exception"] == "division by zero"
    assert (
        history[0]["s3_path"]
        == json.loads((EXAMPLES / "okdata-create.json").read_text())["s3_path"]
    )

    # What `okdata status` shows (done, trace_status, trace_event_status) and the errors,
    # from the native summary.
    summary = httpx.get(f"{live_server.url}/v1/traces/{trace_id}").json()
    assert summary["done"] is True
    assert summary["trace_status"] == "FINISHED"
    assert summary["trace_event_status"] == "FAILED"
    assert summary["state"] == "FAILED"
    assert [e["message"]["en"] for e in summary["errors"]] == ["Invalid value."]
    lineage = httpx.get(f"{live_server.url}/v1/traces/{trace_id}/lineage").json()
    edges = {(e["from"], e["to"]) for e in lineage["edges"]}
    [step] = {e["to"] for e in lineage["edges"] if e["from"] == f"path:{INCOMING}"}
    assert (step, f"path:{OUTGOING}") in edges

    # `waymark status` shows what `okdata status` would: done, status, event status and the
    # errors in English; `--history` the steps as `okdata status --history` lists them.
    cli = CliRunner()
    shown = cli.invoke(app, ["status", trace_id, "--format", "csv", "--url", live_server.url])
    assert shown.exit_code == 0
    assert list(csv.reader(io.StringIO(shown.output))) == [
        ["Done", "Trace ID", "Status", "Event status", "Errors"],
        ["yes", trace_id, "FINISHED", "FAILED", "Invalid value."],
    ]
    steps = cli.invoke(app, ["status", trace_id, "--history", "--format", "csv",
                             "--url", live_server.url])  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(steps.output)))
    assert [(r["Component"], r["Status"], r["Event status"]) for r in rows] == [
        (e["component"], e["trace_status"], e["trace_event_status"]) for e in history
    ]
    assert rows[2]["Errors"] == "Invalid value."


def test_a_successful_journey_reads_ok_until_finished(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id = create_trace(live_server)
    config = sdk_config(live_server)
    monkeypatch.setenv("SERVICE_NAME", "s3-writer")

    @status_wrapper(config)
    def step(event: dict[str, Any], context: object) -> None:
        status_add(domain="dataset", domain_id="parking-fees/1")

    step(lambda_event(trace_id), None)
    summary = httpx.get(f"{live_server.url}/v1/traces/{trace_id}").json()
    assert (summary["done"], summary["trace_status"], summary["trace_event_status"]) == (
        False,
        "CONTINUE",
        "OK",
    )

    @status_wrapper(config)
    def last_step(event: dict[str, Any], context: object) -> None:
        status_add(domain="dataset", domain_id="parking-fees/1", trace_status="FINISHED")

    last_step(lambda_event(trace_id), None)
    summary = httpx.get(f"{live_server.url}/v1/traces/{trace_id}").json()
    assert (summary["done"], summary["state"], summary["trace_event_status"]) == (
        True,
        "SUCCEEDED",
        "OK",
    )
    assert len(Status(config=config).get_status(trace_id)) == 3


def test_get_status_of_an_unknown_trace_raises_with_okdatas_message(
    live_server: LiveServer,
) -> None:
    with pytest.raises(requests.HTTPError) as exc:
        Status(config=sdk_config(live_server)).get_status("no-such-trace")
    assert exc.value.response is not None
    assert exc.value.response.status_code == 404
    assert exc.value.response.json()["message"] == "Could not find item: no-such-trace"


def test_update_status_through_the_sdk_answers_the_stored_item(live_server: LiveServer) -> None:
    trace_id = create_trace(live_server)
    item = json.loads((EXAMPLES / "okdata-update.json").read_text())
    stored = Status(config=sdk_config(live_server)).update_status(trace_id, item)
    assert stored["trace_id"] == trace_id
    assert stored["duration"] == 1618.2
    assert stored["status_body"] == item["status_body"]
    assert stored["trace_event_id"]
