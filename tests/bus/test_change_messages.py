"""Change-feed bodies stay under the size a NATS server accepts, and decode back."""

from __future__ import annotations

from tests.bus.conftest import make_events, records_of
from waymark.bus.base import decode_changes, encode_changes
from waymark.model import now_us
from waymark.summary import HEAD_FIELDS, head_of, summarize


def test_change_bodies_are_split_under_the_limit_and_keep_every_trace() -> None:
    records = records_of(make_events(300, 3), "acme")
    by_trace: dict[str, list] = {}  # type: ignore[type-arg]
    for r in records:
        by_trace.setdefault(r.trace_id, []).append(r)
    summaries = [head_of(s) for g in by_trace.values() if (s := summarize(g, now_us=now_us()))]

    bodies = encode_changes("acme", summaries, 20_000)

    assert len(bodies) > 1
    assert all(len(b) <= 20_000 for b in bodies)
    decoded = [decode_changes(b) for b in bodies]
    assert all(d is not None and d[0] == "acme" for d in decoded)
    traces = [s["trace_id"] for d in decoded if d for s in d[1]]
    assert sorted(traces) == sorted(by_trace)


def test_a_summary_too_big_for_a_body_travels_as_its_trace_id() -> None:
    [summary] = [s for s in [summarize(records_of(make_events(1, 1)), now_us=now_us())] if s]
    [body] = encode_changes("default", [head_of(summary)], 200)
    decoded = decode_changes(body)
    assert decoded is not None
    assert decoded[1] == [
        {
            "trace_id": summary.trace_id,
            "tenant": "default",
            "done": summary.done,
            "state": summary.state.value,
        }
    ]


def test_a_body_that_is_not_a_change_is_ignored() -> None:
    assert decode_changes(b"nope") is None
    assert decode_changes(b"[1]") is None
    assert decode_changes(b'{"tenant": 1, "summaries": []}') is None


def test_a_head_holds_the_summary_fields_waiters_need() -> None:
    [summary] = [s for s in [summarize(records_of(make_events(1, 2)), now_us=now_us())] if s]
    assert head_of(summary) == {
        name: value
        for name, value in summary.model_dump(mode="json").items()
        if name in HEAD_FIELDS
    }
    assert set(head_of(summary)) == set(HEAD_FIELDS)
