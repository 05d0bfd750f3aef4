"""The summary contract through the API: any permutation, duplication and batching of a set of
events, posted in one stream or by several threads at once, gives the pure function's summary."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import event_sets
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.ingest import to_records
from waymark.model import Event, now_us
from waymark.pipelines import Pipeline, Pipelines
from waymark.summary import summarize

RULES = Pipelines(default=Pipeline(stall_timeout_s=None))
_tenants = itertools.count()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = Path(tmp_path_factory.mktemp("props")) / "w.db"
    with TestClient(create_app(Settings(store=f"sqlite:///{db}"), pipelines=RULES)) as client:
        yield client


def expected(raw: list[dict[str, Any]], tenant: str) -> dict[str, Any]:
    recs = to_records([Event.model_validate(e) for e in raw], tenant, RULES)
    out = {}
    for trace_id in {r.trace_id for r in recs}:
        summary = summarize([r for r in recs if r.trace_id == trace_id], now_us=now_us())
        assert summary is not None
        out[trace_id] = summary.model_dump(mode="json")
    return out


def check(api: TestClient, tenant: str, want: dict[str, Any]) -> None:
    for trace_id, summary in want.items():
        got = api.get(f"/v1/traces/{trace_id}", headers={"Waymark-Tenant": tenant})
        assert got.status_code == 200
        assert got.json() == summary


def post(api: TestClient, tenant: str, batch: list[dict[str, Any]]) -> None:
    r = api.post("/v1/events", json=batch, headers={"Waymark-Tenant": tenant})
    assert r.status_code == 202, r.text


def deliveries(data: st.DataObject, raw: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The events, some more than once, shuffled and cut into batches."""
    repeated = raw + data.draw(st.lists(st.sampled_from(raw), max_size=len(raw)))
    order = data.draw(st.permutations(repeated))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=4)))
    bounds = [0, *cuts, len(order)]
    return [order[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_sets, st.data())
def test_any_order_duplication_and_batching_gives_the_pure_summary(
    api: TestClient, raw: list[dict[str, Any]], data: st.DataObject
) -> None:
    tenant = f"p{next(_tenants)}"
    for batch in deliveries(data, raw):
        post(api, tenant, batch)
    check(api, tenant, expected(raw, tenant))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_sets, st.data())
def test_concurrent_writers_give_the_pure_summary(
    api: TestClient, raw: list[dict[str, Any]], data: st.DataObject
) -> None:
    tenant = f"c{next(_tenants)}"
    batches = deliveries(data, raw)
    writers = data.draw(st.integers(2, 4))
    failures: list[BaseException] = []

    def write(mine: list[list[dict[str, Any]]]) -> None:
        try:
            for batch in mine:
                post(api, tenant, batch)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(batches[i::writers],)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    check(api, tenant, expected(raw, tenant))
