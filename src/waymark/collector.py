"""The collector: moves events from the bus into the store, any number of replicas at once.

All collectors share one durable pull consumer per stream, so JetStream hands each
message to one of them at a time. The loop, per source:

1. fetch up to ``batch_size`` messages, waiting at most ``batch_wait_s``;
2. resolve each: a native message with ``wire.decode``, its events then with
   ``ingest.to_records`` (the API's own rules) and its dataset details as they are; a GSM
   Service Bus body with ``translate.gsm.from_service_bus`` (the GSM front door's own
   translator);
3. append every resolved record in one ``Store.append`` call and write the dataset
   details, then ack them: acks come only after the commit, so a crash in between means
   a redelivery, which the store's (tenant, event_id) idempotence turns into a counted
   duplicate (and dataset details, one row per trace, dataset and version, into the
   same row);
4. announce the changed summaries (their heads) on the change feed.

Three outcomes per message, as in arq's worker:

- **done**: committed and acked;
- **retry**: the store failed; nak with an exponential delay (``backoff_s`` doubling
  per delivery up to ``backoff_max_s``, with jitter). Retries never end while the
  store is merely unavailable, so an outage loses nothing;
- **give up**: the message cannot be parsed or fails validation. That is decided by
  its bytes alone, so a retry could only fail again: it is parked at once (raw
  bytes and reason, ``Store.park``) and terminated, and the messages behind it go
  on. A valid message that the store keeps rejecting with an error other than
  :class:`~waymark.errors.Unavailable` is tried alone once delivered
  ``max_deliveries`` times, and parked if it fails again; when the store says the
  input is bad (:class:`~waymark.errors.BadRequest`, e.g. PostgreSQL refusing NUL
  characters) every message of the batch is tried alone at once. A message the
  collector fails to read for a reason of its own (a bug, not a
  :class:`~waymark.errors.BadRequest`) is retried like a store error and parked
  after ``max_deliveries``.

An ack, nak or term that cannot be sent (NATS down) is dropped: the message comes
back after the consumer's ack wait, and the store's idempotence makes it a duplicate.

SIGTERM (or SIGINT) stops fetching; the batch in hand is finished and the process
exits 0. Log lines have a fixed format (``collector <what> key=value ...``) that
tests and log searches can rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from waymark import metrics, wire
from waymark.batching import split_batches
from waymark.bus import open_bus
from waymark.bus.base import Bus, InboundMessage, Source
from waymark.config import Settings
from waymark.errors import BadRequest, Unavailable
from waymark.ingest import to_records
from waymark.model import Record, now_us
from waymark.pipelines import Pipelines, load
from waymark.sink import timed_append
from waymark.store import log_durability_warnings, open_store
from waymark.store.base import AppendResult, DatasetDetails, Store
from waymark.summary import Partial, head, head_of
from waymark.translate.gsm import from_service_bus

log = logging.getLogger("waymark.collector")


@dataclass
class Counters:
    """What a collector did since it started."""

    batches: int = 0
    messages: int = 0
    appended: int = 0  # events new to the store
    duplicates: int = 0  # events the store already had (redeliveries, re-publishes)
    parked: int = 0  # messages put in the dead-letter table
    retries: int = 0  # deliveries nak'ed to come again later (store errors, faults of ours)
    details: int = 0  # dataset details written (new rows, updates and repeats alike)

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in vars(self).items())


@dataclass
class Resolved:
    records: list[Record] = field(default_factory=list)
    details: list[DatasetDetails] = field(default_factory=list)


Resolver = Callable[[InboundMessage, Pipelines], Resolved]


def resolve_events(message: InboundMessage, pipelines: Pipelines) -> Resolved:
    """A native bus message (:mod:`waymark.wire`, either kind) into records or dataset
    details."""
    decoded = wire.decode(message.data)
    records = to_records(
        decoded.events,
        decoded.tenant,
        pipelines,
        received_us=decoded.received_us,
        submitted_by=decoded.submitted_by,
    )
    return Resolved(records, decoded.details)


def resolve_gsm(message: InboundMessage, pipelines: Pipelines) -> Resolved:
    """A GSM Service Bus body (published straight to ``statuschangedtopic``) into records
    and dataset details, through the HTTP front door's translator. The time of receipt
    is when the stream stored the message, the same on every delivery."""
    records, details = from_service_bus(message.data, pipelines, message.stored_us)
    return Resolved(records, details)


RESOLVERS: dict[str, Resolver] = {"events": resolve_events, "gsm": resolve_gsm}


@dataclass
class _Item:
    message: InboundMessage
    resolved: Resolved


class Collector:
    """Settings are keyword arguments, documented here once.

    - ``batch_size``: most messages fetched (and appended) at once (1,000);
    - ``batch_wait_s``: longest wait for a batch to fill (0.05 s);
    - ``max_deliveries``: deliveries after which a message the store rejects is
      tried alone and parked if it fails again (10);
    - ``backoff_s`` / ``backoff_max_s``: first and longest redelivery delay after a
      store error (0.5 s, 30 s);
    - ``stats_every_s``: how often the counters are logged (60 s);
    - ``pending_every_s``: how often each consumer's pending messages are read for the
      metrics (5 s; one request to JetStream per source, never per message);
    - ``max_append_events``: most events in one ``Store.append``; a batch of big
      messages is appended (and acked) in several transactions of whole messages,
      so that memory and transaction size stay bounded (20,000); dataset details count
      as events here.
    """

    def __init__(
        self,
        store: Store,
        bus: Bus,
        pipelines: Pipelines,
        *,
        batch_size: int = 1000,
        batch_wait_s: float = 0.05,
        max_deliveries: int = 10,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stats_every_s: float = 60.0,
        pending_every_s: float = 5.0,
        max_append_events: int = 20_000,
    ) -> None:
        self.store = store
        self.bus = bus
        self.pipelines = pipelines
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.max_deliveries = max_deliveries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.stats_every_s = stats_every_s
        self.pending_every_s = pending_every_s
        self.max_append_events = max_append_events
        self.counters = Counters()
        self._stopping = asyncio.Event()
        self._announcing: asyncio.Task[None] | None = None

    # -- running ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop fetching; the batch in hand is finished first."""
        if not self._stopping.is_set():
            log.info("collector stopping")
        self._stopping.set()

    async def run(self) -> Counters:
        """Collect until :meth:`stop` (or SIGTERM/SIGINT); returns the counters."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        sources = await self._sources()
        if sources:
            log.info("collector started sources=%s", ",".join(s.name for s in sources))
            stats = asyncio.create_task(self._log_stats())
            lag = asyncio.create_task(self._read_pending(sources))
            try:
                await asyncio.gather(*(self._drain(s) for s in sources))
            finally:
                stats.cancel()
                lag.cancel()
                await self.announced()
        log.info("collector stopped %s", self.counters.line())
        return self.counters

    async def _sources(self) -> list[Source]:
        delay = self.backoff_s
        while not self._stopping.is_set():
            try:
                return [s for s in await self.bus.sources() if s.name in RESOLVERS]
            except Unavailable as exc:
                log.warning("collector waiting for bus delay=%.1fs error=%s", delay, exc.detail)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, self.backoff_max_s)
        return []

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self.stats_every_s)
            log.info("collector stats %s", self.counters.line())

    async def _read_pending(self, sources: Sequence[Source]) -> None:
        """The lag of each source, for the metrics, every ``pending_every_s``."""
        while True:
            for source in sources:
                try:
                    metrics.pending(source.name, await source.pending())
                except Unavailable as exc:
                    log.debug("collector pending unknown source=%s error=%s", source.name, exc)
            await asyncio.sleep(self.pending_every_s)

    async def _drain(self, source: Source) -> None:
        resolver = RESOLVERS[source.name]
        while not self._stopping.is_set():
            try:
                batch = await source.fetch(self.batch_size, self.batch_wait_s)
            except Unavailable as exc:
                log.warning("collector fetch failed source=%s error=%s", source.name, exc.detail)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.backoff_s)
                continue
            if batch:
                # Shielded: a cancelled run still finishes (or retries) the batch in hand.
                await asyncio.shield(self.handle(batch, resolver))

    # -- one batch -------------------------------------------------------------------------

    async def handle(
        self, batch: Sequence[InboundMessage], resolver: Resolver = resolve_events
    ) -> None:
        """Resolve, park the unusable, append the rest in one call, ack after the commit."""
        started = time.perf_counter()
        self.counters.batches += 1
        self.counters.messages += len(batch)
        metrics.collector_batch(len(batch))
        good, bad, broken = await asyncio.to_thread(self._resolve, batch, resolver)
        if broken:  # a fault of ours, not of the message: retried, parked once worn out
            worn = [(d, r) for d, r in broken if d.deliveries >= self.max_deliveries]
            bad += [(d, f"cannot be read (delivery {d.deliveries}): {r}") for d, r in worn]
            await self._nak(
                [d for d, _ in broken if d.deliveries < self.max_deliveries], broken[0][1]
            )
        if bad:
            await self._park(bad)
        sizes = [len(item.resolved.records) + len(item.resolved.details) for item in good]
        # Whole messages per transaction, at most max_append_events events and dataset details
        # (a bigger message alone).
        for chunk in split_batches(good, sizes, len(good), self.max_append_events):
            await self._store(chunk)
        log.debug(
            "collector batch messages=%d parked=%d ms=%.1f",
            len(batch),
            len(bad),
            (time.perf_counter() - started) * 1000,
        )

    def _resolve(
        self, batch: Sequence[InboundMessage], resolver: Resolver
    ) -> tuple[list[_Item], list[tuple[InboundMessage, str]], list[tuple[InboundMessage, str]]]:
        """Each message resolved (good), unusable (bad: its bytes are wrong) or broken (the
        resolver failed unexpectedly)."""
        good: list[_Item] = []
        bad: list[tuple[InboundMessage, str]] = []
        broken: list[tuple[InboundMessage, str]] = []
        for message in batch:
            try:
                good.append(_Item(message, resolver(message, self.pipelines)))
            except BadRequest as exc:
                bad.append((message, _unusable(exc)))
            except Exception as exc:
                log.exception("collector cannot resolve subject=%s", message.subject)
                broken.append((message, _reason(exc)))
        return good, bad, broken

    async def _store(self, items: list[_Item]) -> None:
        try:
            result = await self._write(items)
        except Exception as exc:
            await self._retry(items, exc)
            return
        for item in items:
            await item.message.ack()
        await self._announce_later(result)

    async def _write(self, items: Sequence[_Item]) -> AppendResult:
        records = [r for i in items for r in i.resolved.records]
        details = [d for i in items for d in i.resolved.details]
        result = AppendResult(0)
        if records:
            result = await asyncio.to_thread(timed_append, self.store, records, True)
        if details:
            await asyncio.to_thread(self.store.put_dataset_details, details)
        self.counters.appended += result.inserted
        self.counters.duplicates += len(records) - result.inserted
        self.counters.details += len(details)
        metrics.traces_turned(result.turned)
        return result

    async def _retry(self, items: list[_Item], exc: Exception) -> None:
        if isinstance(exc, BadRequest):  # the store refused some record: find which, at once
            alone, items = items, []
        elif not isinstance(exc, Unavailable):  # unexpected: alone only once worn out
            alone = [i for i in items if i.message.deliveries >= self.max_deliveries]
            items = [i for i in items if i.message.deliveries < self.max_deliveries]
        else:
            alone = []
        for item in alone:
            await self._try_alone(item)
        if not items:
            return
        await self._nak([i.message for i in items], _reason(exc))

    async def _nak(self, messages: Sequence[InboundMessage], reason: str) -> None:
        """Redeliver later: exponential backoff on the delivery count, with jitter."""
        if not messages:
            return
        most = max(m.deliveries for m in messages)
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** (most - 1))
        delay *= random.uniform(0.5, 1.0)
        self.counters.retries += len(messages)
        log.warning(
            "collector retry messages=%d delay=%.2fs error=%s", len(messages), delay, reason
        )
        for message in messages:
            await message.nak(delay)

    async def _try_alone(self, item: _Item) -> None:
        try:
            result = await self._write([item])
        except Unavailable as exc:
            await self._nak([item.message], _reason(exc))
        except Exception as exc:
            reason = f"the store refused it (delivery {item.message.deliveries}): {_reason(exc)}"
            await self._park([(item.message, reason)])
        else:
            await item.message.ack()
            await self._announce(result)

    async def _park(self, bad: list[tuple[InboundMessage, str]]) -> None:
        letters = [(d.subject, reason, d.data) for d, reason in bad]
        try:
            await asyncio.to_thread(self.store.park, letters)
        except Exception as exc:
            self.counters.retries += len(bad)
            log.warning(
                "collector retry messages=%d delay=%.2fs error=%s",
                len(bad),
                self.backoff_s,
                _reason(exc),
            )
            for message, _ in bad:
                await message.nak(self.backoff_s)
            return
        metrics.dead_letters(len(bad))
        for message, reason in bad:
            self.counters.parked += 1
            log.warning("collector parked subject=%s reason=%s", message.subject, reason)
            await message.term()

    async def _announce_later(self, result: AppendResult) -> None:
        """Announce while the next batch is fetched; at most one announcement in flight."""
        await self.announced()
        self._announcing = asyncio.create_task(self._announce(result))

    async def announced(self) -> None:
        """Wait for the announcement in flight, if any."""
        if self._announcing is not None:
            await self._announcing
            self._announcing = None

    async def _announce(self, result: AppendResult) -> None:
        """Publish the heads of the changed summaries (:data:`waymark.summary.HEAD_FIELDS`),
        per tenant; a failure only delays waiters. They come from the append's own upsert
        when the store returns its rows (PostgreSQL), else from a read."""
        by_tenant: dict[str, list[str]] = {}
        for tenant, trace_id in result.traces:
            by_tenant.setdefault(tenant, []).append(trace_id)
        now = now_us()
        for tenant, ids in by_tenant.items():
            try:
                if result.partials is None:
                    summaries = await asyncio.to_thread(self.store.summaries, tenant, ids)
                    heads = [head_of(s) for s in summaries]
                else:
                    heads = [self._head(tenant, i, result.partials[tenant, i], now) for i in ids]
                await self.bus.publish_changes(tenant, heads)
            except Exception as exc:
                log.warning("collector change feed failed tenant=%s error=%s", tenant, _reason(exc))

    def _head(self, tenant: str, trace_id: str, partial: Partial, now: int) -> dict[str, Any]:
        origin = partial.origin
        pipeline = self.pipelines.lookup(tenant, origin.domain if origin else None)
        return head(
            tenant, trace_id, partial, now_us=now, stall_timeout_us=pipeline.stall_timeout_us
        )


def _unusable(exc: BadRequest) -> str:
    """Why a message cannot be used: every wrong field (the first ten), else the detail."""
    if not exc.errors:
        return exc.detail
    parts = [
        f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}"  # type: ignore[attr-defined]
        for e in exc.errors[:10]
    ]
    more = f" (and {len(exc.errors) - 10} more)" if len(exc.errors) > 10 else ""
    return "; ".join(parts) + more


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    return " ".join(text.split())[:500]


def main(settings: Settings, metrics_at: tuple[str, int] | None = None, **options: Any) -> Counters:
    """``waymark collect``: open the store and the bus, collect until SIGTERM, close both.
    ``metrics_at``: the (address, port) to serve the metrics on (``GET /metrics``, by the
    ``prometheus-client`` library's own HTTP server, in a thread). ``options`` are
    :class:`Collector` settings."""
    if not settings.bus:
        raise ValueError("the collector needs a bus: give --bus nats://... or WAYMARK_BUS")
    if metrics_at is not None:
        metrics.serve(*metrics_at)
    pipelines = load(settings.pipelines) if settings.pipelines else Pipelines()
    # reads its URL only (a bad setting is named before any I/O)
    bus = open_bus(settings.bus, "waymark-collector")
    store = open_store(settings.store, pipelines)

    async def go() -> Counters:
        try:
            return await Collector(store, bus, pipelines, **options).run()
        finally:
            await bus.close()

    try:
        log_durability_warnings(store)  # a message is acked once committed: that must hold
        return asyncio.run(go())
    finally:
        store.close()
