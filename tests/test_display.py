"""How the CLI says durations and times, and shares a terminal's width."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from waymark.display import Cell, Column, Listing, ago, duration, plain, share
from waymark.terminal import status_listing


def test_durations_as_people_say_them() -> None:
    said = [duration(ms) for ms in (None, 0, 250, 1618, 41_000, 185_000, 1_800_000, 7_500_000)]
    assert said == ["", "0 ms", "250 ms", "1.6 s", "41 s", "3 min 5 s", "30 min", "2 h 5 min"]
    assert duration(5 * 86_400_000) == "5 days"


def test_ago() -> None:
    now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert ago("2026-12-03T09:57:00Z", now) == "3 min ago"
    assert ago("2026-12-03T10:00:00.2Z", now) == "just now"
    assert ago("2026-12-03T10:00:41Z", now) == "in 41 s"
    assert ago("2026-12-03T09:59:19", now) == "41 s ago"  # offset-less is UTC
    assert ago(None, now) == ago("not a time", now) == ""


def test_share_gives_small_columns_what_they_need() -> None:
    assert share(60, [5, 100, 200]) == [5, 27, 28]
    assert share(60, [10, 12]) == [10, 12]
    assert share(10, [50, 50, 50]) == [6, 6, 6]  # never below a readable minimum


def test_plain_aligns_and_keeps_every_value_whole() -> None:
    listing = Listing(
        [Column("A"), Column("Bee"), Column("C", fold=True)],
        [[Cell("x"), Cell(""), Cell("a long value, whole\nwith a break")],
         [Cell("longer"), Cell("y"), Cell("z")]],
        data=None,
    )  # fmt: skip
    assert plain(listing).splitlines() == [
        "A       Bee  C",
        "x       -    a long value, whole\\x0awith a break",
        "longer  y    z",
    ]


class _Summary:
    """A summary as the API answers it once errors are bounded: the first and last few,
    and their count."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def model_dump(self, mode: str) -> dict[str, Any]:
        return self.fields


def test_status_says_how_many_errors_a_bounded_summary_has() -> None:
    summary = _Summary(
        trace_id="t", state="FAILED", updated_at="2026-12-03T10:00:00Z", started_at=None,
        duration_ms=None, event_count=40, done=True, trace_status="FINISHED",
        trace_event_status="FAILED",
        current={"component": "c", "stage": None, "operation": None, "status": "FAILED"},
        errors=[{"message": {"en": "row 1 is bad"}}],
        last_errors=[{"message": {"en": "row 40 is bad"}}], error_count=40,
    )  # fmt: skip
    listing = status_listing(summary, datetime(2026, 12, 3, 10, 1, tzinfo=UTC))  # type: ignore[arg-type]
    shown = dict(line.split("  ", 1) for line in plain(listing).splitlines())
    assert shown["Errors"].strip() == ("row 1 is bad; (38 more); row 40 is bad")
    assert shown["Last moved"].strip() == "2026-12-03T10:00:00Z (1 min ago)"
