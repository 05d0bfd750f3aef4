"""Bus mode: the collectors' commits write the webhook outbox, once per change."""

from __future__ import annotations

from tests.bus.conftest import collect_until, make_events, publish, records_of
from waymark.model import now_us
from waymark.store.base import Store, Webhook


def test_the_collector_commit_writes_each_change_once(store: Store, bus_url: str) -> None:
    store.add_webhook(
        Webhook("acme", "wh_1", "https://example.com/", ("trace.started",), "whsec_AA==", 1)
    )
    records = records_of(make_events(12, 4), "acme")
    publish(bus_url, records, per_message=5)
    publish(bus_url, records, per_message=7)  # the same events again: no new change

    collect_until(
        store,
        bus_url,
        lambda c: c.counters.appended + c.counters.duplicates >= 2 * len(records),
    )

    claimed = store.claim_notifications(now_us(), lease_us=60_000_000, limit=1000)
    started = sorted(n.trace_id for n in claimed)
    assert started == sorted({r.trace_id for r in records})
    assert {n.type for n in claimed} == {"trace.started"}
