"""Errors through every door: one status per kind of error, the request id in each answer
and in the log, and a 500 in the door's own shape for what nothing expected."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES
from waymark.api.app import create_app
from waymark.api.problems import status_of
from waymark.config import Settings
from waymark.errors import (
    BadCursor,
    BadRequest,
    InvalidFields,
    NotFound,
    SchemaOutdated,
    TooLarge,
    Unavailable,
)
from waymark.model import Record, Summary
from waymark.sink import Sink
from waymark.store.base import AppendResult, DatasetDetails, EventQuery, Page
from waymark.store.sqlite import SQLiteStore


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


GSM_STATUS = {
    "kind": "status",
    "properties": {
        "correlationId": "c-1",
        "stage": "INGEST",
        "status": "IN_PROGRESS",
        "timestamp": 1763632800000,
    },
}


@dataclass(frozen=True)
class Door:
    """One way in that takes events: where to post, which header names the tenant, a
    valid body, one with a bad field, one of the wrong kind of JSON value, and how its
    error bodies are read."""

    url: str
    tenant_header: str
    good: Any
    bad_field: Any
    wrong_kind: Any
    batch_of: Callable[[int], Any] | None
    message: Callable[[dict[str, Any]], str]
    problem_json: bool = False


DOORS = {
    "v1": Door(
        "/v1/events",
        "Waymark-Tenant",
        {"trace_id": "t"},
        {"trace_id": "t", "status": "DONE"},
        "text",
        lambda n: [{"trace_id": "t"}] * n,
        lambda body: str(body["detail"]),
        problem_json=True,
    ),
    "okdata": Door(
        "/status",
        "Waymark-Tenant",
        example("okdata-create.json"),
        {**example("okdata-create.json"), "start_time": "yesterday"},
        [1, 2],
        None,
        lambda body: str(body["message"]),
    ),
    "gsm": Door(
        "/api/status-publisher/v1/status",
        "data-partition-id",
        [GSM_STATUS],
        [{**GSM_STATUS, "properties": {**GSM_STATUS["properties"], "status": "DONE"}}],
        {},
        lambda n: [GSM_STATUS] * n,
        lambda body: str(body["message"]),
    ),
    "openlineage": Door(
        "/api/v1/lineage",
        "Waymark-Tenant",
        example("openlineage-child-complete.json"),
        {**example("openlineage-child-complete.json"), "eventType": "FINISHED"},
        "x",
        lambda n: [example("openlineage-child-complete.json")] * n,
        lambda body: str(body["message"]),
    ),
}


def post(client: TestClient, door: Door, body: Any, tenant: str = "opendes") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {door.tenant_header: tenant, "content-type": "application/json"}
    return client.post(door.url, content=raw, headers=headers)


def check(response: Any, door: Door, status: int) -> dict[str, Any]:
    """The status, the door's body shape, and the request id in body and header."""
    assert response.status_code == status, response.text
    expected_type = "application/problem+json" if door.problem_json else "application/json"
    assert response.headers["content-type"] == expected_type
    body: dict[str, Any] = response.json()
    assert door.message(body)
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# -- one status for each kind of error, on every door ---------------------------------------


@pytest.mark.parametrize("name", DOORS)
def test_the_same_bad_input_answers_the_same_status_on_every_door(
    client: TestClient, name: str
) -> None:
    door = DOORS[name]
    assert post(client, door, door.good).status_code < 300
    check(post(client, door, b'{"not json'), door, 400)
    check(post(client, door, door.wrong_kind), door, 400)
    check(post(client, door, door.bad_field), door, 422)
    check(post(client, door, door.good, tenant="two words"), door, 422)
    big = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    check(post(client, door, big), door, 413)
    if door.batch_of is not None:
        check(post(client, door, door.batch_of(1001)), door, 413)


def test_a_body_over_the_limit_is_refused_without_a_content_length(client: TestClient) -> None:
    """A chunked body is counted as it arrives (the whole of it is never held)."""

    def chunks() -> Iterator[bytes]:
        yield b'[{"trace_id": "t", "message": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}]'

    response = client.post("/v1/events", content=chunks())
    assert "content-length" not in response.request.headers
    check(response, DOORS["v1"], 413)
    check(client.get("/v1/traces/t"), DOORS["v1"], 404)


def test_an_unknown_trace_is_404_on_v1_and_okdata(client: TestClient) -> None:
    check(client.get("/v1/traces/nope"), DOORS["v1"], 404)
    check(client.get("/status/nope"), DOORS["okdata"], 404)


class DownSink(Sink):
    """A sink whose backend cannot be reached."""

    async def submit(self, records: Sequence[Record]) -> None:
        raise Unavailable("the bus is down", retry_after=7)

    async def submit_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        raise Unavailable("the bus is down", retry_after=7)

    async def check_ready(self) -> None:
        raise Unavailable("the bus is down", retry_after=7)


@pytest.mark.parametrize("name", DOORS)
def test_a_backend_that_cannot_be_reached_is_503_with_retry_after(db_url: str, name: str) -> None:
    door = DOORS[name]
    with TestClient(create_app(Settings(store=db_url), sink=DownSink())) as client:
        response = post(client, door, door.good)
    check(response, door, 503)
    assert response.headers["retry-after"] == "7"


def test_each_error_class_takes_the_status_of_its_nearest_listed_class() -> None:
    class OddCursor(BadCursor):
        pass

    class Gzip(BadRequest):
        pass

    assert status_of(BadRequest("x")) == 400
    assert status_of(Gzip("x")) == 400
    assert status_of(InvalidFields("x")) == 422
    assert status_of(OddCursor("x")) == 422
    assert status_of(TooLarge("x")) == 413
    assert status_of(NotFound("x")) == 404
    assert status_of(SchemaOutdated("x")) == 503
    assert status_of(RuntimeError("x")) == 500


# -- what nothing expected ----------------------------------------------------------------


class BrokenStore(SQLiteStore):
    """A store whose appends and reads fail in a way nothing in Waymark expects."""

    def append(self, records: Sequence[Record], *, partials: bool = False) -> AppendResult:
        raise RuntimeError("disk on fire")

    def summaries(self, tenant: str, trace_ids: Sequence[str]) -> list[Summary]:
        raise RuntimeError("disk on fire")

    def find_events(
        self, tenant: str, query: EventQuery, *, limit: int = 100, cursor: str | None = None
    ) -> Page[dict[str, Any]]:
        raise RuntimeError("disk on fire")


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[TestClient]:
    store = BrokenStore(f"sqlite:///{tmp_path / 'broken.db'}")
    try:
        with TestClient(create_app(store=store)) as test_client:
            yield test_client
    finally:
        store.close()


UNEXPECTED = [
    ("v1", "POST", "/v1/events", DOORS["v1"].good),
    ("v1", "GET", "/v1/traces/x", None),
    ("v1", "GET", "/v1/traces/x/events", None),
    ("okdata", "POST", "/status", DOORS["okdata"].good),
    ("okdata", "GET", "/status/x", None),
    ("gsm", "POST", DOORS["gsm"].url, DOORS["gsm"].good),
    ("openlineage", "POST", DOORS["openlineage"].url, DOORS["openlineage"].good),
]


@pytest.mark.parametrize(("name", "method", "url", "body"), UNEXPECTED)
def test_an_unexpected_error_is_a_logged_500_in_the_doors_shape(
    broken: TestClient,
    caplog: pytest.LogCaptureFixture,
    name: str,
    method: str,
    url: str,
    body: Any,
) -> None:
    door = DOORS[name]
    headers = {door.tenant_header: "opendes", "X-Request-ID": f"req-{name}-{method}"}
    with caplog.at_level(logging.ERROR, logger="waymark.api"):
        response = broken.request(method, url, json=body, headers=headers)
    answer = check(response, door, 500)
    assert answer["request_id"] == f"req-{name}-{method}"
    assert "disk on fire" not in response.text  # what went wrong is for the log only
    (record,) = [r for r in caplog.records if r.name == "waymark.api"]
    assert f"req-{name}-{method}" in record.getMessage()
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "disk on fire"


# -- request ids --------------------------------------------------------------------------


def test_a_sane_request_id_is_echoed(client: TestClient) -> None:
    given = "trace-7/upload:1"
    ok = client.post("/v1/events", json={"trace_id": "t"}, headers={"X-Request-ID": given})
    assert ok.headers["x-request-id"] == given
    missing = client.get("/v1/traces/nope", headers={"X-Request-ID": given})
    assert missing.headers["x-request-id"] == given
    assert missing.json()["request_id"] == given
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["x-request-id"] == given


@pytest.mark.parametrize(
    "hostile", [b"x" * 201, b"a\x01b", b"del\x7f", b"two words", b"nb\xa0sp", b"\x85", b""]
)
def test_a_hostile_request_id_is_replaced(client: TestClient, hostile: bytes) -> None:
    first = client.get("/v1/traces/nope", headers={"X-Request-ID": hostile})
    second = client.get("/v1/traces/nope", headers={"X-Request-ID": hostile})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert hostile.decode("latin-1") not in ids
    assert ids[0] != ids[1]
    assert all(0 < len(i) <= 200 and i.isprintable() and " " not in i for i in ids)
    assert first.json()["request_id"] == ids[0]


def test_every_answer_has_a_request_id(client: TestClient) -> None:
    answers = [
        client.get("/"),
        client.get("/healthz"),
        client.get("/openapi.json"),
        client.get("/v1/traces"),
        client.get("/nowhere"),
        client.delete("/v1/events"),
    ]
    ids = [r.headers["x-request-id"] for r in answers]
    assert len(set(ids)) == len(ids)
