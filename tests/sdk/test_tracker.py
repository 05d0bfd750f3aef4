"""The tracker in-process, over the memory transport: steps, context rules, ``add``."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from waymark.model import Event
from waymark.sdk import Tracker, bind, current_step, current_trace_id, from_lambda_event
from waymark.sdk.errors import InvalidRequest
from waymark.sdk.transports.base import EventDoc, Transport
from waymark.sdk.transports.memory import MemoryTransport


@pytest.fixture
def memory() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def tracker(memory: MemoryTransport) -> Iterator[Tracker]:
    tracker = Tracker(transport=memory, component="unit", tenant="t1")
    yield tracker
    tracker.close()


def delivered(tracker: Tracker, memory: MemoryTransport) -> list[EventDoc]:
    assert tracker.flush(10)
    return memory.events


def by_stage(events: list[EventDoc]) -> dict[str, EventDoc]:
    return {e["stage"]: e for e in events}


def test_decorated_sync_function_reports_one_event(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    @tracker.step(stage="TRANSFORM", trace_id="trace-a", domain="dataset")
    def double(x: int) -> int:
        return x * 2

    assert double(21) == 42
    [event] = delivered(tracker, memory)
    Event.model_validate(event)
    assert event["trace_id"] == "trace-a"
    assert event["component"] == "unit"
    assert event["stage"] == "TRANSFORM"
    assert event["operation"] == "double"
    assert event["domain"] == "dataset"
    assert event["status"] == "SUCCESS"
    assert event["trace_status"] == "CONTINUE"
    assert event["start_time"] <= event["end_time"]
    assert event["duration_ms"] >= 0
    assert len(event["event_id"]) == 32
    assert memory.tenants == ["t1"]


def test_decorated_coroutine_reports_after_awaiting(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    @tracker.step(stage="LOAD", trace_id="trace-async")
    async def load(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert asyncio.run(load(1)) == 2
    [event] = delivered(tracker, memory)
    assert (event["stage"], event["operation"], event["status"]) == ("LOAD", "load", "SUCCESS")


def test_exception_propagates_unchanged_and_is_reported(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    error = KeyError("missing-column")

    @tracker.step(stage="PARSE", trace_id="trace-fail")
    def parse() -> None:
        raise error

    with pytest.raises(KeyError) as caught:
        parse()
    assert caught.value is error
    [event] = delivered(tracker, memory)
    assert event["status"] == "FAILED"
    assert event["trace_status"] == "FINISHED"
    assert event["exception"] == "KeyError: 'missing-column'"


def test_failed_trace_status_is_configurable(memory: MemoryTransport) -> None:
    with Tracker(transport=memory, failed_trace_status="CONTINUE") as tracker:
        with pytest.raises(ValueError), tracker.step(stage="A", trace_id="t"):
            raise ValueError("x")
        with (
            pytest.raises(ValueError),
            tracker.step(stage="B", trace_id="t", failed_trace_status="FINISHED"),
        ):
            raise ValueError("y")
        events = by_stage(delivered(tracker, memory))
    assert events["A"]["trace_status"] == "CONTINUE"
    assert events["B"]["trace_status"] == "FINISHED"


def test_async_exception_propagates(tracker: Tracker, memory: MemoryTransport) -> None:
    async def main() -> None:
        async with tracker.step(stage="ASYNC-CM", trace_id="t-acm") as step:
            step.add(message="about to fail")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(main())
    [event] = delivered(tracker, memory)
    assert event["status"] == "FAILED"
    assert event["message"] == "about to fail"
    assert event["exception"] == "RuntimeError: boom"


def test_nested_steps_inherit_the_trace(tracker: Tracker, memory: MemoryTransport) -> None:
    @tracker.step(stage="INNER")
    def inner() -> str | None:
        return current_trace_id()

    with tracker.step(stage="OUTER", trace_id="trace-nested") as outer:
        assert current_step() is outer
        seen = inner()
        assert current_step() is outer
    assert current_step() is None
    assert seen == "trace-nested"
    events = by_stage(delivered(tracker, memory))
    assert events["INNER"]["trace_id"] == events["OUTER"]["trace_id"] == "trace-nested"
    assert events["INNER"]["trace_status"] == "CONTINUE"
    assert events["OUTER"]["trace_status"] == "CONTINUE"


def test_a_step_without_a_trace_starts_and_finishes_its_own(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    @tracker.step(stage="ROOT")
    def root() -> None:
        with tracker.step(stage="CHILD"):
            pass

    root()
    root()
    events = delivered(tracker, memory)
    roots = [e for e in events if e["stage"] == "ROOT"]
    children = [e for e in events if e["stage"] == "CHILD"]
    assert len({e["trace_id"] for e in roots}) == 2
    assert {e["trace_id"] for e in roots} == {e["trace_id"] for e in children}
    assert all(e["trace_status"] == "FINISHED" for e in roots)
    assert all(e["trace_status"] == "CONTINUE" for e in children)


def test_trace_id_from_a_callable_over_the_arguments(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    @tracker.step(stage="LAMBDA", trace_id=from_lambda_event)
    def handler(event: dict[str, Any], context: object) -> str:
        return "ok"

    @tracker.step(stage="KW", trace_id=lambda *, job: f"job-{job}")
    def run(*, job: int) -> None:
        pass

    assert handler({"execution_name": "parking-fees-5b0e"}, None) == "ok"
    run(job=7)
    events = by_stage(delivered(tracker, memory))
    assert events["LAMBDA"]["trace_id"] == "parking-fees-5b0e"
    assert events["KW"]["trace_id"] == "job-7"


def test_a_failing_trace_id_callable_never_breaks_the_step(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    @tracker.step(stage="S", trace_id=lambda x: x["no-such-key"])
    def f(x: dict[str, str]) -> int:
        return 5

    with tracker.step(stage="PARENT", trace_id="from-context"):
        assert f({}) == 5
    events = by_stage(delivered(tracker, memory))
    assert events["S"]["trace_id"] == "from-context"


def test_from_lambda_event() -> None:
    assert from_lambda_event({"execution_name": "abc"}, object()) == "abc"
    assert from_lambda_event({"execution_name": ""}) is None
    assert from_lambda_event({}) is None
    assert from_lambda_event("not a mapping") is None


def test_threads_inherit_only_a_copied_context(tracker: Tracker, memory: MemoryTransport) -> None:
    seen: dict[str, str | None] = {}

    def work(name: str) -> None:
        seen[name] = current_trace_id()
        with tracker.step(stage=name):
            pass

    with tracker.step(stage="MAIN", trace_id="trace-threads"):
        copied = contextvars.copy_context()
        threads = [
            threading.Thread(target=copied.run, args=(work, "COPIED")),
            threading.Thread(target=work, args=("PLAIN",)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(bind(work), ["BOUND-1", "BOUND-2"]))
    assert seen == {
        "COPIED": "trace-threads",
        "PLAIN": None,
        "BOUND-1": "trace-threads",
        "BOUND-2": "trace-threads",
    }
    events = by_stage(delivered(tracker, memory))
    assert events["COPIED"]["trace_id"] == "trace-threads"
    assert events["BOUND-1"]["trace_id"] == events["BOUND-2"]["trace_id"] == "trace-threads"
    assert events["PLAIN"]["trace_id"] != "trace-threads"
    assert events["PLAIN"]["trace_status"] == "FINISHED"  # it started a trace of its own


def test_concurrent_tasks_keep_their_own_steps(tracker: Tracker, memory: MemoryTransport) -> None:
    @tracker.step(stage="TASK", trace_id=lambda n: f"trace-{n}")
    async def task(n: int) -> str | None:
        await asyncio.sleep(0.01 * (3 - n))
        with tracker.step(stage=f"SUB-{n}"):
            await asyncio.sleep(0)
        return current_trace_id()

    async def main() -> list[str | None]:
        return list(await asyncio.gather(*(task(n) for n in range(3))))

    assert asyncio.run(main()) == ["trace-0", "trace-1", "trace-2"]
    events = by_stage(delivered(tracker, memory))
    assert [events[f"SUB-{n}"]["trace_id"] for n in range(3)] == [
        "trace-0",
        "trace-1",
        "trace-2",
    ]


def test_add_extends_merges_and_replaces(tracker: Tracker, memory: MemoryTransport) -> None:
    with tracker.step(stage="S", trace_id="t-add", inputs=["in/a.csv"]) as step:
        step.add(outputs=["out/a.parquet"], body={"rows": 10}, domain_id="ds/1")
        step.add(outputs=["out/b.parquet"], body={"cols": 3}, domain_id="ds/2")
        step.add(errors=[{"message": {"en": "late", "nb": "sent"}}])
        step.add(trace_status="FINISHED", status="PARTIAL_SUCCESS")
        step.add(trace_id="t-renamed")
        step.add(inputs="in/b.csv")
    [event] = delivered(tracker, memory)
    assert event["inputs"] == ["in/a.csv", "in/b.csv"]
    assert event["outputs"] == ["out/a.parquet", "out/b.parquet"]
    assert event["body"] == {"rows": 10, "cols": 3}
    assert event["domain_id"] == "ds/2"
    assert event["errors"] == [{"message": {"en": "late", "nb": "sent"}}]
    assert (event["status"], event["trace_status"]) == ("PARTIAL_SUCCESS", "FINISHED")
    assert event["trace_id"] == "t-renamed"


def test_add_ignores_unknown_names_with_a_warning(
    tracker: Tracker, memory: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "waymark.sdk"), tracker.step(trace_id="t") as step:
        step.add(no_such_field=1, message="kept")
    [event] = delivered(tracker, memory)
    assert event["message"] == "kept"
    assert "no_such_field" not in event
    assert "no_such_field" in caplog.text


def test_an_invalid_event_is_dropped_and_counted_not_raised(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    with tracker.step(stage="BAD", trace_id="t") as step:
        step.add(domain_id=12345)  # must be a string
    with tracker.step(stage="GOOD", trace_id="t"):
        pass
    events = delivered(tracker, memory)
    assert [e["stage"] for e in events] == ["GOOD"]
    assert tracker.stats().rejected == 1


class Failing(Transport):
    kind = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def send(self, tenant: str, events: Sequence[EventDoc]) -> None:
        self.calls += 1
        raise self.error


def test_a_transport_that_always_fails_never_reaches_user_code() -> None:
    transport = Failing(RuntimeError("network on fire"))
    tracker = Tracker(transport=transport, exit_timeout=0)
    from waymark.sdk import Backoff

    tracker._delivery.backoff = Backoff(base=0.001, cap=0.01)

    @tracker.step(stage="S", trace_id="t")
    def f() -> str:
        return "result"

    assert [f() for _ in range(5)] == ["result"] * 5
    assert tracker.flush(0.3) is False
    assert tracker.close(0) is False
    stats = tracker.stats()
    assert transport.calls >= 2
    assert stats.retries >= 2
    assert stats.sent == 0
    assert stats.lost == 5


def test_a_refused_batch_is_counted_not_retried() -> None:
    transport = Failing(InvalidRequest(422, "no"))
    with Tracker(transport=transport) as tracker:
        with tracker.step(trace_id="t"):
            pass
        assert tracker.flush(5)
        assert transport.calls == 1
        assert tracker.stats().rejected == 1


class Gate(MemoryTransport):
    """Holds every send until opened; tells when the first one started."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.opened = threading.Event()

    def send(self, tenant: str, events: Sequence[EventDoc]) -> None:
        self.entered.set()
        assert self.opened.wait(30)
        super().send(tenant, events)


def test_past_the_bound_events_are_dropped_counted_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    tracker = Tracker(transport=gate, max_queue=10, batch_size=5, flush_interval=0.01)
    step = tracker.step(stage="S", trace_id="t-bound")
    with caplog.at_level(logging.WARNING, "waymark.sdk"):
        with step:
            pass
        assert gate.entered.wait(10)  # the first event is in flight, held by the gate
        for _ in range(30):
            with step:
                pass
        assert tracker.dropped == 20
        gate.opened.set()
        assert tracker.flush(10)
    assert len(gate.events) == 11
    assert tracker.stats().sent == 11
    assert "20 events dropped" in caplog.text
    tracker.close()


def test_steps_after_close_are_dropped_not_raised(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    tracker.close()
    with tracker.step(trace_id="late"):
        pass
    assert tracker.dropped == 1
    assert memory.events == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+ frowns on fork with threads
def test_a_forked_child_starts_afresh(memory: MemoryTransport) -> None:
    import os

    tracker = Tracker(transport=memory, flush_interval=3600, batch_size=1000)
    with tracker.step(trace_id="parent-pending"):
        pass
    assert tracker.stats().queued == 1
    pid = os.fork()
    if pid == 0:  # the child: its own queue, its own sender, never the parent's events
        ok = tracker.stats().queued == 0
        with tracker.step(trace_id="child"):
            pass
        ok = ok and tracker.flush(10) and [e["trace_id"] for e in memory.events] == ["child"]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tracker.flush(10)
    assert [e["trace_id"] for e in memory.events] == ["parent-pending"]
    tracker.close()


def test_a_step_may_wait_for_its_delivery() -> None:
    gate = Gate()
    with Tracker(transport=gate, flush_interval=3600) as tracker:
        waited = tracker.step(trace_id="t", stage="WAITS", flush=0.2)
        gate.opened.set()
        with waited:
            pass
        assert [e["stage"] for e in gate.events] == ["WAITS"]  # no flush() needed


def test_a_step_ended_in_another_context_is_still_reported(
    tracker: Tracker, memory: MemoryTransport
) -> None:
    async def numbers() -> Any:
        async with tracker.step(stage="GEN", trace_id="t-gen"):
            yield 1
            yield 2

    async def main() -> None:
        agen = numbers()
        assert await agen.__anext__() == 1
        await asyncio.create_task(agen.aclose())  # the step ends in the task's context

    asyncio.run(main())
    [event] = delivered(tracker, memory)
    assert (event["stage"], event["trace_id"]) == ("GEN", "t-gen")
