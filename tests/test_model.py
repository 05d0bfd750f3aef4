"""The model's own edges: how event times are read, and which paths an event touches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from waymark.model import Event, to_us, touched_paths

UTC_TEN = datetime(2026, 11, 20, 10, 0, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    "given",
    [
        "2026-11-20T10:00:03Z",
        "2026-11-20T10:00:03z",
        " 2026-11-20T10:00:03Z ",
        "2026-11-20T10:00:03",  # no offset: UTC
        "2026-11-20T10:00:03+00:00",
        "2026-11-20T11:00:03+01:00",
        "2026-11-20 10:00:03Z",
        1_795_168_803_000,  # epoch milliseconds
        UTC_TEN,
        datetime(2026, 11, 20, 10, 0, 3),  # a naive datetime from Python: UTC
    ],
)
def test_every_spelling_of_a_time_means_the_same_moment(given: object) -> None:
    event = Event.model_validate({"trace_id": "t", "end_time": given})
    assert event.end_time is not None
    assert to_us(event.end_time) == to_us(UTC_TEN)


@pytest.mark.parametrize(
    "given",
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "",
        True,
        10**20,
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))),  # after 9999
    ],
)
def test_a_time_that_is_not_one_is_refused_naming_the_field(given: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Event.model_validate({"trace_id": "t", "start_time": given})
    assert [e["loc"] for e in caught.value.errors()] == [("start_time",)]


def test_the_last_moments_of_the_calendar_are_still_times() -> None:
    late = Event.model_validate({"trace_id": "t", "end_time": "9999-12-31T23:59:59Z"})
    assert late.end_time == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_touched_paths_are_the_path_then_inputs_then_outputs_without_repeats() -> None:
    assert touched_paths({"path": "a"}) == ("a",)
    assert touched_paths({}) == ()
    assert touched_paths({"path": 3}) == ()
    doc = {
        "path": "a",
        "inputs": ["b", "a"],
        "outputs": ["c"],
        "body": {"files_incoming": ["d"], "files_outgoing": ["c", "e", 7]},
    }
    assert touched_paths(doc) == ("a", "b", "d", "c", "e")
    assert touched_paths({"body": {"files_outgoing": ["x"]}}) == ("x",)
