"""GSM stages publish Service Bus bodies straight to ``statuschangedtopic``; the collector
stores them through the GSM front door's translator."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import nats
import orjson

from tests.bus.conftest import collect_until
from tests.conftest import EXAMPLES
from waymark.bus import open_bus
from waymark.bus.base import BusSettings
from waymark.store.base import Store

EXAMPLE = EXAMPLES / "gsm-servicebus-body.json"
BODY: dict[str, Any] = {
    "message": {
        "data": [
            {
                "kind": "status",
                "properties": {
                    "correlationId": "7d3f0c8e-2b1a-4c55-9a43-0e6d2f1b8c11",
                    "recordId": "d2a7c9f0-run",
                    "recordIdVersion": "1",
                    "stage": "WORKFLOW",
                    "status": "IN_PROGRESS",
                    "message": "Changed manually by user. ",
                    "errorCode": 0,
                    "userEmail": "ingest@example.org",
                    "timestamp": 1763632830000,
                },
            }
        ],
        "account-id": "opendes",
        "data-partition-id": "opendes",
        "correlation-id": "7d3f0c8e-2b1a-4c55-9a43-0e6d2f1b8c11",
    }
}
TRACE = "7d3f0c8e-2b1a-4c55-9a43-0e6d2f1b8c11"


def publish_gsm(bus_url: str, bodies: list[bytes]) -> None:
    """As a GSM stage does: plain JetStream publishes to the GSM subject, no message id."""
    settings = BusSettings.from_url(bus_url)
    subject = settings.gsm_subject

    async def go() -> None:
        bus = open_bus(bus_url)
        await bus.connect()  # the streams exist once an API or a collector has started
        await bus.close()
        nc = await nats.connect(list(settings.servers))
        try:
            js = nc.jetstream()
            for body in bodies:
                await js.publish(subject, body)
        finally:
            await nc.close()

    asyncio.run(go())


def finished_body() -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    status = body["message"]["data"][0]["properties"]
    status.update(status="SUCCESS", timestamp=1763632890000, message="done")
    body["message"]["data"].append(
        {
            "kind": "datasetDetails",
            "properties": {
                "correlationId": TRACE,
                "datasetId": "opendes:dataset--File.Generic:1",
                "datasetVersionId": "1",
                "datasetType": "FILE",
                "recordCount": 12,
                "timestamp": 1763632891000,
            },
        }
    )
    return body


def test_gsm_bodies_on_the_gsm_subject_become_a_trace(store: Store, bus_url: str) -> None:
    assert orjson.loads(EXAMPLE.read_bytes()) == BODY  # the shared example, as it is
    bad = copy.deepcopy(BODY)
    del bad["message"]["data-partition-id"]
    publish_gsm(
        bus_url,
        [
            EXAMPLE.read_bytes(),
            orjson.dumps(bad),
            EXAMPLE.read_bytes(),  # published twice: one event
            orjson.dumps(finished_body()),
        ],
    )

    counters = collect_until(
        store, bus_url, lambda c: c.counters.messages >= 4 and c.counters.appended >= 2
    )

    assert (counters.appended, counters.duplicates, counters.parked) == (2, 1, 1)
    summary = store.summary("opendes", TRACE)
    assert summary is not None
    assert summary.done and summary.outcome == "SUCCESS" and summary.event_count == 2
    [details] = store.dataset_details("opendes", trace_id=TRACE)
    assert (details.dataset_id, details.record_count) == ("opendes:dataset--File.Generic:1", 12)
    [letter] = store.dead_letters()
    assert letter.raw == orjson.dumps(bad)
    assert "data-partition-id" in letter.reason
    assert letter.subject == BusSettings.from_url(bus_url).gsm_subject
