"""Hypothesis strategies for native events: small vocabularies, so that ties in time,
repeated errors and shared paths happen often."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from waymark.model import Status, TraceStatus

BASE = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)

times = st.integers(min_value=0, max_value=20).map(
    lambda s: (BASE + timedelta(seconds=s)).isoformat()
)
errors = st.lists(
    st.sampled_from(
        [
            {"message": {"en": "Invalid value in column 3.", "nb": "Ugyldig verdi i kolonne 3."}},
            {"message": {"en": "Schema mismatch."}},
            {"message": {"en": "Timeout."}, "code": 7},
        ]
    ),
    max_size=2,
)
paths = st.sampled_from(["raw/a.csv", "raw/b.csv", "processed/a.parquet", "processed/b.parquet"])


@st.composite
def events(draw: st.DrawFn, trace_ids: tuple[str, ...] = ("t1", "t2", "t3")) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": draw(st.uuids()).hex[: draw(st.integers(4, 32))],
        "trace_id": draw(st.sampled_from(trace_ids)),
        "status": draw(st.sampled_from(list(Status))).value,
        "trace_status": draw(
            st.sampled_from([TraceStatus.CONTINUE, TraceStatus.STARTED, TraceStatus.FINISHED])
        ).value,
        "end_time": draw(times),
    }
    optional: dict[str, Any] = {
        "start_time": times,
        "component": st.sampled_from(["uploader", "router", "writer"]),
        "stage": st.sampled_from(["UPLOAD", "TRANSFORM", "WORKFLOW"]),
        "operation": st.sampled_from(["upload", "convert"]),
        "domain": st.just("dataset"),
        "domain_id": st.sampled_from(["fees/1", "fees/2"]),
        "user": st.sampled_from(["alice", "bob"]),
        "errors": errors,
        "path": paths,
        "inputs": st.lists(paths, max_size=2),
        "outputs": st.lists(paths, max_size=2),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            event[name] = draw(strategy)
    if "start_time" in event and event["start_time"] > event["end_time"]:
        event["start_time"], event["end_time"] = event["end_time"], event["start_time"]
    return event


event_sets = st.lists(events(), min_size=1, max_size=12, unique_by=lambda e: e["event_id"])
