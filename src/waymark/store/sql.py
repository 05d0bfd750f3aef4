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
from waymark.store.base import (
    AppendResult,
    DataFlow,
    DatasetDetails,
    DeadLetter,
    EventQuery,
    Page,
    PathTouch,
    Store,
    TraceQuery,
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
PATH_COLUMNS = "tenant, path, trace_id, event_id, time_us, ord, path_key, received_us"
INSERT_PATH = f"INSERT INTO paths ({PATH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
#: the columns of a ``trace_steps`` row, in :func:`step_rows` order.
STEP_COLUMNS = "tenant, kind, name, trace_id"
INSERT_STEP = f"INSERT INTO trace_steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"

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
        (r.tenant, path, r.trace_id, r.event_id, r.time_us, i, path_key(path), r.received_us)
        for r in records
        for i, path in enumerate(r.paths)
    ]


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
        self.paths, self.traces = _paths_and_traces(self)
        self.steps: list[tuple[Any, ...]] = step_rows(self)


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
            steps = todo.steps if len(new) == len(todo) else step_rows(new)
            if paths:
                self._insert_paths(cur, paths)
            if steps:
                self._insert_steps(cur, steps)
            stored = self._upsert_traces(cur, traces, partials)
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
        self, tenant: str, trace_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[dict[str, Any]]:
        return self.find_events(tenant, EventQuery(trace_id=trace_id), limit=limit, cursor=cursor)

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
        """The ``traces`` rows (``SUMMARY_COLUMNS``) of these traces, in this order."""
        if not ids:
            return []
        cur.execute(
            self.q(
                f"SELECT {SUMMARY_COLUMNS} FROM traces"
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
        columns = SUMMARY_COLUMNS
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
        if cursor is not None:
            updated_us, trace_id = decode_cursor(cursor, int, str)
            where.append("(updated_us, trace_id) < (?, ?)")
            params += [updated_us, trace_id]
        sql = f"SELECT {columns} FROM traces WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        params.append(limit + 1)
        return self.q(sql), params

    def paths(self, tenant: str, path: str, *, limit: int = 100) -> list[PathTouch]:
        sql = self.q(
            "SELECT trace_id, event_id, time_us, received_us FROM paths"
            " WHERE tenant = ? AND path_key = ? AND path = ?"
            " ORDER BY received_us DESC, time_us DESC, event_id DESC LIMIT ?"
        )
        rows = self._read(functools.partial(_fetch, sql, (tenant, path_key(path), path, limit)))
        return [
            PathTouch(trace_id, event_id, iso(int(t)) or "", iso(int(r)) or "")
            for trace_id, event_id, t, r in rows
        ]

    def lineage(self, tenant: str, trace_id: str) -> DataFlow | None:
        sql = self.q(
            "SELECT doc FROM events WHERE tenant = ? AND trace_id = ? ORDER BY time_us, event_id"
        )
        rows = self._read(functools.partial(_fetch, sql, (tenant, trace_id)))
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
        self, tenant: str, *, trace_id: str | None = None, dataset_id: str | None = None
    ) -> list[DatasetDetails]:
        where = ["tenant = ?"]
        params: list[Any] = [tenant]
        for column, value in (("trace_id", trace_id), ("dataset_id", dataset_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if len(where) == 1:
            raise ValueError("dataset_details needs a trace_id or a dataset_id")
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

    def ping(self) -> None:
        self._read(functools.partial(_fetch, "SELECT 1", ()))


def _step_filters(query: TraceQuery) -> list[tuple[str, str]]:
    return [
        (kind, name)
        for kind, name in (("component", query.component), ("stage", query.stage))
        if name is not None
    ]


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
