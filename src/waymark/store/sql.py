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

from waymark.model import (
    TEXT,
    Record,
    State,
    Status,
    Summary,
    TraceStatus,
    inputs_of,
    iso,
    now_us,
    outputs_of,
    touched_paths,
)
from waymark.pipelines import Pipelines
from waymark.store import webhooks
from waymark.store.base import (
    ApiKey,
    AppendResult,
    DataFlow,
    DatasetDetails,
    Datasets,
    DeadLetter,
    Delivery,
    EventQuery,
    Notification,
    Page,
    PathTouch,
    Store,
    TraceQuery,
    Webhook,
    decode_cursor,
    encode_cursor,
)
from waymark.summary import Candidate, Origin, Partial, render
from waymark.summary import partials as fold

NEVER_US = 1 << 62  # a stall timeout that never passes

T = TypeVar("T")


class Cursor(Protocol):
    """The part of a DB-API cursor the shared queries use (sqlite3 and psycopg both fit)."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...
    def fetchall(self) -> list[Any]: ...
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
PATH_COLUMNS = "tenant, path, trace_id, event_id, time_us, ord, path_key"
INSERT_PATH = f"INSERT INTO paths ({PATH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"

SUMMARY_COLUMNS = ", ".join(_TRACE_COLUMNS)

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
        (r.tenant, path, r.trace_id, r.event_id, r.time_us, i, path_key(path))
        for r in records
        for i, path in enumerate(r.paths)
    ]


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
        self.paths, self.traces = _paths_and_traces(self)


def _paths_and_traces(
    records: Sequence[Record],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``paths`` rows of newly stored records, and their traces' partial summaries as
    ``traces`` rows sorted by (tenant, trace_id), so that concurrent writers lock alike."""
    merged = fold(records)
    return path_rows(records), [trace_row(t, tid, p) for (t, tid), p in sorted(merged.items())]


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
        new = self._insert_new(cur, todo, todo.events)
        if new:
            paths, traces = (
                (todo.paths, todo.traces) if len(new) == len(todo) else _paths_and_traces(new)
            )
            if paths:
                self._insert_paths(cur, paths)
            # Subscribed tenants' trace state changes go to the outbox in this transaction.
            subs = webhooks.subscriptions(cur, self.q, sorted({row[0] for row in traces}))
            keys = [(row[0], row[1]) for row in traces if row[0] in subs]
            if keys:
                self._lock_traces(cur, keys)
                before = webhooks.trace_states(cur, self.q, keys)
            stored = self._upsert_traces(cur, traces, partials or bool(keys))
            if keys:
                after = (
                    webhooks.trace_states(cur, self.q, keys)
                    if stored is None
                    else webhooks.states_of_rows(stored, keys)
                )
                webhooks.write_changes(cur, self.q, subs, before, after, now_us())
            if not partials:
                stored = None
        return AppendResult(
            len(new),
            sorted({(r.tenant, r.trace_id) for r in new}),
            None if stored is None else {(row[0], row[1]): partial_of(row) for row in stored},
        )

    # -- reads -------------------------------------------------------------------------------

    def _render(
        self, cur: Cursor, tenant: str, rows: list[Sequence[Any]], now: int
    ) -> list[Summary]:
        if not rows:
            return []
        ids = [row[1] for row in rows]
        marks = ", ".join("?" for _ in ids)
        errors: dict[str, list[Any]] = {i: [] for i in ids}
        paths: dict[str, list[str]] = {i: [] for i in ids}
        cur.execute(
            self.q(
                f"SELECT trace_id, errors, paths FROM events WHERE tenant = ?"
                f" AND trace_id IN ({marks}) AND (errors IS NOT NULL OR paths IS NOT NULL)"
                " ORDER BY trace_id, time_us, event_id"
            ),
            (tenant, *ids),
        )
        for trace_id, error_list, path_list in cur.fetchall():
            if error_list is not None:
                errors[trace_id].extend(orjson.loads(error_list))
            if path_list is not None:
                paths[trace_id].extend(orjson.loads(path_list))
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
                    errors[row[1]],
                    paths[row[1]],
                    now_us=now,
                    stall_timeout_us=pipeline.stall_timeout_us,
                )
            )
        return out

    def summary(self, tenant: str, trace_id: str) -> Summary | None:
        found = self.summaries(tenant, [trace_id])
        return found[0] if found else None

    def summaries(self, tenant: str, trace_ids: Sequence[str]) -> list[Summary]:
        if not trace_ids:
            return []
        sql = self.q(
            f"SELECT {SUMMARY_COLUMNS} FROM traces"
            f" WHERE tenant = ? AND trace_id IN ({', '.join('?' for _ in trace_ids)})"
        )

        def read(cur: Cursor) -> list[Summary]:
            cur.execute(sql, (tenant, *trace_ids))
            return self._render(cur, tenant, cur.fetchall(), now_us())

        return self._read(read)

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
        rows = self._read(functools.partial(_fetch, self.q(sql), params))
        items = []
        for doc, received_us, _, _ in rows[:limit]:
            item = orjson.loads(doc)
            item["received_at"] = iso(received_us)
            items.append(item)
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(int(last[2]), last[3])
        return Page(items, next_cursor)

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
        sql, params = self.search_sql(tenant, query, limit=limit, cursor=cursor, now=now)

        def read(cur: Cursor) -> tuple[list[Any], list[Summary]]:
            cur.execute(sql, params)
            rows = cur.fetchall()
            return rows, self._render(cur, tenant, rows[:limit], now)

        rows, items = self._read(read)
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(int(last[4]), last[1])
        return Page(items, next_cursor)

    def search_sql(
        self, tenant: str, query: TraceQuery, *, limit: int, cursor: str | None, now: int
    ) -> tuple[str, list[Any]]:
        """The statement :meth:`search` runs and its parameters: one more row than ``limit``
        (to tell whether there is a next page)."""
        where = ["tenant = ?"]
        params: list[Any] = [tenant]
        for column, value in (
            ("domain", query.domain),
            ("domain_id", query.domain_id),
            ("cur_component", query.component),
            ("cur_stage", query.stage),
            ("user_name", query.user),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
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
        sql = (
            f"SELECT {SUMMARY_COLUMNS} FROM traces WHERE {' AND '.join(where)}"
            " ORDER BY updated_us DESC, trace_id DESC LIMIT ?"
        )
        params.append(limit + 1)
        return self.q(sql), params

    def paths(
        self, tenant: str, path: str, *, limit: int = 100, datasets: Datasets = None
    ) -> list[PathTouch]:
        params: list[Any] = [tenant, path_key(path), path]
        scope = "" if datasets is None else " AND " + _of_traces_in("paths", datasets, params)
        sql = self.q(
            "SELECT trace_id, event_id, time_us FROM paths"
            f" WHERE tenant = ? AND path_key = ? AND path = ?{scope}"
            " ORDER BY time_us DESC, event_id DESC LIMIT ?"
        )
        params.append(limit)
        rows = self._read(functools.partial(_fetch, sql, params))
        return [PathTouch(trace_id, event_id, iso(int(t)) or "") for trace_id, event_id, t in rows]

    def lineage(self, tenant: str, trace_id: str, *, datasets: Datasets = None) -> DataFlow | None:
        params: list[Any] = [tenant, trace_id]
        scope = "" if datasets is None else " AND " + _of_traces_in("events", datasets, params)
        sql = self.q(
            f"SELECT doc FROM events WHERE tenant = ? AND trace_id = ?{scope}"
            " ORDER BY time_us, event_id"
        )
        rows = self._read(functools.partial(_fetch, sql, params))
        if not rows:
            return None
        return lineage_of(orjson.loads(doc) for (doc,) in rows)

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

    def sweep_stalls(self, now_us: int, *, limit: int = 1000) -> int:
        # A read first: with no subscription there is no write transaction at all.
        if not self._read(functools.partial(_fetch, "SELECT 1 FROM webhooks LIMIT 1", ())):
            return 0

        def sweep(cur: Cursor) -> int:
            if not self._sweep_alone(cur):
                return 0
            return webhooks.sweep_stalls(cur, self.q, self.pipelines, now_us, limit, NEVER_US)

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


def _fetch(sql: str, params: Sequence[Any], cur: Cursor) -> list[Any]:
    cur.execute(sql, params)
    return cur.fetchall()


def _execute_many(sql: str, rows: Sequence[Sequence[Any]], cur: Cursor) -> None:
    cur.executemany(sql, rows)


def lineage_of(docs: Any) -> DataFlow:
    """Nodes are every path a trace's events name; an edge joins each input of an event to
    each of its outputs."""
    nodes: dict[str, None] = {}
    edges: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for doc in docs:
        inputs, outputs = inputs_of(doc), outputs_of(doc)
        nodes.update(dict.fromkeys(touched_paths(doc)))
        for src in inputs:
            for dst in outputs:
                edge = (src, dst, doc["event_id"])
                if edge not in seen:
                    seen.add(edge)
                    edges.append({"from": src, "to": dst, "event_id": doc["event_id"]})
    return DataFlow(list(nodes), edges)
