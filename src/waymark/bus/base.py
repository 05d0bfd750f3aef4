"""The bus interface: what the API and the collector need from a message bus.

A :class:`Bus` publishes bus messages (:mod:`waymark.wire`) and returns once the
server holds them, hands the collector its :class:`Source` of inbound messages (one per
stream it consumes), and carries the change feed: after each commit the collector
announces the changed summaries, and every API replica wakes its ``?wait``-ers.

:class:`BusSink` is the API's sink in bus mode: ``submit`` returns only after the
bus acknowledged every message, and raises :class:`waymark.errors.Unavailable`
(503 with Retry-After) when it cannot; never a false "accepted".

Settings come from the bus URL's query string, so that one URL says everything
(``nats://host:4222?stream=WAYMARK&ack_wait=30``); see :class:`BusSettings`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson

from waymark import jetstream, nats_credentials, wire
from waymark.model import Event, Record, now_us
from waymark.nats_credentials import NatsCredentials, parse_servers  # noqa: F401 (re-exported)
from waymark.pipelines import Pipelines
from waymark.sink import Sink
from waymark.store.base import DatasetDetails

ChangeHandler = Callable[[str, list[dict[str, Any]]], None]
"""Called with (tenant, summaries as JSON objects) for each change-feed message."""


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Every bus setting; each may be given in the bus URL's query string by its name.

    ``prefix`` and the stream and consumer names exist so that several installations
    (or test runs) can share one NATS server; the defaults are what producers such as
    the SDK expect.
    """

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)  # without credentials
    credentials: NatsCredentials = field(default_factory=NatsCredentials)  # repr hides secrets
    stream: str = jetstream.STREAM  # events: subjects <prefix>.events.>
    gsm_stream: str = "WAYMARK_GSM"  # GSM messages published straight to gsm_subject
    prefix: str = "waymark"  # subjects <prefix>.events.<tenant>, <prefix>.changes.<tenant>
    gsm_subject: str = wire.GSM_SUBJECT
    consumer: str = "waymark-collector"  # durable pull consumer shared by all collectors
    replicas: int = jetstream.STREAM_REPLICAS  # stream replicas in a JetStream cluster (1, 3 or 5)
    max_age_s: float = jetstream.STREAM_MAX_AGE_S  # how long the streams keep messages
    duplicate_window_s: float = jetstream.STREAM_DUPLICATE_WINDOW_S  # dedup of Nats-Msg-Id
    ack_wait_s: float = 30.0  # an unacknowledged delivery is redelivered after this
    max_ack_pending: int = 20_000  # deliveries in flight across all collectors
    publish_timeout_s: float = 2.0  # how long the API waits for the server's ack
    # after an ack that did not come in time (the message may have been stored), how long the
    # API keeps publishing it again, under the same Nats-Msg-Id, to learn whether it was.
    publish_settle_s: float = 10.0
    # how long the API gives a collector to store what it published, where it must read it
    # back (okdata's update of a trace just started) before it answers "not found".
    readable_within_s: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> BusSettings:
        """``nats://a:4222,b:4222?stream=X&ack_wait_s=5``, with NATS credentials if the
        server needs them (``nats://user:password@...``, ``nats://token@...``,
        ``?creds=FILE``; see :mod:`waymark.nats_credentials`); an unknown or bad setting is
        an error that names it, and never shows a secret."""
        parsed = nats_credentials.parse(url)
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, text in parsed.settings:
            if name not in known or name in ("servers", "credentials"):
                raise ValueError(f"bus URL: unknown setting {name!r}")
            default = getattr(cls(), name)
            try:
                values[name] = type(default)(text)
            except ValueError as exc:
                raise ValueError(
                    f"bus URL: {name}={text!r} is not a {type(default).__name__}"
                ) from exc
            if not values[name] and not isinstance(default, str) and name != "replicas":
                raise ValueError(f"bus URL: {name} must be positive")
        settings = cls(servers=parsed.servers, credentials=parsed.credentials, **values)
        if settings.publish_settle_s >= settings.duplicate_window_s:
            # a message published again after the window would be stored twice
            raise ValueError(
                f"bus URL: publish_settle_s ({settings.publish_settle_s:g}) must be shorter"
                f" than duplicate_window_s ({settings.duplicate_window_s:g})"
            )
        return settings

    def events_subject(self, tenant: str) -> str:
        return f"{self.prefix}.events.{wire.subject_token(tenant)}"

    def changes_subject(self, tenant: str) -> str:
        return f"{self.prefix}.changes.{wire.subject_token(tenant)}"


class InboundMessage(ABC):
    """One message handed to a collector; exactly one of ack, nak or term ends it."""

    subject: str
    data: bytes
    deliveries: int  # 1 on first delivery
    stored_us: int  # when the stream stored it (the same on every delivery)

    @abstractmethod
    async def ack(self) -> None:
        """Done: never deliver again."""

    @abstractmethod
    async def nak(self, delay_s: float) -> None:
        """Not now: deliver again after ``delay_s``."""

    @abstractmethod
    async def term(self) -> None:
        """Give up: never deliver again (the collector parked it first)."""


class Source(ABC):
    """One stream as a collector sees it: a durable consumer shared by every collector."""

    name: str  # "events" or "gsm"

    @abstractmethod
    async def fetch(self, batch: int, wait_s: float) -> list[InboundMessage]:
        """Up to ``batch`` messages, waiting at most ``wait_s`` for the first; [] if none."""

    @abstractmethod
    async def pending(self) -> int:
        """How many messages of the stream the consumer has not delivered yet; raise
        :class:`waymark.errors.Unavailable` if the bus cannot say now."""


class Bus(ABC):
    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings

    @abstractmethod
    async def connect(self) -> None:
        """Connect and create the streams if missing; :class:`Unavailable` if it cannot."""

    @abstractmethod
    async def close(self) -> None:
        """Release the connection."""

    @abstractmethod
    async def check_connected(self) -> None:
        """Return if connected to the server (connecting first if need be), else raise
        :class:`Unavailable`."""

    @abstractmethod
    async def publish(self, messages: Sequence[wire.Message]) -> None:
        """Return once the server stored every message; :class:`Unavailable` otherwise."""

    @abstractmethod
    async def sources(self) -> list[Source]:
        """The collector's sources, consumers created on first use."""

    @abstractmethod
    async def publish_changes(self, tenant: str, summaries: Sequence[Mapping[str, Any]]) -> None:
        """Announce changed summaries (their heads, :func:`waymark.summary.head`) on the
        change feed (fire and forget)."""

    @abstractmethod
    async def watch_changes(self, handler: ChangeHandler) -> None:
        """Call ``handler`` for every change-feed message from now on."""


def encode_changes(
    tenant: str, summaries: Sequence[Mapping[str, Any]], most_bytes: int
) -> list[bytes]:
    """Change-feed bodies ``{"tenant": ..., "summaries": [<summary head>, ...]}`` of at most
    ``most_bytes`` each (heads: :func:`waymark.summary.head`); one too big on its own
    travels as its trace id, tenant, done and state."""
    head = b'{"tenant":' + orjson.dumps(tenant) + b',"summaries":['
    room = most_bytes - len(head) - 2
    bodies: list[bytes] = []
    docs: list[bytes] = []
    size = 0
    for summary in summaries:
        doc = orjson.dumps(summary)
        if len(doc) > room:
            doc = orjson.dumps({k: summary[k] for k in ("trace_id", "tenant", "done", "state")})
        if docs and size + len(doc) + 1 > room:
            bodies.append(head + b",".join(docs) + b"]}")
            docs, size = [], 0
        docs.append(doc)
        size += len(doc) + 1
    if docs:
        bodies.append(head + b",".join(docs) + b"]}")
    return bodies


def decode_changes(data: bytes) -> tuple[str, list[dict[str, Any]]] | None:
    """The (tenant, summaries) of a change-feed body; None if it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    tenant, summaries = doc.get("tenant"), doc.get("summaries")
    if not isinstance(tenant, str) or not isinstance(summaries, list):
        return None
    return tenant, [s for s in summaries if isinstance(s, dict) and "trace_id" in s]


class BusSink(Sink):
    """Bus mode: publish accepted events and dataset details, one message per tenant (or
    more, for many details), and wait for the acks.

    Events sent to ``POST /v1/events`` are published as they were sent (validated, with
    their event ids fixed): the collectors validate and resolve every message again, so
    building records here would be work thrown away."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.readable_within_s = bus.settings.readable_within_s

    async def submit(self, records: Sequence[Record]) -> None:
        await self._publish(wire.encode_records(records))

    async def submit_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        await self._publish(wire.encode_details(details))

    async def submit_events(
        self,
        tenant: str,
        events: Sequence[Event],
        sent: Sequence[dict[str, Any]],
        pipelines: Pipelines,
        *,
        submitted_by: str | None = None,
    ) -> list[str]:
        docs = wire.with_event_ids(sent)
        await self._publish([wire.encode(tenant, docs, now_us(), submitted_by=submitted_by)])
        return [d["event_id"] for d in docs]

    async def _publish(self, messages: Sequence[wire.Message]) -> None:
        prefix = f"{self.bus.settings.prefix}.events"
        await self.bus.publish(
            [replace(m, subject=prefix + m.subject[len(wire.EVENTS_PREFIX) :]) for m in messages]
        )

    async def check_ready(self) -> None:
        """Ready while the bus is connected (the collectors write to the store)."""
        await self.bus.check_connected()

    async def close(self) -> None:
        await self.bus.close()
