"""The change record that live streams follow: numbering, the window, resets, passing
over a superseded change, and one read per change for every stream."""

from __future__ import annotations

import asyncio
import time

import pytest

from waymark.changes import Behind, Changes
from waymark.model import Summary


def test_a_position_resumes_only_from_an_id_of_this_record_within_its_window() -> None:
    changes = Changes(keep=3)
    changes.record([("t", "a"), ("t", "b")])
    assert changes.position(None).after == 2
    assert changes.position(changes.event_id(1)).after == 1
    assert changes.position(changes.event_id(1)).reset is None
    other = Changes()
    for foreign in (other.event_id(1), "nonsense", f"{changes.epoch}-x", changes.event_id(9)):
        position = changes.position(foreign)
        assert position.reset is not None and position.after == 2, foreign
    changes.record([("t", "c"), ("t", "d"), ("t", "e")])  # keeps 3, 4, 5
    assert changes.position(changes.event_id(2)).reset is None  # 3 on are all kept
    assert changes.position(changes.event_id(1)).reset is not None
    with pytest.raises(Behind):
        changes.next_after(1)
    assert [changes.next_after(n).number for n in (2, 3, 4)] == [3, 4, 5]  # type: ignore[union-attr]
    assert changes.next_after(5) is None


def test_changes_older_than_the_window_are_forgotten() -> None:
    changes = Changes(keep_s=0.05)
    changes.record([("t", "a")])
    time.sleep(0.1)
    assert changes.position(changes.event_id(0)).reset is not None
    changes.record([("t", "b")])
    assert changes.first == 2


def test_an_earlier_change_of_a_trace_is_superseded_by_its_next() -> None:
    changes = Changes()
    changes.record([("t", "a"), ("t", "b"), ("t", "a")])
    first, second, third = (changes.next_after(n) for n in range(3))
    assert first is not None and first.superseded
    assert second is not None and not second.superseded
    assert third is not None and not third.superseded


def test_streams_share_one_read_per_change() -> None:
    reads: list[tuple[str, str]] = []

    async def read(tenant: str, trace_id: str) -> Summary | None:
        reads.append((tenant, trace_id))
        await asyncio.sleep(0.01)
        return None

    async def go() -> None:
        changes = Changes()
        changes.record([("t", "a")])
        change = changes.next_after(0)
        assert change is not None
        assert await asyncio.gather(*(changes.read(change, read) for _ in range(5))) == [None] * 5
        await changes.read(change, read)

    asyncio.run(go())
    assert reads == [("t", "a")]
