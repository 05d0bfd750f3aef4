"""The store interface: every backend (SQLite, PostgreSQL) implements :class:`Store`.

Every method is tenant-scoped: no query can see another tenant's rows. Appends
are idempotent on (tenant, event_id) and keep each trace's summary up to date by
a commutative merge (see :mod:`waymark.summary`); a failed append stores nothing.
The contract tests in ``tests/store`` run against every backend.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson

from waymark import storable
from waymark.errors import BadCursor, BadRequest
from waymark.model import Record, State, Summary
from waymark.summary import Partial

T = TypeVar("T")

LINEAGE_SCAN_EVENTS = 2000
"""The most events one lineage page reads (most events name no inputs or outputs)."""

LINEAGE_SCAN_BYTES = 8 * 1024 * 1024
"""About the most bytes of stored events one lineage page reads."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did: how many events were new, and which traces they changed.

    ``partials``: the changed traces' stored partials after the append, by (tenant,
    trace_id), when they were asked for and the backend gets them back from its upsert
    (PostgreSQL's ``RETURNING``); None otherwise."""

    inserted: int
    traces: list[tuple[str, str]] = field(default_factory=list)  # (tenant, trace_id)
    partials: dict[tuple[str, str], Partial] | None = None
    #: the state (SUCCEEDED or FAILED) each trace the append made done, or turned from one
    #: to the other, turned to: one item per such trace
    turned: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PathTouch:
    """An event that touched a path (read, wrote or named it): its event time (``at``) and
    when it was received."""

    trace_id: str
    event_id: str
    at: str
    received_at: str
    # as stored: with ``event_id``, where the next page starts
    received_us: int
    time_us: int


#: Dataset scope, the ``datasets`` of the read methods: None reads every trace; a set reads
#: only traces whose dataset (the part of their ``domain_id`` before the first ``/``) is in
#: it, as if the others did not exist (an empty set reads none).
Datasets = frozenset[str] | None


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Filters for trace search; ``component`` and ``stage`` each match any event of the
    trace (not necessarily the same one); ``datasets`` limits it to those datasets' traces
    (:data:`Datasets`)."""

    domain: str | None = None
    domain_id: str | None = None
    component: str | None = None
    stage: str | None = None
    state: State | None = None
    done: bool | None = None
    user: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    datasets: Datasets = None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters for event search (GSM's status query); any combination, at least one;
    ``datasets`` limits it to events of those datasets' traces (:data:`Datasets`)."""

    trace_id: str | None = None
    record_id: str | None = None
    stages: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    datasets: Datasets = None


@dataclass(frozen=True, slots=True)
class DatasetDetails:
    """What a trace carried (GSM ``datasetDetails``); one row per trace, dataset and version."""

    tenant: str
    trace_id: str
    dataset_id: str
    dataset_version_id: str | None
    dataset_type: str | None
    record_count: int | None
    time_us: int
    received_us: int


@dataclass(frozen=True, slots=True)
class StaleTrace:
    """A trace whose last event is older than a retention allows (:meth:`Store.stale_traces`)."""

    tenant: str
    trace_id: str
    domain: str | None
    updated_us: int
    event_count: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the collector could not use, kept with the reason."""

    id: int
    received_us: int
    subject: str
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: never its secret, only the secret's hash (hex SHA-256).

    ``grants`` are ``TENANT:ROLE[:DATASET]`` texts (:mod:`waymark.auth.grants`); times are
    microseconds since the epoch, ``expires_us``/``revoked_us`` None when not set."""

    id: str
    name: str
    grants: tuple[str, ...]
    secret_hash: str
    created_us: int
    expires_us: int | None = None
    revoked_us: int | None = None


#: the trace state changes a webhook may subscribe to
WEBHOOK_EVENTS = ("trace.started", "trace.succeeded", "trace.failed", "trace.stalled")


@dataclass(frozen=True, slots=True)
class Webhook:
    """A tenant's subscription: POSTs of ``events`` (of :data:`WEBHOOK_EVENTS`) to ``url``
    for traces of ``dataset`` and ``component`` (None: any), signed with ``secret``
    (``whsec_<base64>``). ``failed_us``/``failure``: when and why a message was last given
    up on, None if never."""

    tenant: str
    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_us: int
    dataset: str | None = None
    component: str | None = None
    failed_us: int | None = None
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """An outbox row claimed for delivery: message ``id`` (``webhook-id``) of ``type``
    about a trace, to a subscription's ``url`` signed with its ``secret``."""

    id: str
    tenant: str
    trace_id: str
    webhook_id: str
    type: str
    created_us: int
    attempts: int
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message to a subscription and its last attempt: HTTP ``status`` (None if no answer
    came) and ``error``; ``delivered_us``/``gave_up_us`` once it is settled."""

    id: str
    trace_id: str
    type: str
    created_us: int
    attempts: int
    last_us: int | None
    status: int | None
    error: str | None
    delivered_us: int | None
    gave_up_us: int | None


@dataclass(frozen=True, slots=True)
class DataFlow:
    """One page of a trace's lineage (:mod:`waymark.lineage`): step and path nodes, edges
    ``{"from", "to"}`` between them, and the cursor of the next page (None on the last)."""

    nodes: list[dict[str, Any]]
    edges: list[dict[str, str]]
    next_cursor: str | None


#: the most traces an overview counts: the most recently updated of its window.
OVERVIEW_TRACES = 100_000


@dataclass(frozen=True, slots=True)
class DatasetCounts:
    """One dataset's traces in an overview's window, by state (every :class:`State`).

    ``dataset`` is the part of the traces' ``domain_id`` before the first ``/`` (okdata's
    ``<dataset>/<version>``), None for traces that name none."""

    dataset: str | None
    counts: dict[str, int]
    updated_us: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Overview:
    """Counts of the traces updated at or after ``since_us``, by state, per dataset.

    ``datasets`` are the failing first (most FAILED, then most STALLED, then most traces),
    at most the ``limit`` asked for; ``more_datasets`` says how many were left off.
    ``truncated``: the window held more than :data:`OVERVIEW_TRACES` traces and only the
    most recently updated of them were counted."""

    since_us: int
    now_us: int
    counts: dict[str, int]
    datasets: list[DatasetCounts]
    more_datasets: int
    truncated: bool


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> tuple[Any, ...]:
    """Decode a cursor made by :func:`encode_cursor`; :class:`BadCursor` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = storable.load(raw, ("cursor",))
    except (ValueError, BadRequest) as exc:  # not base64, not JSON, not storable
        raise BadCursor("cursor is not one this server gave out") from exc
    if (
        not isinstance(parts, list)
        or len(parts) != len(types)
        or not all(
            isinstance(p, t) and not isinstance(p, bool) for p, t in zip(parts, types, strict=True)
        )
    ):
        raise BadCursor("cursor is not one this server gave out")
    return tuple(parts)


class Store(ABC):
    """Where events and summaries live.

    Every method may be called from any thread at once, and blocks until it is done (a
    write, until it is committed): callers on an event loop run them in a worker thread,
    all but :meth:`commit_marker`."""

    #: the most traces one transaction of a prune removes (:mod:`waymark.retention`): a
    #: backend's own figure, by how long its deletions may hold the appends beside them.
    prune_batch_traces = 100

    def durability_warnings(self) -> list[str]:
        """How this store's configuration lets a commit it has acknowledged be lost to an
        OS crash or a power loss, one sentence each naming the setting; empty when every
        commit is synced before it returns (which a 202 promises). The server logs these at
        start and lists them in ``/readyz``. Raises :class:`waymark.errors.Unavailable` if
        the store cannot be asked now."""
        return []

    def commit_marker(self) -> Hashable | None:
        """A value that changes whenever anyone, in this process or another, commits to the
        store; None where the backend cannot tell cheaply. Waiters compare successive
        markers to hear of commits nobody told them of (another worker appending to the
        same SQLite file); it must cost microseconds, as it is asked often."""
        return None

    @abstractmethod
    def append(self, records: Sequence[Record], *, partials: bool = False) -> AppendResult:
        """Store the records not yet stored (by tenant and event_id) and fold them into their
        traces' summaries, all in one transaction. Within one call, the first record with a
        given (tenant, event_id) wins. ``partials``: also return the changed traces' stored
        partials if the backend can without a read (:attr:`AppendResult.partials`)."""

    @abstractmethod
    def summary(self, tenant: str, trace_id: str) -> Summary | None:
        """The trace's summary, or None if it has no events."""

    @abstractmethod
    def summaries(self, tenant: str, trace_ids: Sequence[str]) -> list[Summary]:
        """The summaries of those of the traces that exist (any order)."""

    @abstractmethod
    def event_counts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """How many events each of the (tenant, trace_id) traces has, for those that exist:
        what waiters compare to hear of changes nobody told them of (one query)."""

    @abstractmethod
    def events(
        self,
        tenant: str,
        trace_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> Page[dict[str, Any]]:
        """The trace's events in sort-key order, each as stored plus ``received_at``."""

    @abstractmethod
    def trace_items(
        self,
        tenant: str,
        trace_id: str,
        kind: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> Page[Any] | None:
        """The trace's distinct errors (``kind`` "error", in key order) or paths ("path", in
        first-seen order): what a summary counts and shows the ends of. A page holds at
        most ``limit`` items and about 1 MiB of them (at least one); None if the trace
        has no events (or is outside ``datasets``)."""

    @abstractmethod
    def search(
        self, tenant: str, query: TraceQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Summary]:
        """Summaries matching the query, most recently updated first."""

    @abstractmethod
    def paths(
        self,
        tenant: str,
        path: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> list[PathTouch]:
        """The events that touched the path (``path``, ``inputs``, ``outputs``, files in its
        body), latest received first (then latest event time): at most ``limit``, after
        ``cursor`` if given (the :func:`encode_cursor` of a touch's ``received_us``,
        ``time_us`` and ``event_id``)."""

    @abstractmethod
    def lineage(
        self,
        tenant: str,
        trace_id: str,
        *,
        limit: int = 1000,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> DataFlow | None:
        """A page of the trace's lineage graph (:mod:`waymark.lineage`): at most ``limit``
        nodes and ``limit`` edges, its steps in sort-key order; None if the trace has no
        events (or is outside ``datasets``). A page reads a bounded number of events
        (:data:`LINEAGE_SCAN_EVENTS`, :data:`LINEAGE_SCAN_BYTES`) and may end early, with a
        cursor, to keep to it."""

    @abstractmethod
    def overview(
        self, tenant: str, since_us: int, *, limit: int = 100, datasets: Datasets = None
    ) -> Overview:
        """How the traces updated at or after ``since_us`` stand, by state and dataset; counts
        at most :data:`OVERVIEW_TRACES` traces (the most recently updated). ``datasets``
        limits it to those datasets' traces (:data:`Datasets`)."""

    @abstractmethod
    def find_events(
        self, tenant: str, query: EventQuery, *, limit: int = 100, cursor: str | None = None
    ) -> Page[dict[str, Any]]:
        """Events matching the query in sort-key order, each as stored plus ``received_at``."""

    @abstractmethod
    def put_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        """Store dataset details; one per (tenant, trace, dataset, version), newest time wins."""

    @abstractmethod
    def dataset_details(
        self,
        tenant: str,
        *,
        trace_id: str | None = None,
        dataset_id: str | None = None,
        datasets: Datasets = None,
    ) -> list[DatasetDetails]:
        """Dataset details by trace or by dataset (at least one), oldest first; with
        ``datasets``, only those of traces of those datasets."""

    @abstractmethod
    def park(self, letters: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep unusable messages as (subject, reason, raw bytes) in the dead-letter table."""

    @abstractmethod
    def dead_letters(
        self, *, limit: int = 100, ids: Sequence[int] | None = None
    ) -> list[DeadLetter]:
        """The parked messages, newest first; only those of ``ids`` if given."""

    @abstractmethod
    def discard_dead_letters(self, ids: Sequence[int]) -> int:
        """Remove parked messages (replayed or given up on); return how many were there."""

    @abstractmethod
    def add_api_key(self, key: ApiKey) -> None:
        """Store a new key; ValueError if its id is taken."""

    @abstractmethod
    def api_key(self, key_id: str) -> ApiKey | None:
        """The key with this id (revoked and expired ones too), or None."""

    @abstractmethod
    def api_keys(self, *, limit: int = 1000) -> list[ApiKey]:
        """Keys, newest first, up to ``limit``."""

    @abstractmethod
    def revoke_api_key(self, key_id: str, at_us: int) -> ApiKey | None:
        """Mark the key revoked at ``at_us`` (an earlier revocation stands); return it as
        stored after that, or None if there is no such key."""

    # -- webhooks: subscriptions, and the outbox that appends fill (see waymark.notify) -------

    @abstractmethod
    def add_webhook(self, webhook: Webhook) -> None:
        """Store a new subscription; from the next append on, its tenant's trace state
        changes that it matches are written to the outbox in the append's transaction."""

    @abstractmethod
    def webhook(self, tenant: str, webhook_id: str) -> Webhook | None:
        """The tenant's subscription with this id, or None."""

    @abstractmethod
    def webhooks(
        self, tenant: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[Webhook]:
        """The tenant's subscriptions, oldest first."""

    @abstractmethod
    def delete_webhook(self, tenant: str, webhook_id: str) -> bool:
        """Remove a subscription and its outbox rows; False if there was none."""

    @abstractmethod
    def deliveries(self, tenant: str, webhook_id: str, *, limit: int = 100) -> list[Delivery]:
        """The subscription's messages that were attempted, latest attempt first."""

    @abstractmethod
    def sweep_stalls(self, now_us: int, *, limit: int = 1000) -> list[tuple[str, str]]:
        """Notice, once per stall, the traces of every tenant that crossed their stall
        timeout (up to ``limit`` stalls a call) and return their (tenant, trace_id).
        In a tenant with a ``trace.stalled`` subscription, stalls since its oldest one
        are noticed, and each gets an outbox row for every matching subscription made
        by the time it stalled; in any other tenant, stalls of the last hour beyond the
        longest stall timeout are noticed. Noticed traces are announced to other
        processes like a commit's (:meth:`follow_changes`). Nothing is written when
        nothing new stalled. One caller at a time does the work (others get [])."""

    @abstractmethod
    def claim_notifications(
        self, now_us: int, *, lease_us: int, limit: int = 100
    ) -> list[Notification]:
        """Take up to ``limit`` due outbox rows of any tenant for delivery: each is due
        again ``lease_us`` later unless :meth:`settle_notification` is called first, and no
        other caller gets it before then."""

    @abstractmethod
    def settle_notification(
        self,
        notification: Notification,
        *,
        at_us: int,
        status: int | None,
        error: str | None,
        next_us: int | None,
        delivered: bool,
    ) -> None:
        """Record an attempt: delivered, due again at ``next_us``, or (neither) given up on,
        which marks the subscription failed with ``error``."""

    # -- retention and deletion --------------------------------------------------------------

    @abstractmethod
    def delete_traces(
        self,
        keys: Sequence[tuple[str, str]],
        *,
        tombstone_until_us: int | None = None,
        older_than_us: int | None = None,
    ) -> int:
        """Remove the traces named by (tenant, trace_id) and everything derived from them
        (events, paths, errors and paths lists, summary, dataset details, rows of other
        tables that name them), in one transaction; return how many were stored.
        ``older_than_us``: only those whose last event is still before it (a prune that
        lost a race with an append leaves the trace). ``tombstone_until_us``: also lay a
        tombstone until then, so that :meth:`append` does not store again events of the
        trace received before now."""

    @abstractmethod
    def stale_traces(
        self,
        tenant: str,
        before_us: int,
        *,
        domain: str | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 100,
    ) -> list[StaleTrace]:
        """Up to ``limit`` of the tenant's traces whose last event is before ``before_us``
        (of ``domain`` if given), oldest first; ``after`` (updated_us, trace_id) of the
        last one of a page gives the next page."""

    @abstractmethod
    def tenants(self) -> list[str]:
        """Every tenant that has traces."""

    @abstractmethod
    def drop_tombstones(self, now_us: int) -> int:
        """Remove tombstones that expired by ``now_us``; return how many."""

    @abstractmethod
    def claim(self, name: str, holder: str, until_us: int, now_us: int) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``until_us``; True if
        ``holder`` holds it now (it was free, lapsed by ``now_us``, or already its)."""

    async def follow_changes(self, changed: Callable[[list[tuple[str, str]]], None]) -> None:  # noqa: B027
        """Call ``changed`` with the (tenant, trace_id) of traces that other processes'
        appends changed, as they commit, until cancelled; return at once where the
        backend has no such feed (then :meth:`commit_marker` and event counts are how
        other writers are found)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the store cannot be reached."""

    @abstractmethod
    def check_writable(self) -> None:
        """Commit one small write that changes nothing stored, the way appends are written
        and synced; :class:`waymark.errors.Unavailable` if the store cannot take writes now
        (its disk full or read-only, a standby server, no connection)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
