"""How the CLI says durations and times, and shares a terminal's width."""

from __future__ import annotations

from datetime import UTC, datetime

from waymark.display import Cell, Column, Listing, ago, duration, plain, share


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
