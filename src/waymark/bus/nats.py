"""The NATS JetStream bus (nats-py).

Streams, created on first use if missing (an existing stream is used as it is, so
that whoever creates it first, API, collector or SDK, wins without a fight; ``waymark
streams --apply`` brings existing ones in line with the URL, :mod:`waymark.bus.streams`):

| stream        | subjects              | what                                    |
| ------------- | --------------------- | --------------------------------------- |
| ``WAYMARK``     | ``waymark.events.>``    | native events from the API and the SDK  |
| ``WAYMARK_GSM`` | ``statuschangedtopic``  | GSM Service Bus bodies from stages      |

Both: file storage, limits retention (``max_age_s``, default 7 days; a consumer's
ack does not delete), ``duplicate_window_s`` (default 2 min) on ``Nats-Msg-Id``,
``replicas`` copies. The change feed ``waymark.changes.<tenant>`` is core NATS, in no
stream: a missed change only delays a waiter until its fallback re-read.

The collectors' durable pull consumer (``consumer``, one per stream) acks
explicitly, redelivers after ``ack_wait_s`` (30 s) and has no max deliveries:
the collector decides when to give up (see :mod:`waymark.collector`), so that a
long store outage never drops an event.

The connection reconnects forever on its own. Publishes are never buffered while
disconnected (``pending_size=0``): they fail at once with :class:`Unavailable`. A publish
whose ack does not come within ``publish_timeout_s`` may still have been stored (a stream
leader that stored it and died before answering, whose followers elect a new leader
holding it); it is published again under the same ``Nats-Msg-Id`` until the stream
answers, for up to ``publish_settle_s``, so that a 503 means "not stored" unless it says
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from waymark import jetstream, metrics, nats_credentials, wire
from waymark.bus.base import (
    Bus,
    BusSettings,
    ChangeHandler,
    InboundMessage,
    Source,
    decode_changes,
    encode_changes,
)
from waymark.errors import Unavailable
from waymark.nats_credentials import CredentialsRefused

log = logging.getLogger("waymark.bus")

CHANGES_BYTES = 256 * 1024  # most bytes per change-feed message (the server's limit: 1 MB)
RETRY_CONNECT_S = 1.0  # after a failed first connect, answer Unavailable at once for this long
SETTLE_PAUSE_S = 0.25  # between attempts to settle a publish whose outcome is unknown
_UNKNOWN = (
    "NATS did not acknowledge the publish within {:g} s: it may have been stored. Send the"
    " same events again with the same event ids; nothing is stored twice"
)


class NatsInboundMessage(InboundMessage):
    def __init__(self, msg: Msg) -> None:
        meta = msg.metadata
        self.msg = msg
        self.subject = msg.subject
        self.data = msg.data
        self.deliveries = meta.num_delivered
        self.stored_us = int(meta.timestamp.timestamp() * 1_000_000)

    # An ack, nak or term that cannot be sent (NATS down) is logged and dropped: the
    # message is then redelivered after ack_wait, which the store's idempotence absorbs.

    async def ack(self) -> None:
        with _unsent("ack"):
            await self.msg.ack()

    async def nak(self, delay_s: float) -> None:
        with _unsent("nak"):
            await self.msg.nak(delay=delay_s)

    async def term(self) -> None:
        with _unsent("term"):
            await self.msg.term()


def stream_config(name: str, subject: str, settings: BusSettings) -> StreamConfig:
    """A Waymark stream as ``settings`` want it."""
    return StreamConfig(
        name=name,
        subjects=[subject],
        retention=RetentionPolicy(jetstream.STREAM_RETENTION),
        storage=StorageType(jetstream.STREAM_STORAGE),
        max_age=settings.max_age_s,
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.replicas,
    )


def consumer_config(settings: BusSettings) -> ConsumerConfig:
    """The collectors' durable pull consumer on a stream, as ``settings`` want it."""
    return ConsumerConfig(
        durable_name=settings.consumer,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=-1,
        max_ack_pending=settings.max_ack_pending,
        max_waiting=512,
    )


def stream_subjects(settings: BusSettings) -> list[tuple[str, str, str]]:
    """(source name, stream, subject) of each stream the collectors consume."""
    return [
        ("events", settings.stream, f"{settings.prefix}.events.>"),
        ("gsm", settings.gsm_stream, settings.gsm_subject),
    ]


async def ensure_stream(
    js: JetStreamContext, name: str, subject: str, settings: BusSettings | None = None
) -> bool:
    """Create a stream if it is missing; an existing one is left as it is (its settings
    stand). True if this call created it.

    The one place that knows a Waymark stream's settings (file storage, limits retention,
    ``max_age_s``, ``duplicate_window_s``, ``replicas`` of :class:`BusSettings`), whoever
    comes first: an API, a collector or the SDK's ``nats`` transport.
    """
    try:
        await js.stream_info(name)
        return False
    except nats.js.errors.NotFoundError:
        pass
    try:
        await js.add_stream(stream_config(name, subject, settings or BusSettings()))
    except nats.js.errors.BadRequestError:
        await js.stream_info(name)  # created meanwhile by another process: theirs stands
        return False
    return True


async def delete_streams(settings: BusSettings) -> None:
    """Remove the streams of ``settings`` (Waymark's and the GSM one) with every message and
    consumer in them; a stream that is not there is fine. For test and benchmark runs that
    made their own."""
    nc = await nats_credentials.connect(settings.servers, settings.credentials)
    try:
        js = nc.jetstream()
        for name in (settings.stream, settings.gsm_stream):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


@contextlib.contextmanager
def _unsent(what: str) -> Iterator[None]:
    try:
        yield
    except nats.errors.Error as exc:
        log.warning("bus %s not sent, the message will be redelivered: %r", what, exc)


class NatsSource(Source):
    def __init__(self, name: str, sub: JetStreamContext.PullSubscription) -> None:
        self.name = name
        self.sub = sub

    async def fetch(self, batch: int, wait_s: float) -> list[InboundMessage]:
        try:
            msgs = await self.sub.fetch(batch, timeout=wait_s)
        except (TimeoutError, nats.errors.TimeoutError, nats.js.errors.FetchTimeoutError):
            return []
        except nats.errors.Error as exc:
            raise Unavailable(f"NATS fetch failed: {exc!r}") from exc
        return [NatsInboundMessage(m) for m in msgs]

    async def pending(self) -> int:
        try:
            info = await self.sub.consumer_info()
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"NATS consumer info failed: {exc!r}") from exc
        return int(info.num_pending or 0)


class NatsBus(Bus):
    def __init__(self, settings: BusSettings, name: str = "waymark") -> None:
        super().__init__(settings)
        self.name = name  # the connection's name, as the servers show it
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting = asyncio.Lock()
        self._handlers: list[ChangeHandler] = []
        self._failed_at = -RETRY_CONNECT_S

    @classmethod
    def from_url(cls, url: str, name: str = "waymark") -> NatsBus:
        return cls(BusSettings.from_url(url), name)

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        async with self._connecting:
            if self._js is not None:
                return
            if time.monotonic() - self._failed_at < RETRY_CONNECT_S:
                raise Unavailable(f"cannot reach NATS at {self._where}", 2)
            try:
                nc = await nats_credentials.connect(
                    self.settings.servers,
                    self.settings.credentials,
                    name=self.name,
                    connect_timeout=2,
                    reconnect_time_wait=0.5,
                    max_reconnect_attempts=-1,
                    pending_size=0,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
            except CredentialsRefused:
                self._failed_at = time.monotonic()
                raise  # a setting to fix: `waymark serve` and `waymark collect` end with it
            except (OSError, nats.errors.Error) as exc:
                self._failed_at = time.monotonic()
                raise Unavailable(f"cannot reach NATS at {self._where}: {exc!r}", 2) from exc
            js = nc.jetstream(timeout=self.settings.publish_timeout_s)
            try:
                for _, stream, subject in stream_subjects(self.settings):
                    await self._ensure_stream(js, stream, subject)
            except BaseException:
                await nc.close()
                raise
            self._nc, self._js = nc, js
            for handler in self._handlers:
                await self._subscribe_changes(handler)

    async def check_connected(self) -> None:
        await self._jetstream()

    @property
    def _where(self) -> str:
        return ",".join(self.settings.servers)

    async def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            await self.connect()
        assert self._js is not None and self._nc is not None
        if not self._nc.is_connected:
            raise Unavailable(f"NATS at {self._where} is not connected; reconnecting", 2)
        return self._js

    async def _ensure_stream(self, js: JetStreamContext, name: str, subject: str) -> None:
        try:
            created = await ensure_stream(js, name, subject, self.settings)
        except nats.errors.Error as exc:
            raise Unavailable(f"cannot find or create stream {name}: {exc!r}", 2) from exc
        if created:
            log.info("bus created stream=%s subject=%s", name, subject)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("bus error %r", exc)

    async def _on_disconnected(self) -> None:
        if self._nc is None:  # closing
            return
        log.warning("bus disconnected from %s", self._where)

    async def _on_reconnected(self) -> None:
        log.warning("bus reconnected to %s", self._where)

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await nc.flush(timeout=1)  # acks and change-feed messages still in the buffer
            await nc.close()

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, messages: Sequence[wire.Message]) -> None:
        try:
            js = await self._jetstream()
        except CredentialsRefused as exc:  # NATS came back after start, refusing them
            raise Unavailable(str(exc), 5) from exc
        # Every message's outcome is awaited, so that none is still being published (or
        # settled) after the answer.
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(self._publish_one(js, m) for m in messages), return_exceptions=True
        )
        metrics.bus_publish(time.perf_counter() - started)
        acks = [o for o in outcomes if isinstance(o, PubAck)]
        failed = [o for o in outcomes if not isinstance(o, PubAck)]
        if failed:
            raise failed[0]
        log.debug(
            "bus published messages=%d duplicates=%d",
            len(acks),
            sum(a.duplicate or 0 for a in acks),
        )

    async def _publish_one(self, js: JetStreamContext, message: wire.Message) -> PubAck:
        """Publish and wait for the stream's ack. An error answer, or no stream to answer
        (no leader during an election), means not stored: :class:`Unavailable` at once. An
        ack that does not come in time leaves the outcome unknown (the leader may have
        stored it and died before answering), so it is settled first (:meth:`_settle`)."""
        try:
            return await self._send(js, message, self.settings.publish_timeout_s)
        except TimeoutError:  # nats-py's own TimeoutError is one too
            pass
        except nats.errors.Error as exc:
            raise Unavailable(f"NATS did not store the publish: {exc!r}", 2) from exc
        if jetstream.MSG_ID not in message.headers:  # nothing would tell a repeat from the first
            raise Unavailable(_UNKNOWN.format(self.settings.publish_timeout_s), 2)
        return await self._settle(js, message)

    async def _settle(self, js: JetStreamContext, message: wire.Message) -> PubAck:
        """The same message again, under the same ``Nats-Msg-Id``, until the stream answers:
        if the first one was stored, its duplicate window drops this one and acknowledges it
        as a duplicate; if not, this one is stored. Either way, an ack means stored once.
        Attempts that fail (no leader yet, connection not back) are repeated every
        :data:`SETTLE_PAUSE_S` for ``publish_settle_s``; then :class:`Unavailable`, saying
        that the outcome is unknown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.publish_settle_s
        while (remaining := deadline - loop.time()) > 0:
            try:
                return await self._send(
                    js, message, min(remaining, self.settings.publish_timeout_s)
                )
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("bus settling subject=%s error=%r", message.subject, exc)
            await asyncio.sleep(min(SETTLE_PAUSE_S, max(0.0, deadline - loop.time())))
        waited = self.settings.publish_timeout_s + self.settings.publish_settle_s
        raise Unavailable(_UNKNOWN.format(waited), 2)

    async def _send(self, js: JetStreamContext, message: wire.Message, timeout: float) -> PubAck:
        return await js.publish(
            message.subject,
            message.payload,
            timeout=timeout,
            stream=self._stream_of(message.subject),
            headers=dict(message.headers) or None,
        )

    def _stream_of(self, subject: str) -> str:
        """The stream a subject must land in (GSM's, or Waymark's own)."""
        s = self.settings
        return s.gsm_stream if subject == s.gsm_subject else s.stream

    # -- collecting ------------------------------------------------------------------------

    async def sources(self) -> list[Source]:
        js = await self._jetstream()
        s = self.settings
        out: list[Source] = []
        for name, stream, subject in stream_subjects(s):
            try:
                sub = await js.pull_subscribe(
                    subject, durable=s.consumer, stream=stream, config=consumer_config(s)
                )
            except nats.errors.Error as exc:
                raise Unavailable(
                    f"cannot open consumer {s.consumer} on {stream}: {exc!r}", 2
                ) from exc
            out.append(NatsSource(name, sub))
        return out

    # -- change feed -----------------------------------------------------------------------

    async def publish_changes(self, tenant: str, summaries: Sequence[Mapping[str, Any]]) -> None:
        if not summaries:
            return
        await self._jetstream()
        assert self._nc is not None
        subject = self.settings.changes_subject(tenant)
        try:
            for body in encode_changes(tenant, summaries, CHANGES_BYTES):
                await self._nc.publish(subject, body)
        except nats.errors.Error as exc:
            log.warning("bus change feed publish failed: %r", exc)

    async def watch_changes(self, handler: ChangeHandler) -> None:
        """Subscribe now if connected, else on the first successful connect."""
        self._handlers.append(handler)
        if self._nc is not None:
            await self._subscribe_changes(handler)

    async def _subscribe_changes(self, handler: ChangeHandler) -> None:
        assert self._nc is not None

        async def on_message(msg: Msg) -> None:
            decoded = decode_changes(msg.data)
            if decoded is None:
                log.warning("bus ignored a change-feed message that is not one on %s", msg.subject)
                return
            handler(*decoded)

        await self._nc.subscribe(f"{self.settings.prefix}.changes.>", cb=on_message)
