"""Background delivery: a bounded queue and one sender thread batching to a transport.

User code only appends to the queue (:meth:`Delivery.put`, a few hundred nanoseconds). The
sender thread, started on the first event, wakes when a batch is full, when a flush is
asked for, or every ``interval`` seconds; it prepares each event (times to RFC 3339, a
random ``event_id`` of 32 hex digits, so that a retried batch stores nothing twice, and a
check against :class:`waymark.model.Event`) and hands batches to the
transport. A batch that fails is retried with backoff and jitter until it is delivered,
refused (:class:`~waymark.sdk.errors.InvalidRequest`, or
:class:`~waymark.sdk.errors.AccessDenied` for a missing or insufficient token, warned of
once: counted as rejected) or the delivery is closed. Meanwhile new events queue up to
``max_queue``; past that they are dropped, counted, and reported by a logged warning.
Nothing here raises into user code.

At interpreter exit the delivery flushes for up to ``exit_timeout`` seconds; what is
still undelivered then is counted as lost.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from waymark.model import Event
from waymark.sdk._retry import Backoff
from waymark.sdk.errors import AccessDenied, InvalidRequest
from waymark.sdk.transports.base import EventDoc, Transport

log = logging.getLogger("waymark.sdk")

START_NS = "_start_ns"  # raw step times, turned into RFC 3339 by the sender
END_NS = "_end_ns"

_live: weakref.WeakSet[Delivery] = weakref.WeakSet()
_event_list = TypeAdapter(list[Event])


class Clock:
    """Nanoseconds since the epoch as RFC 3339 UTC with microseconds; remembers the last
    second's text, since a batch's events mostly share it. One sender thread uses it."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def rfc3339(self, ns: int) -> str:
        second, rest = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{rest // 1000:06d}Z"


@dataclass(frozen=True, slots=True)
class Stats:
    """What a delivery did so far: events ``sent``, ``dropped`` at the queue bound,
    ``rejected`` as invalid, ``lost`` at close, ``retries`` of batches, ``queued`` now."""

    sent: int
    dropped: int
    rejected: int
    lost: int
    retries: int
    queued: int


class Delivery:
    def __init__(
        self,
        transport: Transport,
        tenant: str,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        interval: float = 0.5,
        backoff: Backoff | None = None,
        exit_timeout: float = 5.0,
    ) -> None:
        self.transport = transport
        self.tenant = tenant
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.exit_timeout = exit_timeout
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        self._busy = False
        self._busy_count = 0
        self._sent = self._dropped = self._rejected = self._lost = self._retries = 0
        self._reported_drops = 0
        self._denied_warned: set[int] = set()
        self._clock = Clock()

    # -- user side: must stay cheap and never raise ------------------------------------------

    def put(self, event: dict[str, Any]) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue or self._closed:
            self._dropped += 1  # races may lose a count under contention; never an event
            return
        queue.append(event)
        if not self._started:
            self._start()
        if len(queue) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is delivered (or refused); False if
        ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._queue or self._busy:
                if self._thread is None or not self._thread.is_alive():
                    return False
                self._wake.set()
                remaining = 0.1 if deadline is None else min(deadline - time.monotonic(), 0.1)
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush for up to ``timeout`` seconds, stop the sender and close the transport;
        whatever is undelivered then is counted as lost. True if nothing was lost."""
        if self._closed:
            return self._lost == 0
        delivered = self.flush(timeout)
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        with self._idle:
            left = len(self._queue)
            self._queue.clear()
            if self._busy:  # the transport is stuck in a send: count its batch now
                left += self._busy_count
                self._busy_count = 0
            self._lost += left
            lost = self._lost
        if lost:
            log.warning("waymark: %d events undelivered at close; lost", lost)
        self._report_drops()
        try:
            self.transport.close()
        except Exception as exc:
            log.warning("waymark: closing the %s transport failed: %r", self.transport.kind, exc)
        atexit.unregister(self._at_exit)
        return delivered and left == 0

    def stats(self) -> Stats:
        return Stats(
            self._sent, self._dropped, self._rejected, self._lost, self._retries, len(self._queue)
        )

    # -- the sender thread ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._thread = threading.Thread(target=self._run, name="waymark-sender", daemon=True)
            self._thread.start()
            atexit.register(self._at_exit)
            self._started = True

    def _at_exit(self) -> None:
        self.close(self.exit_timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception:  # a bug here must not end delivery for the whole process
                log.exception("waymark: sender error")
                self._stop.wait(1.0)

    def _round(self) -> None:
        """Wait for work, then send everything queued, batch by batch."""
        if len(self._queue) < self.batch_size:
            self._wake.wait(self.interval)
        self._wake.clear()
        while self._queue and not self._stop.is_set():
            with self._idle:
                self._busy = True
                take = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(take)]
                self._busy_count = take
            try:
                self._deliver(batch)
            finally:
                self._report_drops()  # before a flush() may return
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
        self._report_drops()

    def _deliver(self, raw: list[dict[str, Any]]) -> None:
        batch = self._prepare(raw)
        with self._idle:
            self._busy_count = len(batch)
        attempt = 0
        while batch:
            try:
                self.transport.send(self.tenant, batch)
            except InvalidRequest as exc:
                self._rejected += len(batch)
                log.warning("waymark: %d events refused: %s", len(batch), exc)
                return
            except AccessDenied as exc:
                self._rejected += len(batch)
                self._report_denied(exc, len(batch))
                return
            except Exception as exc:
                pause = self.backoff.delay(attempt, getattr(exc, "retry_after", None))
                log.info("waymark: delivery failed (%r); retrying in %.2f s", exc, pause)
                self._retries += 1
                attempt += 1
                self._report_drops()
                if self._stop.wait(pause):
                    with self._idle:  # closing: the batch is lost (unless close counted it)
                        self._lost += self._busy_count
                        self._busy_count = 0
                    return
                continue
            self._sent += len(batch)
            return

    def _prepare(self, raw: list[dict[str, Any]]) -> list[EventDoc]:
        """The events as the transports want them: an ``event_id`` each, no None values,
        checked against :class:`Event` (as one batch; one by one only if that fails) and
        as JSON, then the step times as RFC 3339 (made here, so not checked). Invalid
        events are dropped, counted and logged."""
        ids = os.urandom(16 * len(raw)).hex()
        docs, times = [], []
        for i, event in enumerate(raw):
            times.append((event.pop(START_NS, None), event.pop(END_NS, None)))
            doc = {k: v for k, v in event.items() if v is not None}
            if not doc.get("event_id"):
                doc["event_id"] = ids[i * 32 : i * 32 + 32]
            docs.append(doc)
        try:
            _event_list.validate_python(docs)
            orjson.dumps(docs)
            valid = list(zip(docs, times, strict=True))
        except (ValidationError, ValueError, TypeError):
            valid = [(d, t) for d, t in zip(docs, times, strict=True) if self._check(d)]
        clock = self._clock
        for doc, (start_ns, end_ns) in valid:
            if start_ns is not None:
                doc["start_time"] = clock.rfc3339(start_ns)
            if end_ns is not None:
                doc["end_time"] = clock.rfc3339(end_ns)
        return [doc for doc, _ in valid]

    def _check(self, doc: EventDoc) -> bool:
        try:
            Event.model_validate(doc)
            orjson.dumps(doc)
        except (ValidationError, ValueError, TypeError) as exc:
            self._rejected += 1
            trace_id = doc.get("trace_id")
            log.warning("waymark: dropped an invalid event of trace %r: %s", trace_id, exc)
            return False
        return True

    def _report_denied(self, exc: AccessDenied, count: int) -> None:
        """A credential problem is the same for every batch: one warning per status says
        what to fix; the batches after it are only counted (and logged at debug level)."""
        if exc.status in self._denied_warned:
            log.debug("waymark: %d events refused: %s", count, exc)
            return
        self._denied_warned.add(exc.status)
        need = (
            "a token the server accepts (Tracker(token=...) or WAYMARK_TOKEN)"
            if exc.status == 401
            else f"a token with the writer role in tenant {self.tenant!r}"
        )
        log.warning(
            "waymark: the server refused the tracker's events (%s); it needs %s. Events refused"
            " for this are dropped and counted as rejected; this warning is not repeated.",
            exc,
            need,
        )

    def _report_drops(self) -> None:
        dropped = self._dropped
        if dropped > self._reported_drops:
            log.warning(
                "waymark: queue full (%d events); %d events dropped so far",
                self.max_queue,
                dropped,
            )
            self._reported_drops = dropped


def _after_fork_in_child() -> None:
    """A forked child has no sender thread and must not resend its parent's queue."""
    for delivery in list(_live):
        delivery._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
