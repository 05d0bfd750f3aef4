"""Every query, once, for every SQL backend; backends supply connections and the few
dialect-specific statements.

The summary upsert is the heart: one ``INSERT .. ON CONFLICT DO UPDATE`` per trace
per batch whose SET clause joins the stored partial with the batch's partial
(min, max, sum, or), exactly as :func:`waymark.summary.merge` does. It is
commutative, so concurrent writers and any arrival order give the same row.
"""

from __future__ import annotations

import functools
import hashlib
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from waymark.lineage import Graph, links
from waymark.model import (
    LIST_END_BYTES,
    LIST_ENDS,
    TEXT,
    Record,
    State,
    Status,
    Summary,
    TraceStatus,
    iso,
    now_us,
)
from waymark.pipelines import Pipelines
from waymark.store import schema, webhooks
from waymark.store.base import (
    LINEAGE_SCAN_BYTES,
    LINEAGE_SCAN_EVENTS,
    OVERVIEW_TRACES,
    ApiKey,
    AppendResult,
    DataFlow,
    DatasetCounts,
    DatasetDetails,
    Datasets,
    DeadLetter,
    Delivery,
    EventQuery,
    Notification,
    Overview,
    Page,
    PathTouch,
    StaleTrace,
    Store,
    TraceQuery,
    Webhook,
    decode_cursor,
    encode_cursor,
)
from waymark.summary import Candidate, Ends, Origin, Partial, error_key, render
from waymark.summary import partials as fold

NEVER_US = 1 << 62  # a stall timeout that never passes
NO_ENDS = Ends(0, [], [])  # a trace without errors (or paths)
ITEMS_PER_LOOKUP = 1000  # trace_items keys one statement looks up
ENDS_PER_STATEMENT = 400  # index ranges one statement reads (SQLite compounds at most 500)
_END_RANGE = (
    "SELECT * FROM (SELECT trace_id, kind, {tail} AS tail, size,"
    " CASE WHEN size <= ? THEN item END AS item FROM trace_items"
    " WHERE tenant = ? AND trace_id = ? AND kind = ?"
    " ORDER BY time_us{order}, event_id{order}, ord{order} LIMIT {limit}) AS ends{tail}"
)
LINEAGE_CHUNK = 200  # events a lineage page reads at a time

T = TypeVar("T")


class Cursor(Protocol):
    """The part of a DB-API cursor the shared queries use (sqlite3 and psycopg both fit)."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int = ..., /) -> list[Any]: ...
    def fetchone(self) -> Any: ...
    @property
    def rowcount(self) -> int: ...


_STEP_FIELDS = ("time_us", "event_id", "status", "trace_status", "component", "stage", "operation")
_TRACE_COLUMNS = (
    "tenant",
    "trace_id",
    "event_count",
    "started_us",
    "updated_us",
    *(f"last_{f}" for f in _STEP_FIELDS),
    *(f"fin_{f}" for f in _STEP_FIELDS),
    "origin_time_us",
    "origin_event_id",
    "domain",
    "domain_id",
    "user_name",
)


def _newer(prefix: str, column: str) -> str:
    """SET clause part: take the batch's value if its step's key is greater (or none is stored)."""
    return (
        f"{column} = CASE WHEN traces.{prefix}_event_id IS NULL"
        f" OR (excluded.{prefix}_time_us, excluded.{prefix}_event_id)"
        f" > (traces.{prefix}_time_us, traces.{prefix}_event_id)"
        f" THEN excluded.{column} ELSE traces.{column} END"
    )


def _older_origin(column: str) -> str:
    return (
        f"{column} = CASE WHEN traces.origin_event_id IS NULL"
        " OR (excluded.origin_time_us, excluded.origin_event_id)"
        " < (traces.origin_time_us, traces.origin_event_id)"
        f" THEN excluded.{column} ELSE traces.{column} END"
    )


TRACE_COLUMNS = _TRACE_COLUMNS

#: the conflict clause of every summary upsert: joins the stored row with the new one.
MERGE_TRACE = " ON CONFLICT (tenant, trace_id) DO UPDATE SET " + ", ".join(
    [
        "event_count = traces.event_count + excluded.event_count",
        "started_us = CASE WHEN excluded.started_us < traces.started_us"
        " THEN excluded.started_us ELSE traces.started_us END",
        "updated_us = CASE WHEN excluded.updated_us > traces.updated_us"
        " THEN excluded.updated_us ELSE traces.updated_us END",
        # SET expressions all see the old row, so every column of a step is decided on
        # the same comparison.
        *(_newer("last", f"last_{f}") for f in _STEP_FIELDS),
        *(_newer("fin", f"fin_{f}") for f in _STEP_FIELDS),
        *(
            _older_origin(c)
            for c in ("domain", "domain_id", "user_name", "origin_time_us", "origin_event_id")
        ),
    ]
)

UPSERT_TRACE = (
    f"INSERT INTO traces ({', '.join(_TRACE_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _TRACE_COLUMNS)})" + MERGE_TRACE
)

#: the columns of an ``events`` row, in :func:`event_row` order.
EVENT_COLUMNS = (
    "tenant",
    "event_id",
    "trace_id",
    "time_us",
    "received_us",
    "status",
    "trace_status",
    "finishing",
    "component",
    "stage",
    "operation",
    "domain",
    "domain_id",
    "user_name",
    "record_id",
    "errors",
    "doc",
    "paths",
)
INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
#: the columns of a ``paths`` row, in :func:`path_rows` order.
PATH_COLUMNS = "tenant, path, trace_id, event_id, time_us, ord, path_key, received_us"
INSERT_PATH = f"INSERT INTO paths ({PATH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
#: the columns of a ``trace_steps`` row, in :func:`step_rows` order.
STEP_COLUMNS = "tenant, kind, name, trace_id"
INSERT_STEP = f"INSERT INTO trace_steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"

SUMMARY_COLUMNS = ", ".join(_TRACE_COLUMNS)

#: the columns of a ``trace_items`` row, in :func:`item_rows` order.
ITEM_COLUMNS = "tenant, trace_id, kind, digest, time_us, event_id, ord, size, item"
#: keeps the least key of each distinct error and path of a trace: commutative, like traces.
UPSERT_ITEM = (
    f"INSERT INTO trace_items ({ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant, trace_id, kind, digest) DO UPDATE SET time_us = excluded.time_us,"
    " event_id = excluded.event_id, ord = excluded.ord, size = excluded.size,"
    " item = excluded.item WHERE (excluded.time_us, excluded.event_id, excluded.ord)"
    " < (trace_items.time_us, trace_items.event_id, trace_items.ord)"
)
ERROR, PATH = "error", "path"  # the kinds of trace_items
#: raises a trace's counts by the errors and paths an append added to trace_items.
ADD_COUNTS = (
    "UPDATE traces SET error_count = error_count + ?, path_count = path_count + ?"
    " WHERE tenant = ? AND trace_id = ?"
)
#: the rows of a trace_items key (tenant, trace_id, kind, digest) among those of a batch.
STORED_ITEMS = (
    "SELECT tenant, trace_id, kind, digest FROM trace_items"
    " WHERE (tenant, trace_id, kind, digest) IN (VALUES {rows})"
)
#: the tombstones (tenant, trace_id, deleted_us) in force of the traces of a batch.
TOMBSTONED = (
    "SELECT tenant, trace_id, deleted_us FROM tombstones"
    " WHERE until_us > ? AND (tenant, trace_id) IN (VALUES {rows})"
)
PUT_TOMBSTONE = (
    "INSERT INTO tombstones (tenant, trace_id, deleted_us, until_us) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (tenant, trace_id) DO UPDATE"
    " SET deleted_us = excluded.deleted_us, until_us = excluded.until_us"
)
#: tables whose rows name a trace by (tenant, trace_id), each with an index that leads
#: with them; ``traces`` is deleted first, ``paths`` by its paths and ``trace_steps`` by
#: its steps (they lead with those).
TRACE_TABLES = tuple(
    name
    for name in ("events", "trace_items", "dataset_details", "webhook_outbox")
    if name in schema.metadata.tables
)
#: the components and stages a trace's events name: its ``trace_steps`` rows' keys.
STEPS_OF_TRACE = "SELECT DISTINCT component, stage FROM events WHERE tenant = ? AND trace_id = ?"
DELETE_STEP = "DELETE FROM trace_steps WHERE tenant = ? AND kind = ? AND name = ? AND trace_id = ?"
COUNTED = f"{SUMMARY_COLUMNS}, error_count, path_count"  # a summary's columns of traces
ITEM_PAGE_BYTES = 1024 * 1024  # about the most bytes of items (events, errors, paths) a page holds

UPSERT_DATASET_DETAILS = (
    "INSERT INTO dataset_details (tenant, trace_id, dataset_id, dataset_version_id, dataset_type,"
    " record_count, time_us, received_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant, trace_id, dataset_id, dataset_version_id) DO UPDATE SET"
    " dataset_type = excluded.dataset_type, record_count = excluded.record_count,"
    " time_us = excluded.time_us, received_us = excluded.received_us"
    " WHERE excluded.time_us >= dataset_details.time_us"
)


def event_row(record: Record) -> tuple[Any, ...]:
    # Unpacked: each attribute of a named tuple is a descriptor call.
    (tenant, event_id, trace_id, time_us, _, _, received_us, status, trace_status, finishing,
     component, stage, operation, domain, domain_id, user, record_id, errors, paths, doc,
    ) = record  # fmt: skip
    return (
        tenant,
        event_id,
        trace_id,
        time_us,
        received_us,
        TEXT[status],
        TEXT[trace_status],
        finishing,
        component,
        stage,
        operation,
        domain,
        domain_id,
        user,
        record_id,
        orjson.dumps(list(errors)).decode() if errors else None,
        orjson.dumps(doc).decode(),
        orjson.dumps(paths).decode() if paths else None,
    )


PATH_KEY_WHOLE = 200  # characters: a path this long or shorter is its own key
PATH_KEY_HEAD = 150  # characters of a longer path kept before its digest


def path_key(path: str) -> str:
    """What ``paths`` is indexed by: the path itself when it is at most 200 characters, else
    its first 150, ``#`` and a digest of the whole (lookups also compare the path).

    Bounded, since an index entry is (2,704 bytes on PostgreSQL); and in the path's own
    order, so that the paths of one folder, which a batch often writes together, share
    index pages; a digest alone put every new path on a random page of the index
    (docs/BENCHMARKS.md). Migration 0005 re-keys the paths stored before."""
    if len(path) <= PATH_KEY_WHOLE:
        return path
    digest = hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{path[:PATH_KEY_HEAD]}#{digest}"


def path_rows(records: Sequence[Record]) -> list[tuple[Any, ...]]:
    return [
        (r.tenant, path, r.trace_id, r.event_id, r.time_us, i, path_key(path), r.received_us)
        for r in records
        for i, path in enumerate(r.paths)
    ]


def _count_rows(added: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """:data:`ADD_COUNTS` rows for the trace_items keys an append added, in key order."""
    counts: dict[tuple[str, str], list[int]] = {}
    for tenant, trace_id, kind, _ in added:
        counts.setdefault((tenant, trace_id), [0, 0])[kind == PATH] += 1
    return [(e, p, tenant, trace_id) for (tenant, trace_id), (e, p) in sorted(counts.items())]


def item_rows(records: Sequence[Record]) -> list[tuple[Any, ...]]:
    """The ``trace_items`` rows of newly stored records: each distinct error and path of a
    trace once, at the least key it has among them, sorted by the table's key (the order
    concurrent writers lock rows in)."""
    best: dict[tuple[str, str, str, str], tuple[Any, ...]] = {}
    for r in records:
        if not r.errors and not r.paths:
            continue
        for kind, items in ((ERROR, r.errors), (PATH, r.paths)):
            for ord_, item in enumerate(items):
                text = orjson.dumps(item)
                same = error_key(item) if kind == ERROR else text
                key = (r.tenant, r.trace_id, kind, hashlib.sha256(same).hexdigest()[:32])
                row = (*key, r.time_us, r.event_id, ord_, len(text), text.decode())
                held = best.get(key)
                if held is None or row[4:7] < held[4:7]:
                    best[key] = row
    return [best[key] for key in sorted(best)]


def step_rows(records: Sequence[Record]) -> list[tuple[str, str, str, str]]:
    """The ``trace_steps`` rows of newly stored records: each (tenant, kind, name, trace_id)
    once, sorted, so that concurrent writers lock alike."""
    rows: set[tuple[str, str, str, str]] = set()
    for r in records:
        if r.component is not None:
            rows.add((r.tenant, "component", r.component, r.trace_id))
        if r.stage is not None:
            rows.add((r.tenant, "stage", r.stage, r.trace_id))
    return sorted(rows)


class Prepared(list[Record]):
    """An append's records, one per (tenant, event_id) (the first wins), with the rows it
    stores made ahead of its transaction, in the calling thread, so that the transaction
    is held only for the writing: the rows assume every event is new, and the rare append
    that finds some stored already (a re-send) makes its paths and traces again."""

    @classmethod
    def of(cls, records: Sequence[Record]) -> Prepared:
        return records if isinstance(records, Prepared) else cls(records)

    def __init__(self, records: Sequence[Record]) -> None:
        unique: dict[tuple[str, str], Record] = {}
        for record in records:
            unique.setdefault((record.tenant, record.event_id), record)
        super().__init__(unique.values())
        self.events = [event_row(r) for r in self]
        self.paths, self.items, self.traces = _rows_of_new(self)
        self.steps: list[tuple[Any, ...]] = step_rows(self)


Rows = list[tuple[Any, ...]]


def _rows_of_new(records: Sequence[Record]) -> tuple[Rows, Rows, Rows]:
    """The ``paths`` and ``trace_items`` rows of newly stored records, and their traces'
    partial summaries as ``traces`` rows sorted by (tenant, trace_id), so that concurrent
    writers lock alike."""
    merged = fold(records)
    traces = [trace_row(t, tid, p) for (t, tid), p in sorted(merged.items())]
    return path_rows(records), item_rows(records), traces


def _step_row(step: Candidate | None) -> tuple[Any, ...]:
    if step is None:
        return (None,) * 7
    return (
        step.time_us,
        step.event_id,
        TEXT[step.status],
        TEXT[step.trace_status],
        step.component,
        step.stage,
        step.operation,
    )


def trace_row(tenant: str, trace_id: str, p: Partial) -> tuple[Any, ...]:
    o = p.origin
    origin = (o.time_us, o.event_id, o.domain, o.domain_id, o.user) if o else (None,) * 5
    return (
        tenant,
        trace_id,
        p.event_count,
        p.started_us,
        p.updated_us,
        *_step_row(p.last),
        *_step_row(p.finish),
        *origin,
    )


def _step_of(values: Sequence[Any]) -> Candidate | None:
    if values[1] is None:
        return None
    return Candidate(
        int(values[0]),
        values[1],
        Status(values[2]),
        TraceStatus(values[3]),
        values[4],
        values[5],
        values[6],
    )


def partial_of(row: Sequence[Any]) -> Partial:
    """Read back a ``traces`` row selected as ``SUMMARY_COLUMNS``."""
    last = _step_of(row[5:12])
    assert last is not None
    origin = None
    if row[20] is not None:
        origin = Origin(int(row[19]), row[20], row[21], row[22], row[23])
    return Partial(
        event_count=int(row[2]),
        started_us=int(row[3]),
        updated_us=int(row[4]),
        last=last,
        finish=_step_of(row[12:19]),
        origin=origin,
    )


class SqlStore(Store):
    """The shared implementation. Subclasses provide connections (:meth:`_read`,
    :meth:`_write`) and :meth:`_insert_new`; every operation here reaches the database
    through those two hooks only, so that a backend's policy (retries, one writer)
    applies to all of them."""

    #: how a backend spells a query parameter; queries here are written with ``?``.
    placeholder = "?"
    #: the most traces :meth:`overview` counts
    overview_traces = OVERVIEW_TRACES

    #: a component or stage named by at most this many traces is searched among those
    #: traces alone, read by key; a more common one filters the summaries read by recency
    #: (:meth:`search`). Where the two cost the same depends on the backend's cost of a
    #: read by key against one step of a scan, and on how many summaries there are; near
    #: 1,000 for both stores with 100,000 traces (docs/BENCHMARKS.md).
    step_lookup = 1000

    def __init__(self, pipelines: Pipelines | None = None) -> None:
        self.pipelines = pipelines or Pipelines()

    # -- backend hooks -----------------------------------------------------------------------

    @abstractmethod
    def _read(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` with a cursor for reads; return what it returns. A backend may run
        it more than once (a retry), so it must only read."""

    @abstractmethod
    def _write(self, work: Callable[[Cursor], T], size: int = 1) -> T:
        """Run ``work`` with a cursor inside a write transaction and return what it returns
        once that is committed. If ``work`` raises, nothing it wrote is kept and the error
        is raised here. A backend may run it more than once (a retry), so it must do the
        same each time. ``size``: about how many rows it writes (a backend may group small
        writes into one transaction)."""

    @abstractmethod
    def _insert_new(
        self, cur: Cursor, records: Sequence[Record], rows: list[tuple[Any, ...]]
    ) -> list[Record]:
        """Insert the records whose (tenant, event_id) is not stored yet; return those.
        ``rows`` are the records' :func:`event_row`, in the same order."""

    def _insert_paths(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        """Insert the path rows of newly stored events (they cannot exist yet)."""
        cur.executemany(self.q(INSERT_PATH), rows)

    def _upsert_items(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Fold the distinct errors and paths of newly stored events into ``trace_items``;
        return the keys (tenant, trace_id, kind, digest) of the rows it added.

        This one looks for the stored keys first, which is right only where writers take
        turns (SQLite's one writer); a backend whose writers run at once asks its upsert
        which rows it inserted."""
        stored: set[tuple[Any, ...]] = set()
        for start in range(0, len(rows), ITEMS_PER_LOOKUP):
            chunk = rows[start : start + ITEMS_PER_LOOKUP]
            sql = STORED_ITEMS.format(rows=", ".join("(?, ?, ?, ?)" for _ in chunk))
            cur.execute(self.q(sql), [v for row in chunk for v in row[:4]])
            stored.update(tuple(key) for key in cur.fetchall())
        self._write_items(cur, rows)
        return [row[:4] for row in rows if row[:4] not in stored]

    def _write_items(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        cur.executemany(self.q(UPSERT_ITEM), rows)

    def _insert_steps(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        """Insert the ``trace_steps`` rows of newly stored events, sorted; those stored
        already are left as they are."""
        cur.executemany(self.q(INSERT_STEP), rows)

    def _upsert_traces(
        self, cur: Cursor, rows: list[tuple[Any, ...]], returning: bool
    ) -> list[Sequence[Any]] | None:
        """Fold one partial row per trace, sorted by (tenant, trace_id), into ``traces``;
        if ``returning``, return the stored rows after it (as ``SUMMARY_COLUMNS``) when the
        backend can without a read, else None."""
        cur.executemany(self.q(UPSERT_TRACE), rows)
        return None

    def _lock_traces(self, cur: Cursor, keys: Sequence[tuple[str, str]]) -> None:
        """Make concurrent appends to these traces (sorted) take turns from here to the end
        of the transaction, so that each reads the state the previous one left: which
        state changes an append notifies depends on it. A backend with one writer has
        nothing to do."""

    def _trace_states(
        self, cur: Cursor, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], webhooks.TraceState]:
        """The state of each of these traces that exists (:func:`webhooks.trace_states`)."""
        return webhooks.trace_states(cur, self.q, keys)

    def _add_counts(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        """Raise traces' error and path counts by :func:`_count_rows`'s rows."""
        cur.executemany(self.q(ADD_COUNTS), rows)

    def _announce(self, cur: Cursor, keys: Sequence[tuple[str, str]]) -> None:
        """Tell other processes, at this transaction's commit, that these traces (sorted)
        changed (:meth:`Store.follow_changes`). A backend without such a feed has nothing
        to do."""

    def _claim_clause(self) -> str:
        """What the notifier's claim query ends with so that concurrent claimers skip each
        other's rows ('' where one writer does all claims)."""
        return ""

    def _sweep_alone(self, cur: Cursor) -> bool:
        """Whether this transaction is the only stall sweep running now (True where one
        writer runs every write transaction)."""
        return True

    def q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    # -- writes ------------------------------------------------------------------------------

    def _prepare(self, records: Sequence[Record]) -> Prepared:
        """The append's rows, made in the calling thread (a backend may add to them)."""
        return Prepared.of(records)

    def append(self, records: Sequence[Record], *, partials: bool = False) -> AppendResult:
        todo = self._prepare(records)
        if not todo:
            return AppendResult(0, [])
        return self._write(functools.partial(self._store, todo, partials), len(todo))

    def _store(self, todo: Prepared, partials: bool, cur: Cursor) -> AppendResult:
        stored = None
        turned: list[str] = []
        kept, rows = self._not_tombstoned(cur, todo)
        new = self._insert_new(cur, kept, rows)
        if new:
            paths, items, traces = (
                (todo.paths, todo.items, todo.traces)
                if len(new) == len(todo)
                else _rows_of_new(new)
            )
            steps = todo.steps if len(new) == len(todo) else step_rows(new)
            if paths:
                self._insert_paths(cur, paths)
            if steps:
                self._insert_steps(cur, steps)
            added = self._upsert_items(cur, items) if items else []
            # Subscribed tenants' trace state changes go to the outbox in this transaction;
            # and a trace can turn SUCCEEDED or FAILED only by a finishing event, so the
            # states of those traces are read too, to count what turned (once: here, where
            # the change is committed).
            subs = webhooks.subscriptions(cur, self.q, sorted({row[0] for row in traces}))
            finishing = {(r.tenant, r.trace_id) for r in new if r.finishing}
            keys = [
                (row[0], row[1])
                for row in traces
                if row[0] in subs or (row[0], row[1]) in finishing
            ]
            if keys:
                self._lock_traces(cur, keys)
                before = self._trace_states(cur, keys)
            stored = self._upsert_traces(cur, traces, partials or bool(keys))
            if keys:
                after = (
                    self._trace_states(cur, keys)
                    if stored is None
                    else webhooks.states_of_rows(stored, keys)
                )
                found = webhooks.changes(before, after)
                webhooks.write_changes(cur, self.q, subs, found, now_us())
                turned = [state[0] for _, kind, state in found if kind in webhooks.TURNED]
            if added:
                self._add_counts(cur, _count_rows(added))
            if not partials:
                stored = None
        changed = sorted({(r.tenant, r.trace_id) for r in new})
        if changed:
            self._announce(cur, changed)
        return AppendResult(
            len(new),
            changed,
            None if stored is None else {(row[0], row[1]): partial_of(row) for row in stored},
            turned,
        )

    def _not_tombstoned(self, cur: Cursor, todo: Prepared) -> tuple[Sequence[Record], Rows]:
        """The records (and their event rows) of traces without a tombstone in force that
        was laid after they were received: a deleted trace stays deleted against events of
        it received before, however late they arrive; events received later start it anew."""
        keys = sorted({(r.tenant, r.trace_id) for r in todo})
        dead: dict[tuple[str, str], int] = {}
        for start in range(0, len(keys), ITEMS_PER_LOOKUP):
            chunk = keys[start : start + ITEMS_PER_LOOKUP]
            sql = TOMBSTONED.format(rows=", ".join("(?, ?)" for _ in chunk))
            cur.execute(self.q(sql), [now_us(), *(v for key in chunk for v in key)])
            dead.update({(row[0], row[1]): int(row[2]) for row in cur.fetchall()})
        if not dead:
            return todo, todo.events
        keep = [
            i for i, r in enumerate(todo) if r.received_us >= dead.get((r.tenant, r.trace_id), -1)
        ]
        return [todo[i] for i in keep], [todo.events[i] for i in keep]

    def delete_traces(
        self,
        keys: Sequence[tuple[str, str]],
        *,
        tombstone_until_us: int | None = None,
        older_than_us: int | None = None,
    ) -> int:
        if not keys:
            return 0
        now = now_us()
        drop_trace = "DELETE FROM traces WHERE tenant = ? AND trace_id = ?"
        if older_than_us is not None:
            drop_trace += " AND updated_us < ?"
        by_trace = " WHERE tenant = ? AND trace_id = ?"

        def delete(cur: Cursor) -> int:
            gone = 0
            for tenant, trace_id in keys:
                # The summary row first: it is what an append of the trace locks, so an
                # append that comes after this waits, and one that came before (made the
                # trace newer) makes a pruning delete pass it by.
                key = (tenant, trace_id)
                cur.execute(
                    self.q(drop_trace), key if older_than_us is None else (*key, older_than_us)
                )
                found = int(cur.rowcount) > 0
                if older_than_us is not None and not found:
                    continue
                cur.execute(
                    self.q(f"SELECT item FROM trace_items{by_trace} AND kind = ?"), (*key, PATH)
                )
                path_keys = sorted({path_key(orjson.loads(r[0])) for r in cur.fetchall()})
                cur.executemany(
                    self.q("DELETE FROM paths WHERE tenant = ? AND path_key = ? AND trace_id = ?"),
                    [(tenant, k, trace_id) for k in path_keys],
                )
                # Each step row by its whole key: a trace's rows are not together in
                # trace_steps, and PostgreSQL has no skip scan to find them by trace.
                cur.execute(self.q(STEPS_OF_TRACE), key)
                steps = sorted(
                    {
                        (kind, name)
                        for row in cur.fetchall()
                        for kind, name in zip(("component", "stage"), row, strict=True)
                        if name is not None
                    }
                )
                cur.executemany(
                    self.q(DELETE_STEP), [(tenant, kind, name, trace_id) for kind, name in steps]
                )
                for table in TRACE_TABLES:
                    cur.execute(self.q(f"DELETE FROM {table}{by_trace}"), key)
                    found = found or int(cur.rowcount) > 0
                gone += found
                if tombstone_until_us is not None:
                    cur.execute(self.q(PUT_TOMBSTONE), (*key, now, tombstone_until_us))
            return gone

        return self._write(delete, len(keys))

    def stale_traces(
        self,
        tenant: str,
        before_us: int,
        *,
        domain: str | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 100,
    ) -> list[StaleTrace]:
        where = "tenant = ? AND updated_us < ?"
        params: list[Any] = [tenant, before_us]
        if after is not None:
            where += " AND (updated_us > ? OR (updated_us = ? AND trace_id > ?))"
            params += [after[0], after[0], after[1]]
        if domain is not None:
            where += " AND domain = ?"
            params.append(domain)
        sql = self.q(
            "SELECT trace_id, domain, updated_us, event_count FROM traces"
            f" WHERE {where} ORDER BY updated_us, trace_id LIMIT ?"
        )
        rows = self._read(functools.partial(_fetch, sql, (*params, limit)))
        return [StaleTrace(tenant, r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    def tenants(self) -> list[str]:
        # A skip scan of the traces index: one index probe per tenant, not a read of all rows.
        sql = (
            "WITH RECURSIVE t(tenant) AS (SELECT MIN(tenant) FROM traces UNION ALL"
            " SELECT (SELECT MIN(tenant) FROM traces WHERE tenant > t.tenant) FROM t"
            " WHERE t.tenant IS NOT NULL) SELECT tenant FROM t WHERE tenant IS NOT NULL"
        )
        return [r[0] for r in self._read(functools.partial(_fetch, sql, ()))]

    def drop_tombstones(self, now_us: int) -> int:
        def drop(cur: Cursor) -> int:
            cur.execute(self.q("DELETE FROM tombstones WHERE until_us <= ?"), (now_us,))
            return max(int(cur.rowcount), 0)

        return self._write(drop)

    def claim(self, name: str, holder: str, until_us: int, now_us: int) -> bool:
        take = self.q(
            "INSERT INTO leases (name, holder, until_us) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
            " until_us = excluded.until_us"
            " WHERE leases.until_us <= ? OR leases.holder = excluded.holder"
        )

        def claim(cur: Cursor) -> bool:
            cur.execute(take, (name, holder, until_us, now_us))
            cur.execute(self.q("SELECT holder FROM leases WHERE name = ?"), (name,))
            return bool(cur.fetchone()[0] == holder)

        return self._write(claim)

    # -- reads -------------------------------------------------------------------------------

    def _render(
        self, cur: Cursor, tenant: str, rows: list[Sequence[Any]], now: int
    ) -> list[Summary]:
        """Summaries of ``traces`` rows selected as :data:`COUNTED`: each with the count and
        the first and last few of its errors and paths (:class:`~waymark.summary.Ends`),
        read from ``trace_items`` in two short index ranges per list."""
        if not rows:
            return []
        counts: dict[tuple[str, str], int] = {}
        for row in rows:  # selected as COUNTED: the counts come last
            for kind, count in ((ERROR, row[-2]), (PATH, row[-1])):
                if count:
                    counts[(row[1], kind)] = int(count)
        ends = self._ends(cur, tenant, counts)
        out = []
        for row in rows:
            partial = partial_of(row)
            origin = partial.origin
            pipeline = self.pipelines.lookup(tenant, origin.domain if origin else None)
            out.append(
                render(
                    tenant,
                    row[1],
                    partial,
                    ends.get((row[1], ERROR), NO_ENDS),
                    ends.get((row[1], PATH), NO_ENDS),
                    now_us=now,
                    stall_timeout_us=pipeline.stall_timeout_us,
                )
            )
        return out

    def _ends(
        self, cur: Cursor, tenant: str, counts: dict[tuple[str, str], int]
    ) -> dict[tuple[str, str], Ends]:
        """The first and last few items of each (trace, kind) with a count, in statements
        of at most :data:`ENDS_PER_STATEMENT` index ranges; an item too large for a
        summary is not read (its size says it would not fit)."""
        ranges: list[tuple[str, list[Any]]] = []
        for (trace_id, kind), count in counts.items():
            params = [LIST_END_BYTES, tenant, trace_id, kind]
            ranges.append((_END_RANGE.format(tail=0, order="", limit=LIST_ENDS), params))
            if count > LIST_ENDS:
                tail = min(LIST_ENDS, count - LIST_ENDS)
                ranges.append((_END_RANGE.format(tail=1, order=" DESC", limit=tail), params))
        found: dict[tuple[str, str, int], list[tuple[Any, int]]] = {}
        for start in range(0, len(ranges), ENDS_PER_STATEMENT):
            chunk = ranges[start : start + ENDS_PER_STATEMENT]
            cur.execute(
                self.q(" UNION ALL ".join(sql for sql, _ in chunk)),
                [p for _, params in chunk for p in params],
            )
            for trace_id, kind, tail, size, item in cur.fetchall():
                found.setdefault((trace_id, kind, int(tail)), []).append(
                    (None if item is None else orjson.loads(item), int(size))
                )
        return {
            (trace_id, kind): Ends.of(
                count,
                found.get((trace_id, kind, 0), []),
                found.get((trace_id, kind, 1), [])[::-1],
            )
            for (trace_id, kind), count in counts.items()
        }

    def summary(self, tenant: str, trace_id: str) -> Summary | None:
        found = self.summaries(tenant, [trace_id])
        return found[0] if found else None

    def summaries(self, tenant: str, trace_ids: Sequence[str]) -> list[Summary]:
        if not trace_ids:
            return []
        sql = self.q(
            f"SELECT {COUNTED} FROM traces"
            f" WHERE tenant = ? AND trace_id IN ({', '.join('?' for _ in trace_ids)})"
        )

        def read(cur: Cursor) -> list[Summary]:
            cur.execute(sql, (tenant, *trace_ids))
            return self._render(cur, tenant, cur.fetchall(), now_us())

        return self._read(read)

    def event_counts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        if not keys:
            return {}
        by_tenant: dict[str, list[str]] = {}
        for tenant, trace_id in keys:
            by_tenant.setdefault(tenant, []).append(trace_id)
        where = " OR ".join(
            f"(tenant = ? AND trace_id IN ({', '.join('?' for _ in ids)}))"
            for ids in by_tenant.values()
        )
        params = [p for tenant, ids in by_tenant.items() for p in (tenant, *ids)]
        sql = self.q(f"SELECT tenant, trace_id, event_count FROM traces WHERE {where}")
        rows = self._read(functools.partial(_fetch, sql, params))
        return {(tenant, trace_id): int(count) for tenant, trace_id, count in rows}

    def events(
        self,
        tenant: str,
        trace_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> Page[dict[str, Any]]:
        query = EventQuery(trace_id=trace_id, datasets=datasets)
        return self.find_events(tenant, query, limit=limit, cursor=cursor)

    def find_events(
        self, tenant: str, query: EventQuery, *, limit: int = 100, cursor: str | None = None
    ) -> Page[dict[str, Any]]:
        where = ["tenant = ?"]
        params: list[Any] = [tenant]
        for column, value in (("trace_id", query.trace_id), ("record_id", query.record_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for column, values in (("stage", query.stages), ("status", query.statuses)):
            if values:
                where.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params += values
        if query.datasets is not None:
            where.append(_of_traces_in("events", query.datasets, params))
        if cursor is not None:
            time_us, event_id = decode_cursor(cursor, int, str)
            where.append("(time_us, event_id) > (?, ?)")
            params += [time_us, event_id]
        sql = (
            "SELECT doc, received_us, time_us, event_id FROM events"
            f" WHERE {' AND '.join(where)} ORDER BY time_us, event_id LIMIT ?"
        )
        params.append(limit + 1)
        rows, within = self._read(
            functools.partial(_fetch_within, self.q(sql), params, ITEM_PAGE_BYTES)
        )
        n = min(limit, within)
        items = []
        for doc, received_us, _, _ in rows[:n]:
            item = orjson.loads(doc)
            item["received_at"] = iso(received_us)
            items.append(item)
        next_cursor = None
        if len(rows) > n:
            last = rows[n - 1]
            next_cursor = encode_cursor(int(last[2]), last[3])
        return Page(items, next_cursor)

    def _trace_in(self, cur: Cursor, tenant: str, trace_id: str, datasets: Datasets) -> bool:
        """Whether a trace-scoped read may see the trace: always without dataset scope, else
        only when its dataset is one of ``datasets`` (others read as absent)."""
        if datasets is None:
            return True
        params: list[Any] = [tenant, trace_id]
        clause = _in_datasets("domain_id", datasets, params)
        sql = self.q(f"SELECT 1 FROM traces WHERE tenant = ? AND trace_id = ? AND {clause}")
        return bool(_fetch(sql, params, cur))

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
        after: tuple[Any, ...] = (-NEVER_US, "", -1)
        if cursor is not None:
            after = decode_cursor(cursor, int, str, int)
        where = (
            "WHERE tenant = ? AND trace_id = ? AND kind = ?"
            " AND (time_us, event_id, ord) > (?, ?, ?)"
        )
        params = (tenant, trace_id, kind, *after)
        sizes = self.q(
            f"SELECT time_us, event_id, ord, size FROM trace_items {where}"
            " ORDER BY time_us, event_id, ord LIMIT ?"
        )
        items = self.q(
            f"SELECT item FROM trace_items {where} AND (time_us, event_id, ord) <= (?, ?, ?)"
            " ORDER BY time_us, event_id, ord"
        )
        exists = self.q("SELECT 1 FROM traces WHERE tenant = ? AND trace_id = ?")

        def read(cur: Cursor) -> Page[Any] | None:
            if not self._trace_in(cur, tenant, trace_id, datasets):
                return None
            cur.execute(sizes, (*params, limit + 1))
            keys = cur.fetchall()
            if not keys:
                if cursor is None and not _fetch(exists, (tenant, trace_id), cur):
                    return None
                return Page([], None)
            room, n = ITEM_PAGE_BYTES, 0
            for *_, size in keys[:limit]:  # the longest run that fits, at least one
                room -= int(size)
                if n and room < 0:
                    break
                n += 1
            last = (int(keys[n - 1][0]), keys[n - 1][1], int(keys[n - 1][2]))
            cur.execute(items, (*params, *last))
            found = [orjson.loads(item) for (item,) in cur.fetchall()]
            return Page(found, encode_cursor(*last) if len(keys) > n else None)

        return self._read(read)

    def _state_clause(self, tenant: str, state: State, now: int) -> tuple[str, list[Any]]:
        if state is State.SUCCEEDED:
            return "done AND cur_status <> ?", [Status.FAILED.value]
        if state is State.FAILED:
            # A literal, not a parameter: only then may the planner use the partial index
            # of failed traces (ix_traces_failed).
            return f"done AND cur_status = '{Status.FAILED.value}'", []
        base, per_domain = self.pipelines.stall_timeouts(tenant)
        params: list[Any] = []
        timeout = "?"
        if per_domain:
            timeout = (
                "CASE " + " ".join("WHEN domain = ? THEN ?" for _ in per_domain) + " ELSE ? END"
            )
            for domain, value in per_domain.items():
                params += [domain, NEVER_US if value is None else value]
        params.append(NEVER_US if base is None else base)
        op = ">=" if state is State.RUNNING else "<"
        return f"NOT done AND updated_us {op} ? - {timeout}", [now, *params]

    def search(
        self, tenant: str, query: TraceQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Summary]:
        now = now_us()

        def read(cur: Cursor) -> tuple[list[tuple[int, str]], list[Summary]]:
            among, covered = self._named_by(cur, tenant, query)
            if among is not None and not among:
                return [], []
            sql, params = self.search_sql(
                tenant, query, limit=limit, cursor=cursor, now=now, among=among, covered=covered
            )
            cur.execute(sql, params)
            rows = cur.fetchall()
            if among is None:
                keys = [(int(row[4]), row[1]) for row in rows]
            else:  # the page's keys, sorted: now their whole rows
                keys = [(int(updated_us), trace_id) for trace_id, updated_us in rows]
                rows = self._rows_of(cur, tenant, [trace_id for _, trace_id in keys[:limit]])
            return keys, self._render(cur, tenant, rows[:limit], now)

        keys, items = self._read(read)
        next_cursor = None
        if len(keys) > limit:
            next_cursor = encode_cursor(*keys[limit - 1])
        return Page(items, next_cursor)

    def _rows_of(self, cur: Cursor, tenant: str, ids: list[str]) -> list[Any]:
        """The ``traces`` rows (:data:`COUNTED`) of these traces, in this order."""
        if not ids:
            return []
        cur.execute(
            self.q(
                f"SELECT {COUNTED} FROM traces"
                f" WHERE tenant = ? AND trace_id IN ({', '.join('?' for _ in ids)})"
            ),
            (tenant, *ids),
        )
        by_id = {row[1]: row for row in cur.fetchall()}
        return [by_id[i] for i in ids if i in by_id]

    def _named_by(
        self, cur: Cursor, tenant: str, query: TraceQuery
    ) -> tuple[list[str] | None, set[str]]:
        """The only traces the query's step filters can match, when one of them names at
        most :attr:`step_lookup` traces (a read of one index range), and the kinds of step
        whose filters that list accounts for; (None, nothing) when there is no step filter
        or every one is more common than that."""
        among: set[str] | None = None
        covered: set[str] = set()
        for kind, name in _step_filters(query):
            cur.execute(
                self.q(
                    "SELECT trace_id FROM trace_steps WHERE tenant = ? AND kind = ? AND name = ?"
                    " LIMIT ?"
                ),
                (tenant, kind, name, self.step_lookup + 1),
            )
            found = {trace_id for (trace_id,) in cur.fetchall()}
            if len(found) <= self.step_lookup:
                among = found if among is None else among & found
                covered.add(kind)
        return (None if among is None else sorted(among)), covered

    def search_sql(
        self,
        tenant: str,
        query: TraceQuery,
        *,
        limit: int,
        cursor: str | None,
        now: int,
        among: Sequence[str] | None = None,
        covered: set[str] | frozenset[str] = frozenset(),
    ) -> tuple[str, list[Any]]:
        """The statement :meth:`search` runs and its parameters: one more row than ``limit``
        (to tell whether there is a next page). ``among``: the only traces that can match
        (what :meth:`_named_by` found; ``covered``, the kinds of step filter it accounts
        for), read by key and sorted, instead of reading the summaries by recency; the
        statement then selects only the page's keys, (trace_id, updated_us), which sort
        faster than whole rows."""
        where = ["tenant = ?"]
        params: list[Any] = [tenant]
        for column, value in (
            ("domain", query.domain),
            ("domain_id", query.domain_id),
            ("user_name", query.user),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for kind, name in _step_filters(query):
            if kind in covered:
                continue
            where.append(
                "EXISTS (SELECT 1 FROM trace_steps s WHERE s.tenant = traces.tenant"
                " AND s.kind = ? AND s.name = ? AND s.trace_id = traces.trace_id)"
            )
            params += [kind, name]
        order = "updated_us DESC, trace_id DESC"
        columns = COUNTED
        if among is not None:
            columns = "trace_id, updated_us"
            where.append(f"trace_id IN ({', '.join('?' for _ in among)})")
            params += among
            # ``+``: sorted after the lookup by key, not read in order through the recency
            # index (which would visit every summary to find these few).
            order = "+updated_us DESC, trace_id DESC"
        if query.done is not None:
            where.append("done" if query.done else "NOT done")
        if query.since_us is not None:
            where.append("updated_us >= ?")
            params.append(query.since_us)
        if query.until_us is not None:
            where.append("updated_us < ?")
            params.append(query.until_us)
        if query.state is not None:
            clause, more = self._state_clause(tenant, query.state, now)
            where.append(clause)
            params += more
        if query.datasets is not None:
            where.append(_in_datasets("domain_id", query.datasets, params))
        if cursor is not None:
            updated_us, trace_id = decode_cursor(cursor, int, str)
            where.append("(updated_us, trace_id) < (?, ?)")
            params += [updated_us, trace_id]
        sql = f"SELECT {columns} FROM traces WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        params.append(limit + 1)
        return self.q(sql), params

    def paths(
        self,
        tenant: str,
        path: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> list[PathTouch]:
        before = (NEVER_US, NEVER_US, "")
        if cursor is not None:
            before = decode_cursor(cursor, int, int, str)
        params: list[Any] = [tenant, path_key(path), path, *before]
        scope = "" if datasets is None else " AND " + _of_traces_in("paths", datasets, params)
        sql = self.q(
            "SELECT trace_id, event_id, time_us, received_us FROM paths"
            " WHERE tenant = ? AND path_key = ? AND path = ?"
            " AND (received_us, time_us, event_id) < (?, ?, ?)"
            f"{scope} ORDER BY received_us DESC, time_us DESC, event_id DESC LIMIT ?"
        )
        params.append(limit)
        rows = self._read(functools.partial(_fetch, sql, params))
        return [
            PathTouch(trace_id, event_id, iso(int(t)) or "", iso(int(r)) or "", int(r), int(t))
            for trace_id, event_id, t, r in rows
        ]

    def overview(
        self, tenant: str, since_us: int, *, limit: int = 100, datasets: Datasets = None
    ) -> Overview:
        now = now_us()
        running, params = self._state_clause(tenant, State.RUNNING, now)
        where: list[Any] = [tenant, since_us]
        scope = "" if datasets is None else " AND " + _in_datasets("domain_id", datasets, where)
        # The state of each trace as search's filters decide it, over the most recently
        # updated traces of the window only: the cost is bounded by OVERVIEW_TRACES.
        sql = self.q(
            "SELECT domain_id, CASE"
            f" WHEN done AND cur_status = '{Status.FAILED.value}' THEN '{State.FAILED.value}'"
            f" WHEN done THEN '{State.SUCCEEDED.value}'"
            f" WHEN {running} THEN '{State.RUNNING.value}'"
            f" ELSE '{State.STALLED.value}' END AS state, COUNT(*), MAX(updated_us)"
            " FROM (SELECT domain_id, domain, done, cur_status, updated_us FROM traces"
            f" WHERE tenant = ? AND updated_us >= ?{scope}"
            " ORDER BY updated_us DESC LIMIT ?) AS recent GROUP BY domain_id, state"
        )
        beyond = self.q(
            f"SELECT 1 FROM traces WHERE tenant = ? AND updated_us >= ?{scope}"
            " ORDER BY updated_us DESC LIMIT 1 OFFSET ?"
        )

        def read(cur: Cursor) -> tuple[list[Any], bool]:
            rows = _fetch(sql, (*params, *where, self.overview_traces), cur)
            if sum(int(row[2]) for row in rows) < self.overview_traces:
                return rows, False
            return rows, bool(_fetch(beyond, (*where, self.overview_traces), cur))

        rows, truncated = self._read(read)
        return overview_of(rows, since_us, now, limit, truncated)

    def lineage(
        self,
        tenant: str,
        trace_id: str,
        *,
        limit: int = 1000,
        cursor: str | None = None,
        datasets: Datasets = None,
    ) -> DataFlow | None:
        # A cursor is where the next page starts: an event's key and the index of its first
        # link (lineage.links) not yet given.
        at, eid, link = (
            (-NEVER_US, "", 0) if cursor is None else decode_cursor(cursor, int, str, int)
        )
        sql = {
            op: self.q(
                "SELECT time_us, event_id, doc FROM events WHERE tenant = ? AND trace_id = ?"
                f" AND (time_us, event_id) {op} (?, ?) ORDER BY time_us, event_id LIMIT ?"
            )
            for op in (">=", ">")
        }

        def read(cur: Cursor) -> DataFlow | None:
            if not self._trace_in(cur, tenant, trace_id, datasets):
                return None
            graph = Graph(limit)
            key: tuple[Any, ...] = (at, eid)
            op, scanned, size = ">=", 0, 0
            while True:
                chunk = min(LINEAGE_CHUNK, LINEAGE_SCAN_EVENTS - scanned)
                cur.execute(sql[op], (tenant, trace_id, *key, chunk))
                rows = cur.fetchall()
                if not rows and cursor is None and scanned == 0:
                    return None
                for time_us, event_id, text in rows:
                    scanned += 1
                    size += len(text)
                    doc = orjson.loads(text)
                    cut = graph.add(doc, link if (time_us, event_id) == (at, eid) else 0)
                    if cut is None and (
                        scanned >= LINEAGE_SCAN_EVENTS or size >= LINEAGE_SCAN_BYTES
                    ):
                        cut = len(links(doc))  # this event is done; the next page goes on
                    if cut is not None:
                        next_cursor = encode_cursor(int(time_us), event_id, cut)
                        return DataFlow(graph.nodes, graph.edges, next_cursor)
                if len(rows) < chunk:
                    return DataFlow(graph.nodes, graph.edges, None)
                key, op = (int(rows[-1][0]), rows[-1][1]), ">"

        return self._read(read)

    def put_dataset_details(self, details: Sequence[DatasetDetails]) -> None:
        if not details:
            return
        rows = [
            (
                d.tenant,
                d.trace_id,
                d.dataset_id,
                d.dataset_version_id or "",
                d.dataset_type,
                d.record_count,
                d.time_us,
                d.received_us,
            )
            for d in details
        ]
        self._write(
            functools.partial(_execute_many, self.q(UPSERT_DATASET_DETAILS), rows), len(rows)
        )

    def dataset_details(
        self,
        tenant: str,
        *,
        trace_id: str | None = None,
        dataset_id: str | None = None,
        datasets: Datasets = None,
    ) -> list[DatasetDetails]:
        where = ["tenant = ?"]
        params: list[Any] = [tenant]
        for column, value in (("trace_id", trace_id), ("dataset_id", dataset_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if len(where) == 1:
            raise ValueError("dataset_details needs a trace_id or a dataset_id")
        if datasets is not None:
            where.append(_of_traces_in("dataset_details", datasets, params))
        sql = self.q(
            "SELECT tenant, trace_id, dataset_id, dataset_version_id, dataset_type,"
            " record_count, time_us, received_us FROM dataset_details"
            f" WHERE {' AND '.join(where)}"
            " ORDER BY time_us, trace_id, dataset_id, dataset_version_id LIMIT 10000"
        )
        rows = self._read(functools.partial(_fetch, sql, params))
        return [
            DatasetDetails(
                r[0],
                r[1],
                r[2],
                r[3] or None,
                r[4],
                None if r[5] is None else int(r[5]),
                int(r[6]),
                int(r[7]),
            )
            for r in rows
        ]

    def park(self, letters: Sequence[tuple[str, str, bytes]]) -> None:
        if not letters:
            return
        now = now_us()
        sql = self.q(
            "INSERT INTO dead_letters (received_us, subject, reason, raw) VALUES (?, ?, ?, ?)"
        )
        rows = [(now, subject, reason, raw) for subject, reason, raw in letters]
        self._write(functools.partial(_execute_many, sql, rows), len(rows))

    def dead_letters(
        self, *, limit: int = 100, ids: Sequence[int] | None = None
    ) -> list[DeadLetter]:
        where, params = "", []
        if ids is not None:
            if not ids:
                return []
            where = f" WHERE id IN ({', '.join('?' for _ in ids)})"
            params = list(ids)
        sql = self.q(
            f"SELECT id, received_us, subject, reason, raw FROM dead_letters{where}"
            " ORDER BY id DESC LIMIT ?"
        )
        rows = self._read(functools.partial(_fetch, sql, (*params, limit)))
        return [DeadLetter(int(r[0]), int(r[1]), r[2], r[3], bytes(r[4])) for r in rows]

    def discard_dead_letters(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        sql = self.q(f"DELETE FROM dead_letters WHERE id IN ({', '.join('?' for _ in ids)})")

        def discard(cur: Cursor) -> int:
            cur.execute(sql, list(ids))
            return int(cur.rowcount)

        return self._write(discard, len(ids))

    # -- API keys ----------------------------------------------------------------------------

    def add_api_key(self, key: ApiKey) -> None:
        if self.api_key(key.id) is not None:
            raise ValueError(f"an API key with id {key.id!r} exists")
        row = (
            key.id,
            key.name,
            orjson.dumps(list(key.grants)).decode(),
            key.secret_hash,
            key.created_us,
            key.expires_us,
            key.revoked_us,
        )
        sql = self.q(f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)")
        self._write(functools.partial(_execute_many, sql, [row]))

    def api_key(self, key_id: str) -> ApiKey | None:
        sql = self.q(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?")
        rows = self._read(functools.partial(_fetch, sql, (key_id,)))
        return _api_key(rows[0]) if rows else None

    def api_keys(self, *, limit: int = 1000) -> list[ApiKey]:
        sql = self.q(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_us DESC, id LIMIT ?")
        return [_api_key(row) for row in self._read(functools.partial(_fetch, sql, (limit,)))]

    def revoke_api_key(self, key_id: str, at_us: int) -> ApiKey | None:
        sql = self.q("UPDATE api_keys SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL")
        self._write(functools.partial(_execute_many, sql, [(at_us, key_id)]))
        return self.api_key(key_id)

    # -- webhooks ----------------------------------------------------------------------------

    def add_webhook(self, webhook: Webhook) -> None:
        sql = self.q(
            f"INSERT INTO webhooks ({webhooks.WEBHOOK_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._write(functools.partial(_execute_many, sql, [webhooks.webhook_row(webhook)]))

    def webhook(self, tenant: str, webhook_id: str) -> Webhook | None:
        sql = self.q(f"SELECT {webhooks.WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? AND id = ?")
        rows = self._read(functools.partial(_fetch, sql, (tenant, webhook_id)))
        return webhooks.webhook_of(rows[0]) if rows else None

    def webhooks(
        self, tenant: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[Webhook]:
        where, params = "tenant = ?", [tenant]
        if cursor is not None:
            created_us, webhook_id = decode_cursor(cursor, int, str)
            where += " AND (created_us, id) > (?, ?)"
            params += [created_us, webhook_id]
        sql = self.q(
            f"SELECT {webhooks.WEBHOOK_COLUMNS} FROM webhooks WHERE {where}"
            " ORDER BY created_us, id LIMIT ?"
        )
        rows = self._read(functools.partial(_fetch, sql, (*params, limit + 1)))
        items = [webhooks.webhook_of(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(items[-1].created_us, items[-1].id)
        return Page(items, next_cursor)

    def delete_webhook(self, tenant: str, webhook_id: str) -> bool:
        def delete(cur: Cursor) -> bool:
            key = (tenant, webhook_id)
            cur.execute(
                self.q("DELETE FROM webhook_outbox WHERE tenant = ? AND webhook_id = ?"), key
            )
            cur.execute(self.q("DELETE FROM webhooks WHERE tenant = ? AND id = ?"), key)
            return bool(cur.rowcount)

        return self._write(delete)

    def deliveries(self, tenant: str, webhook_id: str, *, limit: int = 100) -> list[Delivery]:
        sql = self.q(
            f"SELECT {webhooks.DELIVERY_COLUMNS} FROM webhook_outbox"
            " WHERE tenant = ? AND webhook_id = ? AND last_us IS NOT NULL"
            " ORDER BY last_us DESC, id LIMIT ?"
        )
        rows = self._read(functools.partial(_fetch, sql, (tenant, webhook_id, limit)))
        return [webhooks.delivery_of(row) for row in rows]

    def sweep_stalls(self, now_us: int, *, limit: int = 1000) -> list[tuple[str, str]]:
        tenants = self.tenants()
        find = functools.partial(
            webhooks.stalled,
            q=self.q,
            pipelines=self.pipelines,
            tenants=tenants,
            now_us=now_us,
            limit=limit,
            never_us=NEVER_US,
        )
        # A read first: when nothing new stalled there is no write transaction at all.
        if not self._read(find):
            return []

        def sweep(cur: Cursor) -> list[tuple[str, str]]:
            if not self._sweep_alone(cur):
                return []
            keys = webhooks.sweep_stalls(
                cur, self.q, self.pipelines, tenants, now_us, limit, NEVER_US
            )
            if keys:
                self._announce(cur, sorted(keys))
            return keys

        return self._write(sweep)

    def claim_notifications(
        self, now_us: int, *, lease_us: int, limit: int = 100
    ) -> list[Notification]:
        select = self.q(
            "SELECT o.id, o.tenant, o.trace_id, o.webhook_id, o.type, o.created_us, o.attempts"
            " FROM webhook_outbox o WHERE o.next_us IS NOT NULL AND o.next_us <= ?"
            " ORDER BY o.next_us LIMIT ?" + self._claim_clause()
        )

        due = self.q(
            "SELECT 1 FROM webhook_outbox WHERE next_us IS NOT NULL AND next_us <= ? LIMIT 1"
        )
        if not self._read(functools.partial(_fetch, due, (now_us,))):
            return []

        def claim(cur: Cursor) -> list[Notification]:
            cur.execute(select, (now_us, limit))
            rows = cur.fetchall()
            if not rows:
                return []
            ids = [row[0] for row in rows]
            marks = ", ".join("?" for _ in ids)
            cur.execute(
                self.q(f"UPDATE webhook_outbox SET next_us = ? WHERE id IN ({marks})"),
                (now_us + lease_us, *ids),
            )
            hooks: dict[tuple[str, str], Webhook | None] = {}
            out = []
            for row in rows:
                key = (row[1], row[3])
                if key not in hooks:
                    cur.execute(
                        self.q(
                            f"SELECT {webhooks.WEBHOOK_COLUMNS} FROM webhooks"
                            " WHERE tenant = ? AND id = ?"
                        ),
                        key,
                    )
                    found = cur.fetchall()
                    hooks[key] = webhooks.webhook_of(found[0]) if found else None
                hook = hooks[key]
                if hook is not None:
                    out.append(
                        Notification(
                            row[0],
                            row[1],
                            row[2],
                            row[3],
                            row[4],
                            int(row[5]),
                            int(row[6]),
                            hook.url,
                            hook.secret,
                        )
                    )
            return out

        return self._write(claim)

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
        gave_up = not delivered and next_us is None

        def settle(cur: Cursor) -> None:
            cur.execute(
                self.q(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, last_us = ?,"
                    " last_status = ?, last_error = ?, next_us = ?, delivered_us = ?,"
                    " gave_up_us = ? WHERE id = ?"
                ),
                (
                    at_us,
                    status,
                    error,
                    next_us,
                    at_us if delivered else None,
                    at_us if gave_up else None,
                    notification.id,
                ),
            )
            if gave_up:
                cur.execute(
                    self.q(
                        "UPDATE webhooks SET failed_us = ?, failure = ? WHERE tenant = ? AND id = ?"
                    ),
                    (at_us, error, notification.tenant, notification.webhook_id),
                )

        self._write(settle)

    def ping(self) -> None:
        self._read(functools.partial(_fetch, "SELECT 1", ()))

    def check_writable(self) -> None:
        # A row rewritten as it was: a real write (a page in SQLite's WAL, a tuple and a
        # commit record in PostgreSQL's), refused where the store takes no writes (a full
        # or read-only disk, a read-only transaction, a standby), and no value changed.
        self._write(functools.partial(_execute, _WRITE_PROBE, ()))


_WRITE_PROBE = "UPDATE alembic_version SET version_num = version_num"


def _execute(sql: str, params: Sequence[Any], cur: Cursor) -> None:
    cur.execute(sql, params)


_KEY_COLUMNS = "id, name, grants, secret_hash, created_us, expires_us, revoked_us"


def _api_key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        grants=tuple(orjson.loads(row[2])),
        secret_hash=row[3],
        created_us=int(row[4]),
        expires_us=None if row[5] is None else int(row[5]),
        revoked_us=None if row[6] is None else int(row[6]),
    )


def _in_datasets(column: str, datasets: frozenset[str], params: list[Any]) -> str:
    """A condition: ``column`` (a domain_id) names one of ``datasets``, that is, it is the
    dataset or starts with it and a ``/``. Adds its parameters to ``params``."""
    if not datasets:
        return "1 = 0"
    parts = []
    for dataset in sorted(datasets):
        parts.append(f"({column} = ? OR substr({column}, 1, ?) = ?)")
        params += [dataset, len(dataset) + 1, dataset + "/"]
    return "(" + " OR ".join(parts) + ")"


def _of_traces_in(table: str, datasets: frozenset[str], params: list[Any]) -> str:
    """A condition on rows of ``table`` (with tenant and trace_id): their trace's dataset is
    one of ``datasets``."""
    clause = _in_datasets("t.domain_id", datasets, params)
    return (
        f"EXISTS (SELECT 1 FROM traces t WHERE t.tenant = {table}.tenant"
        f" AND t.trace_id = {table}.trace_id AND {clause})"
    )


def _step_filters(query: TraceQuery) -> list[tuple[str, str]]:
    return [
        (kind, name)
        for kind, name in (("component", query.component), ("stage", query.stage))
        if name is not None
    ]


def _fetch(sql: str, params: Sequence[Any], cur: Cursor) -> list[Any]:
    cur.execute(sql, params)
    return cur.fetchall()


def _fetch_within(sql: str, params: Sequence[Any], most: int, cur: Cursor) -> tuple[list[Any], int]:
    """The rows of ``sql``, fetched a few at a time until their first columns (text) pass
    about ``most`` bytes, and one more if there is one (to tell that there is more); and
    how many of them are within that (at least one)."""
    cur.execute(sql, params)
    rows: list[Any] = []
    while chunk := cur.fetchmany(16):
        for i, row in enumerate(chunk):
            rows.append(row)
            most -= len(row[0])
            if most < 0:
                more = chunk[i + 1 : i + 2] or cur.fetchmany(1)
                return rows + list(more), len(rows)
    return rows, len(rows)


def _execute_many(sql: str, rows: Sequence[Sequence[Any]], cur: Cursor) -> None:
    cur.executemany(sql, rows)


def overview_of(
    rows: Sequence[Any], since_us: int, now: int, limit: int, truncated: bool
) -> Overview:
    """Fold ``(domain_id, state, count, latest update)`` rows into datasets (the part of
    ``domain_id`` before its first ``/``), failing datasets first."""
    totals = dict.fromkeys((s.value for s in State), 0)
    by_dataset: dict[str | None, tuple[dict[str, int], int]] = {}
    for domain_id, state, count, updated_us in rows:
        dataset = None if domain_id is None else domain_id.split("/", 1)[0]
        counts, latest = by_dataset.get(dataset) or (dict.fromkeys(totals, 0), 0)
        counts[state] += int(count)
        totals[state] += int(count)
        by_dataset[dataset] = (counts, max(latest, int(updated_us)))
    datasets = sorted(
        (DatasetCounts(name, counts, latest) for name, (counts, latest) in by_dataset.items()),
        key=lambda d: (
            -d.counts[State.FAILED.value],
            -d.counts[State.STALLED.value],
            -d.total,
            d.dataset is None,
            d.dataset or "",
        ),
    )
    return Overview(
        since_us, now, totals, datasets[:limit], max(0, len(datasets) - limit), truncated
    )
