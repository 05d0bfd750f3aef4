"""The notifier and the stall sweep: background tasks of every API process.

Appends write one outbox row per trace state change per matching subscription in their
own transaction (:mod:`waymark.store.webhooks`); the notifier drains the outbox:

1. claim up to ``batch`` due rows (:meth:`Store.claim_notifications`): each is leased to
   this process for ``lease_s``, so no other replica takes it meanwhile (PostgreSQL:
   ``FOR UPDATE SKIP LOCKED``; SQLite: its one writer), and a process that dies holding
   it only delays it until the lease ends: delivery is at least once;
2. POST each, ``{"type", "timestamp", "data": <the trace's summary now>}``, signed
   (:mod:`waymark.webhooks`) with the row's id as ``webhook-id``, the same on every
   attempt, at most ``concurrency`` at a time and each within ``timeout_s``;
3. settle each: a 2xx answer is delivered; anything else (another status, no answer,
   a refused target) is tried again after an exponential delay with jitter (about 1 s,
   2 s, 4 s, ... up to an hour), until ``give_up_s`` after the change, when the row is
   given up on and the subscription shows the failure.

Nothing of this runs on the ingest path: a receiver that hangs or is down holds only
the notifier's own connections.

The stall sweep (:class:`StallSweep`) asks the store every ``interval_s`` to notice the
traces of every tenant that crossed their pipeline's stall timeout, writing
``trace.stalled`` rows for subscriptions (:meth:`Store.sweep_stalls`; one sweeper at a
time across replicas); it counts them and tells this process's watcher of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson

from waymark import metrics
from waymark.errors import Unavailable
from waymark.model import now_us
from waymark.store import Store
from waymark.store.base import Notification
from waymark.webhooks import BadTarget, resolve, sign

log = logging.getLogger("waymark.notify")

T = TypeVar("T")
InThread = Callable[..., Awaitable[Any]]

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 3600.0
ERROR_MAX = 500  # characters of an error kept per attempt


def retry_delay_s(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones (1 or more): doubling
    from :data:`FIRST_RETRY_S` up to :data:`MAX_RETRY_S`, times a jitter in [0.5, 1]."""
    base: float = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** min(attempts - 1, 30))
    return base * random.uniform(0.5, 1.0)


def message(kind: str, summary: dict[str, Any], at_us: int) -> bytes:
    """A delivery's body."""
    timestamp = datetime.fromtimestamp(at_us / 1e6, UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"type": kind, "timestamp": timestamp, "data": summary})


class Notifier:
    """Drains the outbox (see the module's docstring); :meth:`run` until cancelled."""

    def __init__(
        self,
        store: Store,
        in_thread: InThread,
        *,
        allow_private: bool = False,
        give_up_s: float = 86400.0,
        poll_s: float = 0.5,
        lease_s: float = 60.0,
        timeout_s: float = 10.0,
        batch: int = 50,
        concurrency: int = 16,
    ) -> None:
        self.store = store
        self.in_thread = in_thread
        self.allow_private = allow_private
        self.give_up_us = int(give_up_s * 1e6)
        self.poll_s = poll_s
        self.lease_us = int(lease_s * 1e6)
        self.timeout_s = timeout_s
        self.batch = batch
        self.slots = asyncio.Semaphore(concurrency)
        self.delivered = 0
        self.failed = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            while True:
                try:
                    claim = functools.partial(
                        self.store.claim_notifications, lease_us=self.lease_us, limit=self.batch
                    )
                    claimed = await self.in_thread(claim, now_us())
                except Unavailable as exc:  # the store is down: try again at the next poll
                    log.warning("notify claim failed: %s", exc)
                    claimed = []
                except Exception:
                    log.exception("notify claim failed")
                    claimed = []
                if claimed:
                    await asyncio.gather(*(self._deliver(client, n) for n in claimed))
                if len(claimed) < self.batch:
                    await asyncio.sleep(self.poll_s)

    async def _deliver(self, client: httpx.AsyncClient, note: Notification) -> None:
        async with self.slots:
            status, error = await self._post(client, note)
        at = now_us()
        delivered = status is not None and 200 <= status < 300
        next_us: int | None = None
        if delivered:
            self.delivered += 1
        else:
            self.failed += 1
            if at - note.created_us < self.give_up_us:
                next_us = at + int(retry_delay_s(note.attempts + 1) * 1e6)
            log.info(
                "notify failed id=%s webhook=%s status=%s error=%s retry=%s",
                note.id,
                note.webhook_id,
                status,
                error,
                next_us is not None,
            )
        outcome = "delivered" if delivered else "failed" if next_us is not None else "gave_up"
        try:
            await self.in_thread(_settle, self.store, note, at, status, error, next_us, delivered)
            metrics.webhook_delivery(outcome)  # once settled: an unsettled try comes again
        except Exception:
            # The lease runs out and the row is tried again: at least once.
            log.exception("notify settle failed id=%s", note.id)

    async def _post(
        self, client: httpx.AsyncClient, note: Notification
    ) -> tuple[int | None, str | None]:
        """The answer's status, or None and why there was none."""
        try:
            check = functools.partial(resolve, allow_private=self.allow_private)
            target = await self.in_thread(check, note.url)
        except BadTarget as exc:
            return None, f"url {exc}"
        summaries = await self.in_thread(self.store.summaries, note.tenant, [note.trace_id])
        if not summaries:
            return None, "the trace no longer exists"
        at = now_us()
        body = message(note.type, summaries[0].model_dump(mode="json"), at)
        timestamp = at // 1_000_000
        host = f"[{target.address}]" if ":" in target.address else target.address
        split = httpx.URL(note.url)
        # Connect to the address just checked, naming the host as the URL does.
        url = split.copy_with(host=host.strip("[]"))
        headers = {
            "content-type": "application/json",
            "user-agent": "waymark-webhooks",
            "host": split.netloc.decode(),
            "webhook-id": note.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(note.secret, note.id, timestamp, body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            answer = await client.post(url, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:ERROR_MAX] or type(exc).__name__
        if 200 <= answer.status_code < 300:
            return answer.status_code, None
        return answer.status_code, f"answered {answer.status_code}"


def _settle(
    store: Store,
    note: Notification,
    at: int,
    status: int | None,
    error: str | None,
    next_us: int | None,
    delivered: bool,
) -> None:
    store.settle_notification(
        note, at_us=at, status=status, error=error, next_us=next_us, delivered=delivered
    )


class StallSweep:
    """Notices stalled traces every ``interval_s`` (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        in_thread: InThread,
        changed: Callable[[list[tuple[str, str]]], Awaitable[None]],
        *,
        interval_s: float = 5.0,
    ) -> None:
        self.store = store
        self.in_thread = in_thread
        #: told, on the event loop, of the (tenant, trace_id) of each sweep's stalls, so
        #: that live streams and waiters hear them (``Sink.announce``)
        self.changed = changed
        self.interval_s = interval_s
        self.noticed = 0

    async def run(self) -> None:
        while True:
            try:
                keys = await self.in_thread(self.store.sweep_stalls, now_us())
                self.noticed += len(keys)
                metrics.traces_stalled(len(keys))
                if keys:
                    await self.changed(keys)
            except Unavailable as exc:
                log.warning("stall sweep failed: %s", exc)
            except Exception:
                log.exception("stall sweep failed")
            await asyncio.sleep(self.interval_s)


@contextlib.asynccontextmanager
async def running(
    *jobs: Callable[[], Coroutine[Any, Any, None]],
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the jobs as tasks for the block; cancel them after it."""
    tasks = [asyncio.create_task(job()) for job in jobs]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
