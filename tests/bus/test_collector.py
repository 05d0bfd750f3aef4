"""The bus path with the real NATS JetStream and a real store: publish, collect, compare."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.msg import Msg

from tests.bus.conftest import (
    assert_summaries_match,
    collect_until,
    make_events,
    publish,
    raw_publish,
    records_of,
)
from tests.conftest import pg_schema
from waymark.bus import open_bus
from waymark.bus.base import BusSettings, InboundMessage
from waymark.collector import RESOLVERS, Collector, Resolved, resolve_events
from waymark.errors import Unavailable
from waymark.pipelines import Pipelines
from waymark.store import open_store
from waymark.store.base import AppendResult, Store
from waymark.store.sqlite import SQLiteStore
from waymark.summary import head_of


def test_published_events_reach_the_store_with_the_pure_summary(store: Store, bus_url: str) -> None:
    records = records_of(make_events(30, 5), "acme")
    publish(bus_url, records, per_message=40)

    counters = collect_until(store, bus_url, lambda c: c.counters.appended >= len(records))

    assert counters.appended == len(records)
    assert counters.duplicates == 0
    assert counters.parked == 0
    assert_summaries_match(store, records)
    assert store.summary("default", records[0].trace_id) is None  # tenant kept


def test_a_republished_message_is_stored_once(store: Store, bus_url: str) -> None:
    records = records_of(make_events(10, 3))
    publish(bus_url, records, per_message=30)
    publish(bus_url, records, per_message=30)  # same Nats-Msg-Id: the server drops it
    publish(bus_url, records, per_message=7)  # other messages, same events: the store drops them

    counters = collect_until(
        store, bus_url, lambda c: c.counters.appended + c.counters.duplicates >= 2 * len(records)
    )

    assert counters.messages == 1 + 5  # the re-publish of the first message never arrived
    assert counters.appended == len(records)
    assert counters.duplicates == len(records)
    assert_summaries_match(store, records)


def test_a_poison_message_is_parked_and_does_not_block_the_messages_behind_it(
    store: Store, bus_url: str
) -> None:
    before = records_of(make_events(5, 2, seed=1))
    after = records_of(make_events(5, 2, seed=2))
    bad_event = orjson.dumps(
        {"tenant": "default", "received_us": 1, "events": [{"event_id": "x", "status": "NOPE"}]}
    )
    publish(bus_url, before)
    raw_publish(bus_url, "default", [b"\xff not json", bad_event])
    publish(bus_url, after)

    counters = collect_until(
        store, bus_url, lambda c: c.counters.appended >= len(before) + len(after)
    )

    assert counters.parked == 2
    assert counters.appended == len(before) + len(after)
    letters = store.dead_letters()
    assert {letter.raw for letter in letters} == {b"\xff not json", bad_event}
    reasons = " | ".join(letter.reason for letter in letters)
    assert "not JSON" in reasons
    assert "trace_id" in reasons and "status" in reasons  # the fields that are wrong
    assert all(letter.subject.endswith(".events.default") for letter in letters)
    assert_summaries_match(store, before + after)


class FlakyStore(SQLiteStore):
    """A real SQLite store whose first appends fail as an unreachable database would."""

    failures = 2

    def append(self, records: object, *, partials: bool = False) -> AppendResult:
        if self.failures > 0:
            self.failures -= 1
            raise Unavailable("database is down (test)")
        return super().append(records, partials=partials)  # type: ignore[arg-type]


def test_a_store_error_is_retried_with_nothing_lost(tmp_path: Path, bus_url: str) -> None:
    flaky = FlakyStore(f"sqlite:///{tmp_path / 'w.db'}")
    records = records_of(make_events(20, 4))
    try:
        publish(bus_url, records, per_message=80)
        counters = collect_until(
            flaky, bus_url, lambda c: c.counters.appended >= len(records), backoff_s=0.05
        )
        assert flaky.failures == 0
        assert counters.retries >= 1
        assert counters.appended == len(records)
        assert_summaries_match(flaky, records)
    finally:
        flaky.close()


def test_the_collector_announces_changed_summaries(store: Store, bus_url: str) -> None:
    settings = BusSettings.from_url(bus_url)
    records = records_of(make_events(3, 2), "acme")
    heard: list[dict[str, Any]] = []

    async def go() -> None:
        nc = await nats.connect(list(settings.servers))

        async def on_message(msg: Msg) -> None:
            heard.append(orjson.loads(msg.data))

        await nc.subscribe(settings.changes_subject("acme"), cb=on_message)
        bus = open_bus(bus_url)
        collector = Collector(store, bus, Pipelines())
        task = asyncio.create_task(collector.run())
        await asyncio.to_thread(publish, bus_url, records)
        for _ in range(200):
            if {s["trace_id"] for h in heard for s in h["summaries"]} >= {
                r.trace_id for r in records
            }:
                break
            await asyncio.sleep(0.05)
        collector.stop()
        await task
        await bus.close()
        await nc.close()

    asyncio.run(go())

    assert {s["trace_id"] for h in heard for s in h["summaries"]} == {r.trace_id for r in records}
    assert all(h["tenant"] == "acme" for h in heard)
    last = {s["trace_id"]: s for h in heard for s in h["summaries"]}
    for trace_id, doc in last.items():
        stored = store.summary("acme", trace_id)
        assert stored is not None and doc == head_of(stored)


def test_a_message_postgresql_refuses_is_parked_and_the_rest_of_its_batch_stored(
    bus_url: str,
) -> None:
    """PostgreSQL cannot hold NUL characters (SQLite can): the store refuses such an event
    as bad input, and the collector finds which message it came in, at once."""
    good = records_of(make_events(10, 2, seed=3))
    nul = records_of([{"event_id": "nul-1", "trace_id": "nul", "component": "a\x00b"}])
    with pg_schema() as url:
        store = open_store(url)
        try:
            publish(bus_url, good[:10], per_message=5)
            publish(bus_url, nul)
            publish(bus_url, good[10:], per_message=5)
            counters = collect_until(
                store, bus_url, lambda c: c.counters.appended >= len(good) and c.counters.parked
            )
            assert (counters.appended, counters.parked) == (len(good), 1)
            [letter] = store.dead_letters()
            assert "nul-1" in letter.raw.decode()
            assert "NUL" in letter.reason or "0x00" in letter.reason, letter.reason
            assert store.summary("default", "nul") is None
            assert_summaries_match(store, good)
        finally:
            store.close()


def test_a_message_the_collector_fails_on_unexpectedly_is_retried_then_parked(
    store: Store, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault of the collector's own (not of the message) is retried with backoff; after
    max deliveries the message is parked, and the others are stored meanwhile."""
    good = records_of(make_events(6, 2, seed=5))
    cursed = records_of([{"event_id": "cursed-1", "trace_id": "cursed"}])

    def resolve(message: InboundMessage, pipelines: Pipelines) -> Resolved:
        if b"cursed" in message.data:
            raise RuntimeError("a bug in the collector")
        return resolve_events(message, pipelines)

    monkeypatch.setitem(RESOLVERS, "events", resolve)
    publish(bus_url, good[:6], per_message=3)
    publish(bus_url, cursed)
    publish(bus_url, good[6:], per_message=3)

    counters = collect_until(
        store,
        bus_url,
        lambda c: c.counters.parked >= 1,
        max_deliveries=3,
        backoff_s=0.05,
    )

    assert counters.appended == len(good)
    assert counters.retries == 2  # deliveries 1 and 2 nak'ed, the 3rd parked
    [letter] = store.dead_letters()
    assert letter.reason == "cannot be read (delivery 3): a bug in the collector"
    assert b"cursed-1" in letter.raw
    assert_summaries_match(store, good)


def test_a_batch_is_stored_in_transactions_of_whole_messages(
    store: Store, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``max_append_events`` bounds a transaction; a message is never split across two."""
    records = records_of(make_events(6, 3, seed=11))  # 18 events, 3 to a message
    publish(bus_url, records, per_message=3)
    sizes: list[int] = []
    append = store.append

    def counted(batch: Any, **kwargs: Any) -> AppendResult:
        sizes.append(len(batch))
        return append(batch, **kwargs)

    monkeypatch.setattr(store, "append", counted)
    counters = collect_until(
        store, bus_url, lambda c: c.counters.appended >= len(records), max_append_events=7
    )
    assert counters.appended == len(records)
    assert sum(sizes) == len(records)
    assert all(size <= 7 and size % 3 == 0 for size in sizes), sizes
    assert_summaries_match(store, records)
