"""The schema, one SQLAlchemy MetaData for every dialect.

Times are integer microseconds since the epoch (UTC); the sort key of an event is
``(time_us, event_id)``. Every table leads with ``tenant`` and every index with
``tenant`` and then ``trace_id`` or the searched column, so that no query can
cross tenants and the tables can later be distributed by them. ``event_id``
columns compare bytewise (``COLLATE "C"`` on PostgreSQL) so SQL orders keys as
Python does.

The database is created and upgraded by the Alembic history in ``migrations/``, which
must end at exactly this MetaData (``tests/store/test_migrations.py`` compares them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()


def _key(name: str) -> Column[str]:
    """An id column that sorts bytewise on every dialect."""
    return Column(name, String().with_variant(String(collation="C"), "postgresql"), nullable=False)


def _opt_key(name: str) -> Column[str]:
    return Column(name, String().with_variant(String(collation="C"), "postgresql"))


events = Table(
    "events",
    metadata,
    Column("tenant", String, nullable=False),
    _key("event_id"),
    _key("trace_id"),
    Column("time_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("status", String, nullable=False),
    Column("trace_status", String, nullable=False),
    Column("finishing", Boolean, nullable=False),
    Column("component", String),
    Column("stage", String),
    Column("operation", String),
    Column("domain", String),
    Column("domain_id", String),
    Column("user_name", String),
    Column("record_id", String),
    Column("errors", Text),  # JSON list, NULL when the event reports none
    Column("doc", Text, nullable=False),  # the event as the API returns it (JSON)
    # The paths the event names (JSON list, in first-seen order), NULL when none: what a
    # summary lists, read with the events' errors.
    Column("paths", Text),
    PrimaryKeyConstraint("tenant", "event_id", name="pk_events"),
    Index("ix_events_trace", "tenant", "trace_id", "time_us", "event_id"),
    Index(
        "ix_events_record_id",
        "tenant",
        "record_id",
        "time_us",
        sqlite_where=text("record_id IS NOT NULL"),
        postgresql_where=text("record_id IS NOT NULL"),
    ),
)

paths = Table(
    "paths",
    metadata,
    Column("tenant", String, nullable=False),
    Column("path", Text, nullable=False),
    _key("trace_id"),
    _key("event_id"),
    Column("time_us", BigInteger, nullable=False),
    Column("ord", Integer, nullable=False),
    # ``path``, or its beginning and a digest when long (:func:`waymark.store.sql.path_key`):
    # paths may be longer than an index entry may be (2,704 bytes on PostgreSQL).
    Column("path_key", String, nullable=False),
    # When the event was received: a lookup answers by arrival, not by the producer's clock.
    Column("received_us", BigInteger, nullable=False),
    # Ordered by path, so that new rows go where their folder's are, and a lookup reads
    # one range, latest arrival last. A trace's distinct paths are in ``trace_items``.
    PrimaryKeyConstraint(
        "tenant", "path_key", "received_us", "time_us", "event_id", "ord", name="pk_paths"
    ),
    sqlite_with_rowid=False,
)

# Every component and stage a trace's events name, once per trace, so that a search by
# either finds traces by any of their steps. ``kind`` is "component" or "stage".
trace_steps = Table(
    "trace_steps",
    metadata,
    Column("tenant", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("name", String, nullable=False),
    _key("trace_id"),
    PrimaryKeyConstraint("tenant", "kind", "name", "trace_id", name="pk_trace_steps"),
    sqlite_with_rowid=False,
)

trace_items = Table(
    "trace_items",
    metadata,
    Column("tenant", String, nullable=False),
    _key("trace_id"),
    Column("kind", String, nullable=False),  # "error" or "path"
    # What makes two items the same: a digest of the error's JSON (keys sorted), of the path.
    Column("digest", String, nullable=False),
    # The least key of the events that reported it: where the item stands in its list.
    Column("time_us", BigInteger, nullable=False),
    _key("event_id"),
    Column("ord", Integer, nullable=False),  # its place in the event's errors or paths
    Column("size", Integer, nullable=False),  # bytes of ``item``
    Column("item", Text, nullable=False),  # the error or the path, as JSON
    # One row per distinct error or path of a trace, so that a summary counts them and
    # reads its first and last few, and a page reads the next few, from this index alone.
    PrimaryKeyConstraint("tenant", "trace_id", "kind", "digest", name="pk_trace_items"),
    Index("ix_trace_items_order", "tenant", "trace_id", "kind", "time_us", "event_id", "ord"),
)

_STEP = ("time_us", "event_id", "status", "trace_status", "component", "stage", "operation")


def _step_columns(prefix: str) -> list[Column[Any]]:
    cols: list[Column[Any]] = [
        Column(f"{prefix}_time_us", BigInteger),
        _opt_key(f"{prefix}_event_id"),
    ]
    cols += [Column(f"{prefix}_{name}", String) for name in _STEP[2:]]
    return cols


traces = Table(
    "traces",
    metadata,
    Column("tenant", String, nullable=False),
    _key("trace_id"),
    Column("event_count", BigInteger, nullable=False),
    Column("started_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    *_step_columns("last"),
    *_step_columns("fin"),
    Column("origin_time_us", BigInteger),
    _opt_key("origin_event_id"),
    Column("domain", String),
    Column("domain_id", String),
    Column("user_name", String),
    # The deciding event's fields, derived by the database so that search can index them.
    Column("done", Boolean, Computed("fin_event_id IS NOT NULL", persisted=True)),
    Column(
        "cur_component",
        String,
        Computed(
            "CASE WHEN fin_event_id IS NULL THEN last_component ELSE fin_component END",
            persisted=True,
        ),
    ),
    Column(
        "cur_stage",
        String,
        Computed(
            "CASE WHEN fin_event_id IS NULL THEN last_stage ELSE fin_stage END", persisted=True
        ),
    ),
    Column(
        "cur_status",
        String,
        Computed(
            "CASE WHEN fin_event_id IS NULL THEN last_status ELSE fin_status END", persisted=True
        ),
    ),
    # How many distinct errors and paths the trace's events reported (its trace_items
    # rows), raised by each append by the number it added. Last: a revision added them.
    Column("error_count", BigInteger, nullable=False, server_default=text("0")),
    Column("path_count", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("tenant", "trace_id", name="pk_traces"),
    Index("ix_traces_updated", "tenant", "updated_us", "trace_id"),
    Index("ix_traces_domain_id", "tenant", "domain_id", "updated_us"),
    Index("ix_traces_done", "tenant", "done", "updated_us"),
    # Failures are few, so "which failed?" has an index of its own that only they enter.
    Index(
        "ix_traces_failed",
        "tenant",
        "updated_us",
        "trace_id",
        sqlite_where=text("cur_status = 'FAILED'"),
        postgresql_where=text("cur_status = 'FAILED'"),
    ),
)

dataset_details = Table(
    "dataset_details",
    metadata,
    Column("tenant", String, nullable=False),
    _key("trace_id"),  # GSM correlationId
    Column("dataset_id", String, nullable=False),
    Column("dataset_version_id", String, nullable=False),  # "" when not given
    Column("dataset_type", String),
    Column("record_count", BigInteger),
    Column("time_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "tenant", "trace_id", "dataset_id", "dataset_version_id", name="pk_dataset_details"
    ),
    Index("ix_dataset_details_dataset", "tenant", "dataset_id", "time_us"),
)

# Traces deleted on request (``DELETE /v1/traces/{id}``): an event of one that was received
# (``received_us``) before ``deleted_us`` is not stored again, so that events still on the
# bus when the trace was deleted do not bring it back. Kept until ``until_us``.
tombstones = Table(
    "tombstones",
    metadata,
    Column("tenant", String, nullable=False),
    _key("trace_id"),
    Column("deleted_us", BigInteger, nullable=False),
    Column("until_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "trace_id", name="pk_tombstones"),
    Index("ix_tombstones_until", "until_us"),
)

# Work that one replica at a time does (the background prune): who holds it, until when.
leases = Table(
    "leases",
    metadata,
    Column("name", String, nullable=False),
    Column("holder", String, nullable=False),
    Column("until_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", name="pk_leases"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("received_us", BigInteger, nullable=False),
    Column("subject", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
)

# API keys: credentials of every tenant (a key's grants name its tenants), so the table
# is not tenant-scoped; only the store's administrators (``waymark keys``) write it. The
# secret itself is never stored: ``secret_hash`` is its SHA-256, hex.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String, nullable=False),
    Column("name", String, nullable=False),
    Column("grants", Text, nullable=False),  # JSON list of TENANT:ROLE[:DATASET]
    Column("secret_hash", String, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger),  # NULL: never expires
    Column("revoked_us", BigInteger),  # NULL: not revoked
    PrimaryKeyConstraint("id", name="pk_api_keys"),
)

# Webhook subscriptions of a tenant. ``secret`` is what deliveries are signed with
# (``whsec_<base64>``): it must be recoverable to sign, so it is kept as given, protected
# by the database's own access control; no answer after the one that created it shows it.
webhooks = Table(
    "webhooks",
    metadata,
    Column("tenant", String, nullable=False),
    Column("id", String, nullable=False),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # JSON list of event types
    Column("dataset", String),
    Column("component", String),
    Column("secret", String, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("failed_us", BigInteger),  # the last time a message was given up on
    Column("failure", Text),  # and why
    PrimaryKeyConstraint("tenant", "id", name="pk_webhooks"),
)

# The transactional outbox: one row per trace state change per subscription, written in
# the transaction of the append (or stall sweep) that made the change, and drained by the
# notifier. ``id`` is the message's ``webhook-id``, the same on every attempt. ``next_us``
# is when the row is due (NULL once delivered or given up on). A stall noticed for no
# subscription is kept with ``webhook_id`` '' so that it is noticed once.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", String, nullable=False),
    Column("tenant", String, nullable=False),
    _key("trace_id"),
    Column("webhook_id", String, nullable=False),
    Column("type", String, nullable=False),
    Column("change_us", BigInteger, nullable=False),  # the trace's updated_us at the change
    Column("created_us", BigInteger, nullable=False),
    Column("next_us", BigInteger),
    Column("attempts", Integer, nullable=False),
    Column("last_us", BigInteger),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("delivered_us", BigInteger),
    Column("gave_up_us", BigInteger),
    PrimaryKeyConstraint("id", name="pk_webhook_outbox"),
    Index(
        "ux_webhook_outbox_change",
        "tenant",
        "trace_id",
        "type",
        "change_us",
        "webhook_id",
        unique=True,
    ),
    Index("ix_webhook_outbox_webhook", "tenant", "webhook_id", "last_us"),
    # The notifier's queue of every tenant: only rows still due enter it.
    Index(
        "ix_webhook_outbox_due",
        "next_us",
        sqlite_where=text("next_us IS NOT NULL"),
        postgresql_where=text("next_us IS NOT NULL"),
    ),
)
