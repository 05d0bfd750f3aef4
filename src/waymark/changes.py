"""The change record: every summary change this process hears of, numbered and kept for a
bounded window, so that live streams (``GET /v1/stream``) follow it and resume in it.

A change is a (tenant, trace_id) that :meth:`waymark.watch.Watcher.notify` was told of:
by the direct sink after each commit of this process, or by the collectors' change feed
in bus mode. Each gets the next number; an event id is ``<epoch>-<number>``, where the
epoch is made anew by each process, so an id from another process, another replica or
before a restart is recognised as such, not misread as a position here.

The record keeps the last ``keep`` changes and none older than ``keep_s`` seconds. A
stream that resumes from a number still in the record misses nothing; from any other it
is told to start over (:class:`Position` with a ``reset`` reason).

A change is read (its trace's summary, as it stands when read) once for every stream
that sends it: the read is shared, and reads of changes that come together go to the
store together (the summary reads of :class:`waymark.api.deps.SummaryReads`). Only the
latest change of a trace in the record is sent: when a trace changes again, its earlier
change is passed over by every stream that has not reached it yet (the later one shows
the trace as it stands). The reads of the last ``keep_read`` changes are kept for
streams that are a little behind; older ones are read again if a stream asks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from waymark.model import Summary

Key = tuple[str, str]  # (tenant, trace_id)

Read = Callable[[str, str], Awaitable[Summary | None]]
"""A trace's summary, None if it has none (deleted, or of a dataset the reader may not
read)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """A change as a stream sends it: the summary and its JSON, encoded once."""

    summary: Summary
    json: bytes


@dataclass(slots=True)
class Change:
    number: int
    key: Key
    at: float  # time.monotonic() when it was recorded
    #: a later change of the same trace is in the record: streams pass this one over
    superseded: bool = False
    reading: asyncio.Future[Sent | None] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream starts: after change ``after``; ``reset`` says why the id it gave
    could not be resumed from (None when it could, or when it gave none)."""

    after: int
    reset: str | None = None


class Behind(Exception):
    """The next change a stream needs has left the record."""


class Changes:
    def __init__(self, *, keep: int = 10_000, keep_s: float = 300.0, keep_read: int = 1000):
        self.keep = keep
        self.keep_s = keep_s
        self.keep_read = keep_read
        self.epoch = uuid.uuid4().hex[:12]
        self.head = 0  # the number of the latest change; 0 before the first
        self._record: deque[Change] = deque()
        self._latest: dict[Key, Change] = {}  # each trace's latest change in the record
        self._moved = asyncio.Event()

    # -- recording ---------------------------------------------------------------------------

    def record(self, keys: Iterable[Key]) -> None:
        """These traces changed: number a change for each and wake the streams. Call from
        the event loop."""
        now = time.monotonic()
        added = False
        for key in keys:
            self.head += 1
            change = Change(self.head, key, now)
            earlier = self._latest.get(key)
            if earlier is not None:
                earlier.superseded = True
                earlier.reading = None
            self._latest[key] = change
            self._record.append(change)
            if len(self._record) > self.keep_read:
                self._record[-self.keep_read - 1].reading = None
            added = True
        if added:
            self.trim()
            self._moved.set()
            self._moved = asyncio.Event()

    def trim(self) -> None:
        """Forget changes beyond ``keep`` or older than ``keep_s``."""
        oldest = time.monotonic() - self.keep_s
        record = self._record
        while record and (len(record) > self.keep or record[0].at < oldest):
            gone = record.popleft()
            if self._latest.get(gone.key) is gone:
                del self._latest[gone.key]

    @property
    def first(self) -> int:
        """The number of the oldest change in the record (``head + 1`` when it is empty)."""
        return self._record[0].number if self._record else self.head + 1

    # -- following ---------------------------------------------------------------------------

    def event_id(self, number: int) -> str:
        return f"{self.epoch}-{number}"

    def position(self, last_event_id: str | None) -> Position:
        """Where a stream that last saw ``last_event_id`` (None: a new stream) starts."""
        if last_event_id is None:
            return Position(self.head)
        epoch, _, number = last_event_id.strip().partition("-")
        if epoch != self.epoch or not number.isdecimal() or int(number) > self.head:
            return Position(
                self.head,
                "Last-Event-ID is not of this server process (another replica, or the"
                " server restarted): list the traces again",
            )
        self.trim()
        if int(number) < self.first - 1:
            return Position(
                self.head,
                f"Last-Event-ID is older than the changes this server keeps (the last"
                f" {self.keep} and at most {self.keep_s:g} s): list the traces again",
            )
        return Position(int(number))

    def next_after(self, number: int) -> Change | None:
        """The change after ``number``, None if there is none yet; :class:`Behind` if it
        has left the record."""
        if number >= self.head:
            return None
        self.trim()
        first = self.first
        if number + 1 < first:
            raise Behind
        return self._record[number + 1 - first]

    async def moved(self, timeout_s: float) -> None:
        """Return when a change is recorded, or after ``timeout_s``."""
        moved = self._moved
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(moved.wait(), timeout_s)

    async def read(self, change: Change, read: Read) -> Sent | None:
        """The change's trace as it stands: one read (with ``read``) for all streams."""
        reading = change.reading
        if reading is None or _failed(reading):
            reading = asyncio.ensure_future(_sent(read, *change.key))
            if not change.superseded:  # a superseded change is passed over: keep no read
                change.reading = reading
        return await asyncio.shield(reading)


def _failed(future: asyncio.Future[Sent | None]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


async def _sent(read: Read, tenant: str, trace_id: str) -> Sent | None:
    summary = await read(tenant, trace_id)
    if summary is None:
        return None
    return Sent(summary, summary.model_dump_json().encode())
