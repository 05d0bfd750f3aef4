"""The store's webhook contract, on every backend: subscriptions, the outbox rows appends
write in their own transaction, the stall sweep and the notifier's claims."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.store.conftest import rec, write_concurrently
from waymark.model import now_us
from waymark.pipelines import Pipeline, Pipelines
from waymark.store import open_store
from waymark.store.base import Webhook
from waymark.store.sql import SqlStore
from waymark.store.webhooks import STALL_LOOK_BACK_US

LEASE = 60_000_000


def hook(
    hook_id: str = "wh_1",
    events: tuple[str, ...] = ("trace.started", "trace.succeeded", "trace.failed"),
    tenant: str = "default",
    created_us: int = 1,
    dataset: str | None = None,
) -> Webhook:
    return Webhook(
        tenant=tenant,
        id=hook_id,
        url="https://example.com/hook",
        events=events,
        secret="whsec_c2VjcmV0",
        created_us=created_us,
        dataset=dataset,
    )


def due(store: SqlStore) -> list[tuple[str, str, str]]:
    """Every due notification as (webhook, trace, type), claimed (and leased)."""
    claimed = store.claim_notifications(now_us() + LEASE, lease_us=LEASE, limit=1000)
    return sorted((n.webhook_id, n.trace_id, n.type) for n in claimed)


def test_subscriptions_are_stored_paged_and_deleted(store: SqlStore) -> None:
    for i in range(5):
        store.add_webhook(hook(f"wh_{i}", created_us=10 + i))
    store.add_webhook(hook("wh_x", tenant="other"))
    first = store.webhooks("default", limit=3)
    assert [h.id for h in first.items] == ["wh_0", "wh_1", "wh_2"]
    rest = store.webhooks("default", limit=3, cursor=first.next_cursor)
    assert [h.id for h in rest.items] == ["wh_3", "wh_4"] and rest.next_cursor is None
    assert store.webhook("default", "wh_x") is None
    assert store.webhook("other", "wh_x") == hook("wh_x", tenant="other")
    assert store.delete_webhook("default", "wh_0") is True
    assert store.delete_webhook("default", "wh_0") is False
    assert store.webhook("default", "wh_0") is None


def test_state_changes_of_an_append_are_written_once_per_matching_subscription(
    store: SqlStore,
) -> None:
    store.add_webhook(hook("wh_all"))
    store.add_webhook(hook("wh_failed", events=("trace.failed",)))
    store.add_webhook(hook("wh_ds", dataset="ds2"))
    store.add_webhook(hook("wh_other_tenant", tenant="other"))
    store.append([rec("t1", "e1", trace_status="STARTED", domain_id="ds1/f")])
    assert due(store) == [("wh_all", "t1", "trace.started")]
    # a CONTINUE changes no state: nothing new
    store.append([rec("t1", "e2", at=2_000_000, trace_status="CONTINUE")])
    assert due(store) == []
    store.append([rec("t1", "e3", at=3_000_000, trace_status="FINISHED", status="FAILED")])
    assert due(store) == [("wh_all", "t1", "trace.failed"), ("wh_failed", "t1", "trace.failed")]
    # re-sending the event stores nothing and notifies nothing
    store.append([rec("t1", "e3", at=3_000_000, trace_status="FINISHED", status="FAILED")])
    assert due(store) == []
    # started and finished in one batch: both, for the dataset's subscription too
    store.append([rec("t2", "e4", trace_status="FINISHED", domain_id="ds2/x")])
    assert due(store) == [
        ("wh_all", "t2", "trace.started"),
        ("wh_all", "t2", "trace.succeeded"),
        ("wh_ds", "t2", "trace.started"),
        ("wh_ds", "t2", "trace.succeeded"),
    ]


def test_concurrent_writers_of_one_trace_notify_each_change_once(store: SqlStore) -> None:
    store.add_webhook(hook())
    writers = [
        [[rec("t", f"w{w}-{i}", at=1_000_000 + i, trace_status="CONTINUE")] for i in range(10)]
        for w in range(4)
    ]
    writers[0].append([rec("t", "fin", at=9_000_000, trace_status="FINISHED")])
    write_concurrently(store, writers)
    assert due(store) == [("wh_1", "t", "trace.started"), ("wh_1", "t", "trace.succeeded")]


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(store: SqlStore) -> None:
    store.add_webhook(hook())
    store.append([rec(f"t{i}", f"e{i}") for i in range(30)])
    now = now_us()
    with ThreadPoolExecutor(3) as pool:
        claims = list(
            pool.map(lambda _: store.claim_notifications(now, lease_us=LEASE, limit=20), range(3))
        )
    ids = [n.id for claim in claims for n in claim]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert store.claim_notifications(now + 1, lease_us=LEASE) == []
    again = store.claim_notifications(now + LEASE + 1, lease_us=LEASE, limit=100)
    assert sorted(n.id for n in again) == sorted(ids)  # the same messages, same ids


def test_settled_rows_show_as_deliveries_and_a_give_up_marks_the_subscription(
    store: SqlStore,
) -> None:
    store.add_webhook(hook())
    store.append([rec("t1", "e1"), rec("t2", "e2")])
    first, second = store.claim_notifications(now_us(), lease_us=LEASE)
    store.settle_notification(
        first, at_us=10, status=500, error="answered 500", next_us=20, delivered=False
    )
    store.settle_notification(first, at_us=20, status=200, error=None, next_us=None, delivered=True)
    store.settle_notification(
        second, at_us=30, status=None, error="refused", next_us=None, delivered=False
    )
    shown = store.deliveries("default", "wh_1")
    assert [(d.id, d.attempts, d.status, d.delivered_us, d.gave_up_us) for d in shown] == [
        (second.id, 1, None, None, 30),
        (first.id, 2, 200, 20, None),
    ]
    failed = store.webhook("default", "wh_1")
    assert failed is not None and (failed.failed_us, failed.failure) == (30, "refused")
    assert store.claim_notifications(now_us() + LEASE, lease_us=LEASE) == []


def test_stalled_traces_are_noticed_once(store_url: str) -> None:
    rules = Pipelines({("default", "slow"): Pipeline(stall_timeout_s=3600)})
    store = open_store(
        store_url, Pipelines(default=Pipeline(stall_timeout_s=10), rules=rules.rules)
    )
    assert isinstance(store, SqlStore)
    try:
        now = now_us()
        store.add_webhook(hook(events=("trace.stalled",), created_us=now - 60_000_000))
        store.append(
            [
                rec("quiet", "e1", at=now - 20_000_000),  # silent 20 s of 10: stalled
                rec("busy", "e2", at=now),
                rec("slow", "e3", at=now - 20_000_000, domain="slow"),  # 1 h timeout
                rec("done", "e4", at=now - 20_000_000, trace_status="FINISHED"),
                rec("old", "e5", at=now - 600_000_000),  # stalled before the subscription
            ]
        )
        # "old" stalled before the subscription: noticed, but no message goes out for it
        assert sorted(store.sweep_stalls(now)) == [("default", "old"), ("default", "quiet")]
        assert due(store) == [("wh_1", "quiet", "trace.stalled")]
        assert store.sweep_stalls(now + 1_000_000) == []
        # a new event, then silence again: a new stall
        store.append([rec("quiet", "e6", at=now - 15_000_000)])
        assert store.sweep_stalls(now) == [("default", "quiet")]
        assert due(store) == [("wh_1", "quiet", "trace.stalled")]
    finally:
        store.close()


def test_stalls_of_tenants_without_subscriptions_are_noticed_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(store_url, Pipelines(default=Pipeline(stall_timeout_s=10)))
    assert isinstance(store, SqlStore)
    writes = 0
    write = store._write

    def counted(work: Any, size: int = 1) -> Any:
        nonlocal writes
        writes += 1
        return write(work, size)

    try:
        now = now_us()
        look_back = 10_000_000 + STALL_LOOK_BACK_US
        store.append(
            [
                rec("quiet", "e1", tenant="t1", at=now - 20_000_000),
                rec("busy", "e2", tenant="t1", at=now),
                rec("quiet", "e3", tenant="t2", at=now - look_back + 1_000_000),
                rec("ancient", "e4", tenant="t2", at=now - look_back - 1_000_000),
            ]
        )
        monkeypatch.setattr(store, "_write", counted)
        assert sorted(store.sweep_stalls(now)) == [("t1", "quiet"), ("t2", "quiet")]
        assert writes == 1
        assert due(store) == []  # noticed, and nobody to send it to
        # nothing new stalled: no write transaction at all
        assert store.sweep_stalls(now + 1_000_000) == []
        assert writes == 1
        # at most ``limit`` a sweep; the rest the next time
        store.append([rec("quiet", "e5", tenant="t1", at=now - 15_000_000)])
        store.append([rec("quiet", "e6", tenant="t2", at=now - 15_000_000)])
        assert store.sweep_stalls(now, limit=1) == [("t1", "quiet")]
        assert store.sweep_stalls(now, limit=1) == [("t2", "quiet")]
        assert store.sweep_stalls(now) == []
    finally:
        store.close()
