"""No input may produce a 500, and a rejected request stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import events
from waymark.api.app import create_app
from waymark.config import Settings

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["event_id", "trace_id", "status", "trace_status", "start_time", "end_time",
          "duration_ms", "errors", "inputs", "body", "attributes", "meta"]  # fmt: skip
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = Path(tmp_path_factory.mktemp("fuzz")) / "w.db"
    with TestClient(create_app(Settings(store=f"sqlite:///{db}"))) as client:
        yield client


def count(api: TestClient) -> int:
    total = 0
    cursor = None
    while True:
        page = api.get(
            "/v1/traces", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
        )
        total += sum(s["event_count"] for s in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return total


@FUZZ
@given(json_values)
def test_arbitrary_json_never_500(api: TestClient, body: Any) -> None:
    before = count(api)
    for url in ("/v1/events", "/v1/traces"):
        r = api.post(url, json=body)
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json"
    if r.status_code >= 400:
        assert count(api) == before


@FUZZ
@given(st.lists(events(), min_size=1, max_size=3), st.data())
def test_one_bad_field_rejects_the_batch(api: TestClient, batch: list[Any], data: Any) -> None:
    i = data.draw(st.integers(0, len(batch) - 1))
    field = data.draw(st.sampled_from(FIELDS))
    bad = {**batch[i], field: data.draw(json_values)}
    before = count(api)
    r = api.post("/v1/events", json=[*batch[:i], bad, *batch[i + 1 :]])
    assert r.status_code in (202, 413, 422), r.text
    if r.status_code == 422:
        assert any(e["loc"][:3] == ["body", i, field] for e in r.json()["errors"]), r.json()
        assert count(api) == before


@FUZZ
@given(st.text(max_size=30), st.text(max_size=30), HEADER_TEXT)
def test_arbitrary_query_strings_never_500(api: TestClient, a: str, b: str, c: str) -> None:
    for url, params in (
        ("/v1/traces", {"state": a, "since": b, "cursor": c}),
        ("/v1/traces", {"done": a, "until": b, "limit": c}),
        ("/v1/traces/x/events", {"limit": a, "cursor": b}),
        ("/v1/traces/x", {"wait": a}),
        ("/v1/paths", {"path": a, "limit": b}),
    ):
        assert api.get(url, params=params, headers={"Waymark-Tenant": c}).status_code < 500
