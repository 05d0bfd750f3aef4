"""GSM dataset details in bus mode: the API publishes them and answers once JetStream has
them, a collector stores them, and the API writes nothing to the store itself."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from fastapi.testclient import TestClient

from tests.bus.conftest import collect_until, count_rows, raw_publish
from tests.conftest import EXAMPLES
from tests.jetstream import JetStreamServer
from tests.tcp_proxy import TcpProxy
from waymark import wire
from waymark.api.app import create_app
from waymark.bus import open_bus
from waymark.bus.base import BusSettings, BusSink
from waymark.bus.nats import NatsInboundMessage
from waymark.config import Settings
from waymark.errors import Unavailable
from waymark.store import open_store
from waymark.store.base import DatasetDetails, Store
from waymark.store.sqlite import SQLiteStore

PUBLISH = "/api/status-publisher/v1/dataset-details"
READ = "/api/status-processor/v1/dataset-details"
OPENDES = {"data-partition-id": "opendes"}
TRACE = "7d3f0c8e-2b1a-4c55-9a43-0e6d2f1b8c11"


def sent() -> list[dict[str, Any]]:
    """The shared example, and a second dataset of the same trace."""
    items: list[dict[str, Any]] = orjson.loads((EXAMPLES / "gsm-dataset-details.json").read_bytes())
    second = copy.deepcopy(items[0])
    second["properties"].update(
        datasetId="opendes:dataset--FileCollection.Generic:77",
        datasetVersionId=None,
        datasetType="FILE_COLLECTION",
        recordCount=3,
        timestamp=1763632802000,
    )
    return [*items, second]


def stream_messages(url: str) -> int:
    """Messages the events stream holds now, asked of the server."""
    settings = BusSettings.from_url(url)

    async def go() -> int:
        nc = await nats.connect(list(settings.servers))
        try:
            info = await nc.jetstream().stream_info(settings.stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(go())


def publish_details(url: str, details: Sequence[DatasetDetails]) -> None:
    """Through the API's own bus sink."""

    async def go() -> None:
        sink = BusSink(open_bus(url))
        try:
            await sink.submit_dataset_details(details)
        finally:
            await sink.close()

    asyncio.run(go())


def test_details_are_published_and_stored_by_a_collector_as_direct_mode_stores_them(
    tmp_path: Path, store_url: str, bus_url: str
) -> None:
    with TestClient(create_app(Settings(store=f"sqlite:///{tmp_path / 'direct.db'}"))) as client:
        assert client.post(PUBLISH, json=sent(), headers=OPENDES).status_code == 200
        direct = client.get(READ, params={"correlationId": TRACE}, headers=OPENDES).json()
    assert len(direct["results"]) == 2

    with TestClient(create_app(Settings(store=store_url, bus=bus_url))) as client:
        answer = client.post(PUBLISH, json=sent(), headers=OPENDES)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 2}
        assert stream_messages(bus_url) == 1  # in JetStream by the time the API answered
        again = client.post(PUBLISH, json=sent(), headers=OPENDES)  # a client's retry
        assert again.status_code == 200, again.text
        assert stream_messages(bus_url) == 1  # same message id: the server dropped it

        # The API wrote nothing itself: until a collector runs, there is nothing to read.
        found = client.get(READ, params={"correlationId": TRACE}, headers=OPENDES)
        assert found.json() == {"results": []}
        assert count_rows(store_url, "dataset_details") == 0

        store = open_store(store_url)
        try:
            counters = collect_until(store, bus_url, lambda c: c.counters.details >= 2)
        finally:
            store.close()
        assert (counters.messages, counters.details, counters.parked) == (1, 2, 0)
        assert client.get(READ, params={"correlationId": TRACE}, headers=OPENDES).json() == direct


def test_details_are_refused_with_503_when_nats_cannot_acknowledge_them(
    tmp_path: Path, bus_url: str, jetstream: JetStreamServer
) -> None:
    proxy = TcpProxy(("127.0.0.1", jetstream.port))
    through_proxy = bus_url.replace(f"127.0.0.1:{jetstream.port}", f"127.0.0.1:{proxy.port}")
    first, other = sent()
    try:
        settings = Settings(store=f"sqlite:///{tmp_path / 'w.db'}", bus=through_proxy)
        with TestClient(create_app(settings)) as client:
            accepted = client.post(PUBLISH, json=[first], headers=OPENDES)
            assert accepted.status_code == 200, accepted.text
            proxy.cut()
            refused = client.post(PUBLISH, json=[other], headers=OPENDES)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["code"] == 503  # GSM's error shape
    finally:
        proxy.close()
    assert stream_messages(bus_url) == 1  # only what was acknowledged, and answered 200


def test_redelivered_details_leave_one_row_each(
    store: Store, store_url: str, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    details = [
        DatasetDetails("opendes", TRACE, f"ds-{i}", "1", "FILE", i, 1_763_632_801_000_000, 7)
        for i in range(3)
    ]
    publish_details(bus_url, details)

    async def lost(self: NatsInboundMessage) -> None:
        """The commit is done, the ack never reaches the server (a crash right after it)."""

    with monkeypatch.context() as patched:
        patched.setattr(NatsInboundMessage, "ack", lost)
        first = collect_until(store, bus_url, lambda c: c.counters.details >= 3)
    assert first.details == 3
    assert count_rows(store_url, "dataset_details") == 3

    # The bus URL's ack_wait_s is 2 s: the message comes again, to the next collector.
    second = collect_until(store, bus_url, lambda c: c.counters.details >= 3)
    assert (second.messages, second.details, second.parked) == (1, 3, 0)
    assert count_rows(store_url, "dataset_details") == 3
    assert store.dataset_details("opendes", trace_id=TRACE) == details


def test_a_bad_details_message_is_parked_with_its_reason_and_the_rest_go_on(
    store: Store, bus_url: str
) -> None:
    good: dict[str, Any] = {
        "kind": "dataset_details",
        "v": 1,
        "tenant": "opendes",
        "received_us": 1_763_632_801_300_000,
        "details": [{"trace_id": "t-1", "dataset_id": "ds-1", "time_us": 1_763_632_801_200_000}],
    }
    entry = {"trace_id": "t-1", "dataset_id": "ds-2", "record_count": -1, "time_us": 5}
    negative = {**good, "details": [entry]}
    missing = {**good, "details": [{"trace_id": "t-1", "time_us": 5}]}
    newer = {**good, "v": 2}
    unknown = {**good, "kind": "lineage"}
    bad = [orjson.dumps(m) for m in (negative, missing, newer, unknown)]
    # The events format as every earlier version wrote it: no kind, no version.
    old = (
        b'{"tenant":"opendes","received_us":1763632801300000,"events":'
        b'[{"event_id":"old-1","trace_id":"t-1","trace_status":"FINISHED"}]}'
    )
    raw_publish(bus_url, "opendes", [*bad, old, orjson.dumps(good)])

    counters = collect_until(store, bus_url, lambda c: c.counters.messages >= 6)

    assert (counters.parked, counters.details, counters.appended) == (4, 1, 1)
    reasons = {letter.raw: letter.reason for letter in store.dead_letters()}
    assert set(reasons) == set(bad)
    assert reasons[bad[0]].startswith("message.details.0.record_count: "), reasons[bad[0]]
    assert reasons[bad[1]].startswith("message.details.0.dataset_id: "), reasons[bad[1]]
    assert reasons[bad[2]].startswith("message.v: dataset_details format 2"), reasons[bad[2]]
    assert "upgrade" in reasons[bad[2]]
    assert reasons[bad[3]].startswith("message.kind: unknown kind 'lineage'"), reasons[bad[3]]
    [stored] = store.dataset_details("opendes", trace_id="t-1")
    assert (stored.dataset_id, stored.time_us) == ("ds-1", 1_763_632_801_200_000)
    summary = store.summary("opendes", "t-1")
    assert summary is not None and summary.done


def test_many_details_travel_in_several_messages_each_read_back_whole() -> None:
    short = [
        DatasetDetails("a", f"t-{i}", f"ds-{i}", "1", "FILE", i, 1_000 + i, 7) for i in range(2500)
    ]
    long = [
        DatasetDetails("b", "t", f"{i:04d}" + "x" * 496, None, None, None, 5, 9)
        for i in range(1200)
    ]
    messages = wire.encode_details(short + long)

    decoded = [wire.decode(m.payload) for m in messages]
    assert [len(d.details) for d in decoded][:3] == [1000, 1000, 500]
    assert [d.details for d in decoded if d.tenant == "b"] != [long]  # split by bytes
    assert [x for d in decoded for x in d.details] == short + long
    assert all(len(m.payload) <= wire.DETAILS_BYTES + 200 for m in messages)
    assert all(not d.events for d in decoded)
    assert len({m.headers["Nats-Msg-Id"] for m in messages}) == len(messages)
    assert wire.encode_details(short + long) == messages  # a retry publishes the same ids


class FlakyDetailsStore(SQLiteStore):
    """A real SQLite store whose first dataset-details writes fail as an unreachable
    database would."""

    failures = 2

    def put_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise Unavailable("database is down (test)")
        super().put_dataset_details(details)


def test_details_the_store_cannot_take_now_are_retried_with_nothing_lost(
    tmp_path: Path, bus_url: str
) -> None:
    details = [DatasetDetails("opendes", TRACE, "ds-1", None, None, 4, 1_000, 7)]
    publish_details(bus_url, details)
    flaky = FlakyDetailsStore(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        counters = collect_until(flaky, bus_url, lambda c: c.counters.details >= 1, backoff_s=0.05)
        assert (counters.retries, counters.parked) == (2, 0)
        assert flaky.dataset_details("opendes", trace_id=TRACE) == details
    finally:
        flaky.close()
