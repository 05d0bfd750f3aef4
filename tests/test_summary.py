"""The summary rule (docs/architecture.md): worked examples, and the merge against the pure
function."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import event_sets
from waymark.model import LIST_END_BYTES, SUMMARY_BYTES, Event, Record, State, to_record
from waymark.pipelines import Pipeline, Pipelines
from waymark.summary import Ends, Partial, merge, render, summarize, unique_errors, unique_paths

NOW = 1_800_000_000_000_000
RULES = Pipelines(default=Pipeline(stall_timeout_s=None))


def records(raw: list[dict[str, Any]], tenant: str = "t") -> list[Record]:
    out = []
    for item in raw:
        event = Event.model_validate(item)
        out.append(to_record(event, tenant, NOW, finishing=RULES.finishes(tenant, event)))
    return out


def one(raw: list[dict[str, Any]], **kw: Any) -> Any:
    summary = summarize(records(raw), now_us=NOW, **kw)
    assert summary is not None
    return summary


def ev(event_id: str, end: str, **kw: Any) -> dict[str, Any]:
    return {"event_id": event_id, "trace_id": "x", "end_time": f"2026-11-20T10:00:{end}Z", **kw}


def test_not_done_takes_the_latest_event() -> None:
    s = one([ev("a", "01", trace_status="STARTED"), ev("b", "05", status="IN_PROGRESS")])
    assert not s.done
    assert s.trace_status == "CONTINUE"
    assert s.outcome == "IN_PROGRESS"
    assert s.state == State.RUNNING
    assert s.current.event_id == "b"
    assert s.finished_at is None


def test_finished_event_decides_even_if_later_events_arrive() -> None:
    s = one(
        [
            ev("a", "01", trace_status="STARTED"),
            ev("b", "05", trace_status="FINISHED", status="FAILED"),
            ev("c", "09", status="SUCCESS"),
        ]
    )
    assert s.done and s.trace_status == "FINISHED"
    assert s.trace_event_status == "FAILED" and s.outcome == "FAILED"
    assert s.state == State.FAILED
    assert s.current.event_id == "b"
    assert s.finished_at == "2026-11-20T10:00:05.000000Z"
    assert s.updated_at == "2026-11-20T10:00:09.000000Z"


def test_ties_in_time_are_broken_by_event_id() -> None:
    s = one([ev("b", "03", status="FAILED"), ev("a", "03", status="SUCCESS")])
    assert s.current.event_id == "b"
    assert s.trace_event_status == "FAILED"


def test_errors_in_key_order_without_repeats() -> None:
    e1 = {"message": {"en": "one"}}
    e2 = {"message": {"en": "two"}}
    s = one([ev("b", "05", errors=[e2, e1]), ev("a", "01", errors=[e1])])
    assert s.errors == [e1, e2]


def test_started_at_is_the_least_start_time_and_duration_spans_it() -> None:
    s = one(
        [
            ev("a", "04", start_time="2026-11-20T10:00:02Z"),
            ev("b", "06", trace_status="FINISHED"),
        ]
    )
    assert s.started_at == "2026-11-20T10:00:02.000000Z"
    assert s.duration_ms == 4000


def test_final_stage_with_terminal_status_finishes_a_gsm_journey() -> None:
    s = one([ev("a", "01", stage="WORKFLOW", status="SUBMITTED"), ev("b", "02", stage="WORKFLOW")])
    assert s.done and s.state == State.SUCCEEDED and s.current.event_id == "b"


def test_stalled_when_silent_past_the_timeout() -> None:
    raw = [ev("a", "01", status="IN_PROGRESS")]
    assert one(raw, stall_timeout_us=10).state == State.STALLED
    assert one(raw, stall_timeout_us=None).state == State.RUNNING


def test_duplicates_count_once() -> None:
    raw = [ev("a", "01"), ev("a", "01"), ev("b", "02")]
    assert one(raw).event_count == 2


@settings(max_examples=200)
@given(event_sets, st.randoms(use_true_random=False), st.data())
def test_merging_partials_in_any_order_and_grouping_equals_the_pure_function(
    raw: list[dict[str, Any]], rnd: Any, data: st.DataObject
) -> None:
    recs = [r for r in records(raw) if r.trace_id == raw[0]["trace_id"]]
    expected = summarize(recs, now_us=NOW)
    rnd.shuffle(recs)
    # fold left in a random order, in random groups
    cut = data.draw(st.integers(0, len(recs)))
    left = [Partial.of(r) for r in recs[:cut]]
    right = [Partial.of(r) for r in recs[cut:]]
    parts = []
    for group in (left, right):
        if group:
            acc = group[0]
            for p in group[1:]:
                acc = merge(acc, p)
            parts.append(acc)
    total = parts[0] if len(parts) == 1 else merge(parts[1], parts[0])
    key = lambda r: r.key  # noqa: E731
    ordered = sorted(recs, key=key)
    got = render(
        "t",
        recs[0].trace_id,
        total,
        Ends.of_list(unique_errors(e for r in ordered for e in r.errors)),
        Ends.of_list(unique_paths(p for r in ordered for p in r.paths)),
        now_us=NOW,
        stall_timeout_us=None,
    )
    assert got == expected


def test_generated_event_ids_are_time_ordered_uuids() -> None:
    import time
    import uuid

    from waymark.model import new_event_id

    first = new_event_id()
    time.sleep(0.002)
    later = [new_event_id() for _ in range(1000)]
    assert all(uuid.UUID(i).version == 7 for i in [first, *later])
    assert all(first < i for i in later)  # a later millisecond sorts after
    assert len(set(later)) == len(later)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """Ids take their random bits from a pool read in blocks; a child of ``fork`` starts
    with its own, or parent and child would hand out the same ids."""
    import os

    from waymark.model import new_event_id

    new_event_id()  # the pool now holds bits the child would inherit
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.write(write_end, "".join(new_event_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = os.read(read_end, 100_000).decode()
    os.close(read_end)
    parent = [new_event_id() for _ in range(50)]
    child_ids = [child[i : i + 36] for i in range(0, len(child), 36)]
    assert len(child_ids) == 50
    assert not {i[15:] for i in child_ids} & {i[15:] for i in parent}  # the random parts


def test_a_summary_shows_the_ends_of_its_lists_and_counts_them() -> None:
    assert Ends.of_list(list(range(7))) == Ends(7, [0, 1, 2, 3, 4], [5, 6])
    assert Ends.of_list(list(range(30))) == Ends(30, [0, 1, 2, 3, 4], [25, 26, 27, 28, 29])
    assert Ends.of_list([]) == Ends(0, [], [])
    big = "x" * (LIST_END_BYTES // 2)
    # each end within its bytes: the run stops at the first item that does not fit
    ends = Ends.of_list(["a", big, big, "b", "c", "d", big, big, "e"])
    assert ends == Ends(9, ["a", big], [big, "e"])


def test_a_summary_stays_small_whatever_its_errors_and_paths() -> None:
    huge = {"message": {"en": "é" * 100_000}}
    recs = records(
        [{"event_id": f"e{n}", "trace_id": "t", "trace_status": "STARTED",
          "component": "\x01" * 500, "stage": "\x01" * 500, "operation": "\x01" * 500,
          "domain_id": "\x01" * 500, "user": "\x01" * 500, "domain": "\x01" * 500,
          "errors": [huge, {"message": {"en": f"{n}" + "\x02" * 1000}}],
          "path": "中" * 10_000, "inputs": [f"{n}/" + "\x03" * 9_000]}
         for n in range(40)]
    )  # fmt: skip
    summary = summarize(recs, now_us=NOW)
    assert summary is not None
    assert (summary.error_count, summary.path_count) == (41, 41)
    assert len(summary.model_dump_json()) < SUMMARY_BYTES
