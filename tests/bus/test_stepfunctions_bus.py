"""Step Functions' status changes in bus mode: published on the 202, stored by a collector,
with the same summary as when written directly."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until
from tests.test_api_stepfunctions import TRACE, URL, example
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.store.base import Store


def test_status_changes_travel_the_bus(store_url: str, store: Store, bus_url: str) -> None:
    with TestClient(create_app(Settings(store=store_url, bus=bus_url))) as client:
        answer = client.post(URL, json=[example("running"), example("failed")])
        assert answer.status_code == 202, answer.text
        again = client.post(URL, json=example("failed"))  # delivered twice by EventBridge
        assert again.status_code == 202
    collect_until(store, bus_url, lambda c: c.counters.appended >= 2)
    summary = store.summary("default", TRACE)
    assert summary is not None
    assert (summary.state.value, summary.event_count) == ("FAILED", 2)
    assert summary.errors[0]["message"]["en"].startswith("States.TaskFailed: ")
