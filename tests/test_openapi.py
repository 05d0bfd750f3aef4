"""The API description: every operation of every door declares its request body (with
examples), its success answer and every error answer, in its door's shape; and ``/docs``
works without the internet, its files served by Waymark."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.browser import chromium
from tests.conftest import LiveServer

EXAMPLES = Path(__file__).parent.parent / "examples"
ERRORS = {"401", "403", "422", "503"}
BODY_ERRORS = {"400", "413"}
#: the error body's schema and media type of each door, by the path's beginning
DOORS = [
    ("/status", "OkdataError", "application/json"),
    ("/api/status-", "GsmError", "application/json"),
    ("/api/v1/lineage", "MarquezError", "application/json"),
    ("/", "ProblemDetails", "application/problem+json"),
]


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from waymark.api.app import create_app
    from waymark.config import Settings

    url = f"sqlite:///{tmp_path_factory.mktemp('spec')}/w.db"
    with TestClient(create_app(Settings(store=url))) as client:
        answer = client.get("/openapi.json")
        assert answer.status_code == 200
        data: dict[str, Any] = answer.json()
        return data


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_door_is_described(spec: dict[str, Any]) -> None:
    described = {(m, p) for m, p, _ in operations(spec)}
    assert {
        ("POST", "/v1/events"),
        ("GET", "/v1/traces/{trace_id}"),
        ("GET", "/v1/traces"),
        ("GET", "/v1/paths"),
        ("GET", "/v1/traces/{trace_id}/events"),
        ("GET", "/v1/traces/{trace_id}/lineage"),
        ("POST", "/status"),
        ("GET", "/status-from-path/{b64}"),
        ("POST", "/api/status-publisher/v1/status"),
        ("POST", "/api/v1/lineage"),
        ("POST", "/aws/step-functions/events"),
    } <= described


def test_every_operation_declares_its_success_and_error_answers(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        where = f"{method} {path}"
        responses = op["responses"]
        success = [s for s in responses if s.startswith("2")]
        assert len(success) == 1, where
        answer = responses[success[0]]
        # Marquez answers 201 with no body; a deletion, 204
        if (method, path) == ("GET", "/metrics"):  # Prometheus's text format
            assert list(answer["content"]) == ["text/plain"], where
        elif (method, path) == ("GET", "/v1/stream"):  # Server-Sent Events
            assert list(answer["content"]) == ["text/event-stream"], where
        elif (method, path) != ("POST", "/api/v1/lineage") and success[0] != "204":
            assert resolve(spec, answer["content"]["application/json"]["schema"]), where
        wanted = ERRORS | (BODY_ERRORS if "requestBody" in op else set())
        assert wanted <= set(responses), where
        model, media = next((m, t) for prefix, m, t in DOORS if path.startswith(prefix))
        for status in set(responses) - set(success):
            content = responses[status]["content"]
            if (path, status) == ("/readyz", "503"):  # its own answer, warnings and all
                assert content["application/json"]["schema"]["$ref"].endswith("/Readiness")
                continue
            assert list(content) == [media], where
            assert content[media]["schema"] == {"$ref": f"#/components/schemas/{model}"}, where
        assert "Retry-After" in responses["503"]["headers"], where


def test_every_body_has_a_schema_and_every_front_door_examples(spec: dict[str, Any]) -> None:
    examples = {}
    for method, path, op in operations(spec):
        if method != "POST":
            continue
        content = op["requestBody"]["content"]["application/json"]
        assert content["schema"], path
        examples[path] = content.get("examples", {})
    for path, files in {
        "/v1/events": ["native-events"],
        "/status": ["okdata-create"],
        "/status/{trace_id}": ["okdata-update", "okdata-update-failed"],
        "/api/status-publisher/v1/status": ["gsm-status"],
        "/api/status-publisher/v1/dataset-details": ["gsm-dataset-details"],
        "/api/v1/lineage": ["openlineage-child-complete"],
        "/aws/step-functions/events": ["stepfunctions-running", "stepfunctions-failed"],
    }.items():
        for name in files:
            expected = json.loads((EXAMPLES / f"{name}.json").read_text())
            assert examples[path][name]["value"] == expected, (path, name)


def test_the_event_schema_has_every_field_and_times_are_date_times(spec: dict[str, Any]) -> None:
    from waymark.model import Event, Summary

    event = spec["components"]["schemas"]["Event"]
    assert set(event["properties"]) == set(Event.model_fields)
    assert event["required"] == ["trace_id"]
    assert {"type": "string", "format": "date-time"} in event["properties"]["end_time"]["anyOf"][0][
        "anyOf"
    ]
    summary = spec["components"]["schemas"]["Summary"]
    assert set(summary["properties"]) == set(Summary.model_fields)
    for name in ("updated_at", "started_at", "finished_at"):
        assert "date-time" in json.dumps(summary["properties"][name]), name
    touch = resolve(spec, {"$ref": "#/components/schemas/PathTouch"})
    assert touch["properties"]["received_at"]["format"] == "date-time"
    page = spec["paths"]["/v1/traces/{trace_id}/events"]["get"]["responses"]["200"]
    stored = resolve(spec, page["content"]["application/json"]["schema"])
    items = resolve(spec, stored["properties"]["items"]["items"])
    assert items["properties"]["received_at"]["format"] == "date-time"


def test_descriptions_hold_no_implementation_notes(spec: dict[str, Any]) -> None:
    text = json.dumps(spec)
    for note in ("``", ":attr:", ":class:", ":func:", ":mod:", ":data:", "waymark."):
        assert note not in text, note
    assert not re.search(r"\bbus mode\b|\bcollector\b|\bthread\b", text)


def test_docs_load_with_no_network_beyond_loopback(live_server: LiveServer, tmp_path: Path) -> None:
    """Swagger UI renders every operation from Waymark's own copy of its files: every host
    name but the server's fails to resolve, as without the internet."""
    import subprocess

    script = httpx.get(f"{live_server.url}/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text
    page = httpx.get(f"{live_server.url}/docs").text
    assert "cdn." not in page and "/docs/static/swagger-ui-bundle.js" in page
    argv = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        f"{live_server.url}/docs",
    ]
    dom = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=True).stdout
    assert 'class="swagger-ui' in dom
    assert "opblock" in dom  # the operations, drawn from /openapi.json
    assert "/aws/step-functions/events" in dom and "/v1/events" in dom


def test_answers_match_what_the_description_declares(spec: dict[str, Any], tmp_path: Path) -> None:
    """Real answers of every door, success and error, validated against the schema the
    description declares for their operation and status."""
    from jsonschema import Draft202012Validator

    from waymark.api.app import create_app
    from waymark.config import Settings

    def check(answer: httpx.Response, method: str, path: str) -> None:
        declared = spec["paths"][path][method.lower()]["responses"][str(answer.status_code)]
        if "content" not in declared:
            assert answer.content == b"", (method, path)
            return
        [(media, content)] = declared["content"].items()
        assert answer.headers["content-type"].startswith(media), (method, path)
        schema = {**content["schema"], "components": spec["components"]}
        errors = list(Draft202012Validator(schema).iter_errors(answer.json()))
        assert not errors, (method, path, answer.status_code, errors[0].message)

    def example(name: str) -> Any:
        return json.loads((EXAMPLES / f"{name}.json").read_text())

    gsm = {"data-partition-id": "opendes"}
    with TestClient(create_app(Settings(store=f"sqlite:///{tmp_path}/w.db"))) as c:
        check(c.post("/v1/events", json=example("native-events")), "POST", "/v1/events")
        check(c.post("/v1/events", json=[{}]), "POST", "/v1/events")
        check(c.post("/v1/events", content=b"{"), "POST", "/v1/events")
        trace = "parking-fees-5b0e"
        check(c.get(f"/v1/traces/{trace}"), "GET", "/v1/traces/{trace_id}")
        check(c.get("/v1/traces/nobody"), "GET", "/v1/traces/{trace_id}")
        check(c.get(f"/v1/traces/{trace}/events"), "GET", "/v1/traces/{trace_id}/events")
        check(c.get(f"/v1/traces/{trace}/lineage"), "GET", "/v1/traces/{trace_id}/lineage")
        check(c.get("/v1/traces", params={"component": "data-uploader"}), "GET", "/v1/traces")
        check(c.get("/v1/traces", params={"since": "never"}), "GET", "/v1/traces")
        check(
            c.get("/v1/paths", params={"path": "raw/green/parking-fees/fees.csv"}),
            "GET",
            "/v1/paths",
        )
        check(c.post("/v1/traces", json={"domain": "d", "domain_id": "ds/1"}), "POST", "/v1/traces")
        created = c.post("/status", json=example("okdata-create"))
        check(created, "POST", "/status")
        check(c.post("/status", json={}), "POST", "/status")
        okdata = created.json()["trace_id"]
        updated = c.post(f"/status/{okdata}", json=example("okdata-update-failed"))
        check(updated, "POST", "/status/{trace_id}")
        check(c.get(f"/status/{okdata}"), "GET", "/status/{trace_id}")
        check(c.get("/status/nobody"), "GET", "/status/{trace_id}")
        key = base64.b64encode(example("okdata-create")["s3_path"].encode()).decode()
        check(c.get(f"/status-from-path/{key}"), "GET", "/status-from-path/{b64}")
        publish = "/api/status-publisher/v1/status"
        check(c.post(publish, json=example("gsm-status"), headers=gsm), "POST", publish)
        check(c.post(publish, json=[{"kind": "status"}], headers=gsm), "POST", publish)
        details = "/api/status-publisher/v1/dataset-details"
        check(c.post(details, json=example("gsm-dataset-details"), headers=gsm), "POST", details)
        query = "/api/status-processor/v1/status/query"
        correlation = "7d3f0c8e-2b1a-4c55-9a43-0e6d2f1b8c11"
        body = {"statusQuery": {"correlationId": correlation}}
        check(c.post(query, json=body, headers=gsm), "POST", query)
        read = "/api/status-processor/v1/dataset-details"
        found = c.get(read, params={"correlationId": correlation}, headers=gsm)
        check(found, "GET", read)
        lineage = "/api/v1/lineage"
        check(c.post(lineage, json=example("openlineage-child-complete")), "POST", lineage)
        check(c.post(lineage, json={"eventType": "START"}), "POST", lineage)
        sfn = "/aws/step-functions/events"
        check(c.post(sfn, json=example("stepfunctions-failed")), "POST", sfn)
        check(c.post(sfn, json=[example("stepfunctions-running")] * 1001), "POST", sfn)
        check(c.get("/healthz"), "GET", "/healthz")
        check(c.get("/readyz"), "GET", "/readyz")
