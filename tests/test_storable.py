"""What no store can hold is refused at every door, in every mode, naming the field:
NUL characters, integers beyond signed 64 bits, documents nested deeper than the limit;
and a forged paging cursor is a 422, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import pg_schema
from tests.test_api_errors import GSM_STATUS, example
from waymark import storable
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.errors import BadRequest, InvalidFields


def nested(levels: int, leaf: Any = 1) -> Any:
    """``levels`` objects, one inside the other, around ``leaf``."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def dumps(value: Any) -> bytes:
    """JSON of any depth (orjson itself stops at 255 levels)."""
    return json.dumps(value).encode()


def refusal(value: Any, where: tuple[Any, ...] = ("body",)) -> dict[str, Any]:
    with pytest.raises(InvalidFields) as caught:
        storable.load(dumps(value), where)
    [error] = caught.value.errors
    return error


# -- the check itself -------------------------------------------------------------------------


def test_nul_in_a_value_or_a_key_is_named() -> None:
    assert refusal({"meta": {"x": ["ok", "a\x00b"]}})["loc"] == ["body", "meta", "x", 1]
    assert refusal([{"meta": {"k\x00": 1}}])["loc"] == ["body", 0, "meta", "k\x00"]
    assert refusal("\x00", ())["loc"] == []


@pytest.mark.parametrize("number", [2**63, 2**64, 10**30, -(2**63) - 1, -(10**40)])
def test_an_integer_beyond_signed_64_bits_is_refused(number: int) -> None:
    error = refusal({"errors": [{"message": {"en": "x"}, "code": number}]})
    assert error["loc"] == ["body", "errors", 0, "code"]
    assert "2**63" in error["msg"]


@pytest.mark.parametrize("number", [2**63 - 1, -(2**63), 1.2345678901234567890123, 1e300])
def test_integers_within_64_bits_and_floats_pass(number: float) -> None:
    doc = {"meta": {"n": number, "s": "1234567890123456789012345"}}
    assert storable.load(dumps(doc)) == json.loads(dumps(doc))


def test_nesting_is_limited_and_never_recursion() -> None:
    at_limit = nested(storable.MAX_DEPTH)
    assert storable.load(dumps(at_limit)) == at_limit
    error = refusal(nested(storable.MAX_DEPTH + 1))
    assert len(error["loc"]) == 1 + storable.MAX_DEPTH and "64 levels" in error["msg"]
    deepest = b"[" * 1024 + b"]" * 1024  # as deep as the JSON parser goes
    with pytest.raises(InvalidFields):
        storable.load(deepest)
    with pytest.raises(InvalidFields):  # and with a long integer, which is read again exactly
        storable.load(b"[" * 1023 + b"12345678901234567890" + b"]" * 1023)
    with pytest.raises(BadRequest):
        storable.load(b"[" * 1025 + b"]" * 1025)


def test_a_long_key_is_cut_in_the_error() -> None:
    error = refusal({"k" * 10_000: "\x00"})
    assert len(error["loc"][1]) < 200


# -- every door, both stores ------------------------------------------------------------------


@dataclass(frozen=True)
class Door:
    """Where to post, the tenant header, a valid body with a free-form value put in it,
    the bad field's name in the door's error, and how that error is read."""

    url: str
    tenant_header: str
    body: Callable[[Any], Any]
    field: str
    named: Callable[[dict[str, Any]], str]


OL = example("openlineage-child-complete.json")

DOORS = {
    "v1": Door(
        "/v1/events",
        "Waymark-Tenant",
        lambda v: [{"trace_id": "t"}, {"trace_id": "t", "meta": {"k": v}}],
        "body.1.meta.k",
        lambda body: str(body["detail"]),
    ),
    "v1-body": Door(
        "/v1/events",
        "Waymark-Tenant",
        lambda v: {"trace_id": "t", "body": {"k": v}},
        "body.body.k",
        lambda body: str(body["detail"]),
    ),
    "v1-errors": Door(
        "/v1/events",
        "Waymark-Tenant",
        lambda v: {"trace_id": "t", "errors": [{"message": {"en": "x"}, "k": v}]},
        "body.errors.0.k",
        lambda body: str(body["detail"]),
    ),
    "okdata": Door(
        "/status",
        "Waymark-Tenant",
        lambda v: {**example("okdata-create.json"), "meta": {"k": v}},
        "meta.k",
        lambda body: str(body["message"]),
    ),
    "gsm-status": Door(
        "/api/status-publisher/v1/status",
        "data-partition-id",
        lambda v: [
            GSM_STATUS,
            {**GSM_STATUS, "properties": {**GSM_STATUS["properties"], "extra": {"k": v}}},
        ],
        "1:properties.extra.k",
        lambda body: "; ".join(f"{e['index']}:{e['field']}" for e in body["errors"]),
    ),
    "gsm-details": Door(
        "/api/status-publisher/v1/dataset-details",
        "data-partition-id",
        lambda v: [
            {
                "kind": "datasetDetails",
                "properties": {"correlationId": "c", "datasetId": "d", "k": v},
            }
        ],
        "0:properties.k",
        lambda body: "; ".join(f"{e['index']}:{e['field']}" for e in body["errors"]),
    ),
    "openlineage": Door(
        "/api/v1/lineage",
        "Waymark-Tenant",
        lambda v: {**OL, "job": {**OL["job"], "facets": {"k": v}}},
        "body.job.facets.k",
        lambda body: str(body["message"]),
    ),
}

UNSTORABLE = {
    "nul": "a\x00b",
    "nul-key": {"\x00": 1},
    "int64": 2**63,
    "beyond-u64": -(10**30),
    "deep": nested(storable.MAX_DEPTH),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_client(request: pytest.FixtureRequest, db_url: str) -> Iterator[TestClient]:
    if request.param == "sqlite":
        with TestClient(create_app(Settings(store=db_url))) as client:
            yield client
        return
    with pg_schema() as url, TestClient(create_app(Settings(store=url))) as client:
        yield client


def stored(client: TestClient) -> int:
    """Traces and dataset details stored for tenant ``opendes``."""
    traces = client.get("/v1/traces", headers={"Waymark-Tenant": "opendes"})
    details = client.get(
        "/api/status-processor/v1/dataset-details?correlationId=c",
        headers={"data-partition-id": "opendes"},
    )
    assert traces.status_code == details.status_code == 200
    return len(traces.json()["items"]) + len(details.json()["results"])


@pytest.mark.parametrize("value", UNSTORABLE)
@pytest.mark.parametrize("door", DOORS)
def test_every_door_refuses_what_no_store_can_hold(
    store_client: TestClient, door: str, value: str
) -> None:
    d = DOORS[door]
    answer = store_client.post(
        d.url,
        content=dumps(d.body(UNSTORABLE[value])),
        headers={d.tenant_header: "opendes", "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert d.named(answer.json()).startswith(d.field)
    assert stored(store_client) == 0


def test_the_okdata_update_refuses_it_too(store_client: TestClient) -> None:
    created = store_client.post("/status", json=example("okdata-create.json"))
    trace_id = created.json()["trace_id"]
    answer = store_client.post(f"/status/{trace_id}", content=dumps({"meta": {"n": 2**63}}))
    assert answer.status_code == 422, answer.text
    assert answer.json()["message"].startswith("meta.n:")


def cursor_of(*parts: Any) -> str:
    return base64.urlsafe_b64encode(dumps(list(parts))).decode().rstrip("=")


FORGED = [cursor_of(2**63, "a"), cursor_of(-(2**63) - 1, "a"), cursor_of(1, "a\x00")]


@pytest.mark.parametrize("cursor", FORGED)
def test_a_forged_cursor_is_422_wherever_a_cursor_is_read(
    store_client: TestClient, cursor: str
) -> None:
    assert store_client.post("/v1/events", json={"trace_id": "t"}).status_code == 202
    for url in ("/v1/traces", "/v1/traces/t/events"):
        answer = store_client.get(url, params={"cursor": cursor})
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["loc"] == ["query", "cursor"]
    answer = store_client.post(
        "/api/status-processor/v1/status/query",
        json={"statusQuery": {"correlationId": "t"}, "cursor": cursor},
        headers={"data-partition-id": "default"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "body.cursor"


@pytest.mark.parametrize(
    "url",
    [
        "/v1/traces?domain=a%00",
        "/v1/traces/a%00b",
        "/v1/traces/a%00b/events",
        "/v1/traces/a%00b/lineage",
        "/v1/paths?path=%00",
        "/status/a%00b",
        "/api/status-processor/v1/dataset-details?correlationId=%00",
    ],
)
def test_nul_in_a_path_or_query_parameter_is_422(store_client: TestClient, url: str) -> None:
    answer = store_client.get(url, headers={"data-partition-id": "default"})
    assert answer.status_code == 422, answer.text
    assert "NUL" in answer.text
