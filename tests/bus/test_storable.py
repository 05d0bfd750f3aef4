"""Bus mode: a batch the API accepts (202) is one the collector can store. What no store
can hold is refused at the door, before it is published; what the door takes, at the edge
of every limit, is stored by the collector, none of it parked."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until, stored_ids
from tests.test_api_errors import GSM_STATUS, example
from tests.test_storable import nested
from waymark import storable
from waymark.api.app import create_app
from waymark.config import Settings
from waymark.store import open_store

#: at the edge of every limit, every one of them storable
EDGE: dict[str, Any] = {
    "int64": [2**63 - 1, -(2**63)],
    "floats": [1e300, 1.2345678901234567890123],
    "controls": "\x01\x1b[2J\u2028\U0001f600",
    "keys": {"\x01": 1, "\U0001f600": 2, "": 3},
}


def post(client: TestClient, url: str, body: Any, tenant_header: str = "Waymark-Tenant") -> Any:
    return client.post(
        url,
        content=json.dumps(body).encode(),
        headers={tenant_header: "opendes", "content-type": "application/json"},
    )


def test_every_accepted_event_is_stored_and_nothing_refused_is_published(
    bus_url: str, store_url: str
) -> None:
    accepted: list[str] = []
    with TestClient(create_app(Settings(store=store_url, bus=bus_url))) as client:
        # refused at the door: one bad event spoils its batch, and nothing of it is published
        for bad in ("a\x00b", 2**63, nested(storable.MAX_DEPTH)):
            batch = [{"trace_id": "t-bad"}, {"trace_id": "t-bad", "meta": {"k": bad}}]
            assert post(client, "/v1/events", batch).status_code == 422
        # accepted: at the edge of every limit, through every door
        deepest = nested(storable.MAX_DEPTH - 2)  # the body, then meta: 64 levels
        one = {"trace_id": "t-1", "meta": deepest, "attributes": {"n": 2**63 - 1}}
        batch = [
            {"trace_id": "t-1", "meta": EDGE, "body": EDGE},
            {"trace_id": "t-1", "errors": [{"message": {"en": "x\x01"}, "extra": EDGE}]},
            {"trace_id": "t-1", "meta": {"k": nested(storable.MAX_DEPTH - 3)}},
        ]
        for body in (one, batch):
            answer = post(client, "/v1/events", body)
            assert answer.status_code == 202, answer.text
            accepted += answer.json()["event_ids"]
        okdata = post(client, "/status", {**example("okdata-create.json"), "meta": EDGE})
        assert okdata.status_code == 200, okdata.text
        gsm_body = [{**GSM_STATUS, "properties": {**GSM_STATUS["properties"], "x": EDGE}}]
        gsm = post(client, "/api/status-publisher/v1/status", gsm_body, "data-partition-id")
        assert gsm.status_code == 200, gsm.text
        lineage = post(client, "/api/v1/lineage", example("openlineage-child-complete.json"))
        assert lineage.status_code == 201, lineage.text

        store = open_store(store_url)
        try:
            expected = len(accepted) + 3  # okdata's, GSM's and OpenLineage's event
            counters = collect_until(
                store, bus_url, lambda c: c.counters.appended >= expected, timeout_s=30
            )
        finally:
            store.close()
    assert counters.parked == 0
    assert counters.appended == expected
    ids = stored_ids(store_url)
    assert len(ids) == expected and set(accepted) <= set(ids)
