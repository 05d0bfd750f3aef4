"""The webhook queries of every SQL backend: subscriptions, the outbox rows an append
writes in its own transaction, the stall sweep and the notifier's claims.

Each function takes a cursor and ``q`` (the backend's spelling of ``?``), so that
:class:`waymark.store.sql.SqlStore` runs them through its own transaction hooks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from waymark.model import Status
from waymark.pipelines import Pipelines
from waymark.store.base import Delivery, Webhook

Q = Callable[[str], str]

_CHUNK = 500  # trace ids per IN (...) list

WEBHOOK_COLUMNS = (
    "tenant, id, url, events, secret, created_us, dataset, component, failed_us, failure"
)
DELIVERY_COLUMNS = (
    "id, trace_id, type, created_us, attempts, last_us, last_status, last_error,"
    " delivered_us, gave_up_us"
)
OUTBOX_COLUMNS = "id, tenant, trace_id, webhook_id, type, change_us, created_us, next_us, attempts"
_OUTBOX_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, 0)"
_OUTBOX_ROWS = 200  # rows per INSERT statement


def insert_outbox(cur: Cursor, q: Q, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert outbox rows, many per statement; a row already there (the same change to
    the same subscription) is left as it is."""
    for start in range(0, len(rows), _OUTBOX_ROWS):
        chunk = rows[start : start + _OUTBOX_ROWS]
        cur.execute(
            q(
                f"INSERT INTO webhook_outbox ({OUTBOX_COLUMNS}) VALUES "
                + ", ".join(_OUTBOX_ROW for _ in chunk)
                + " ON CONFLICT (tenant, trace_id, type, change_us, webhook_id) DO NOTHING"
            ),
            [value for row in chunk for value in row],
        )


class Cursor(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def rowcount(self) -> int: ...


def message_id() -> str:
    """A new ``webhook-id``."""
    return f"msg_{uuid.uuid4().hex}"


def webhook_of(row: Sequence[Any]) -> Webhook:
    return Webhook(
        tenant=row[0],
        id=row[1],
        url=row[2],
        events=tuple(orjson.loads(row[3])),
        secret=row[4],
        created_us=int(row[5]),
        dataset=row[6],
        component=row[7],
        failed_us=None if row[8] is None else int(row[8]),
        failure=row[9],
    )


def delivery_of(row: Sequence[Any]) -> Delivery:
    def opt(value: Any) -> int | None:
        return None if value is None else int(value)

    return Delivery(
        id=row[0],
        trace_id=row[1],
        type=row[2],
        created_us=int(row[3]),
        attempts=int(row[4]),
        last_us=opt(row[5]),
        status=opt(row[6]),
        error=row[7],
        delivered_us=opt(row[8]),
        gave_up_us=opt(row[9]),
    )


def webhook_row(w: Webhook) -> tuple[Any, ...]:
    return (
        w.tenant,
        w.id,
        w.url,
        orjson.dumps(list(w.events)).decode(),
        w.secret,
        w.created_us,
        w.dataset,
        w.component,
        w.failed_us,
        w.failure,
    )


def subscriptions(cur: Cursor, q: Q, tenants: Sequence[str]) -> dict[str, list[Webhook]]:
    """The subscriptions of these tenants, by tenant (tenants with none left out)."""
    cur.execute(
        q(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks"
            f" WHERE tenant IN ({', '.join('?' for _ in tenants)})"
        ),
        list(tenants),
    )
    out: dict[str, list[Webhook]] = {}
    for row in cur.fetchall():
        out.setdefault(row[0], []).append(webhook_of(row))
    return out


def matches(webhook: Webhook, kind: str, domain_id: str | None, component: str | None) -> bool:
    """Whether a change of ``kind`` to a trace of ``domain_id`` whose deciding step is of
    ``component`` goes to ``webhook``; a dataset is the part of domain_id before ``/``."""
    if kind not in webhook.events:
        return False
    if webhook.dataset is not None and (
        domain_id is None or domain_id.split("/", 1)[0] != webhook.dataset
    ):
        return False
    return webhook.component is None or webhook.component == component


# (state, updated_us, domain_id, cur_component) of a trace; state is RUNNING, SUCCEEDED or
# FAILED (stalls are the sweep's).
TraceState = tuple[str, int, str | None, str | None]


def trace_states(
    cur: Cursor, q: Q, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], TraceState]:
    by_tenant: dict[str, list[str]] = {}
    for tenant, trace_id in keys:
        by_tenant.setdefault(tenant, []).append(trace_id)
    out: dict[tuple[str, str], TraceState] = {}
    for tenant, ids in by_tenant.items():
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            cur.execute(
                q(
                    f"SELECT trace_id, {STATE_COLUMNS} FROM traces WHERE tenant = ?"
                    f" AND trace_id IN ({', '.join('?' for _ in chunk)})"
                ),
                (tenant, *chunk),
            )
            for trace_id, *row in cur.fetchall():
                out[(tenant, trace_id)] = state_of(*row)
    return out


#: what :func:`state_of` reads of a ``traces`` row, in its order
STATE_COLUMNS = "done, cur_status, updated_us, domain_id, cur_component"


def state_of(
    done: bool, status: str, updated_us: int, domain_id: str | None, component: str | None
) -> TraceState:
    """A trace's state from its row's :data:`STATE_COLUMNS`."""
    if not done:
        state = "RUNNING"
    elif status == Status.FAILED.value:
        state = "FAILED"
    else:
        state = "SUCCEEDED"
    return (state, int(updated_us), domain_id, component)


def states_of_rows(
    rows: Sequence[Sequence[Any]], keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], TraceState]:
    """:func:`trace_states` of the given traces, from ``traces`` rows read as
    ``SUMMARY_COLUMNS`` (an upsert's ``RETURNING``)."""
    wanted = set(keys)
    out: dict[tuple[str, str], TraceState] = {}
    for row in rows:
        if (row[0], row[1]) not in wanted:
            continue
        done = row[13] is not None  # fin_event_id
        status, component = (row[14], row[16]) if done else (row[7], row[9])
        out[(row[0], row[1])] = state_of(done, status, row[4], row[22], component)
    return out


_KIND = {"SUCCEEDED": "trace.succeeded", "FAILED": "trace.failed"}


def changes(
    before: dict[tuple[str, str], TraceState], after: dict[tuple[str, str], TraceState]
) -> list[tuple[tuple[str, str], str, TraceState]]:
    """The notifications an append's changes make: ``trace.started`` for a trace that did
    not exist, and ``trace.succeeded``/``trace.failed`` when it became (or turned) so."""
    out = []
    for key, now in after.items():
        old = before.get(key)
        if old is None:
            out.append((key, "trace.started", now))
        if now[0] in _KIND and (old is None or old[0] != now[0]):
            out.append((key, _KIND[now[0]], now))
    return out


#: the kinds of change by which a trace turned done (counted by the metrics)
TURNED = frozenset(_KIND.values())


def write_changes(
    cur: Cursor,
    q: Q,
    subs: dict[str, list[Webhook]],
    found: list[tuple[tuple[str, str], str, TraceState]],
    now_us: int,
) -> None:
    """The outbox rows of the changes ``found`` (:func:`changes`) that subscriptions take."""
    rows = []
    for (tenant, trace_id), kind, (_, updated_us, domain_id, component) in found:
        for hook in subs.get(tenant, ()):
            if matches(hook, kind, domain_id, component):
                rows.append(
                    (message_id(), tenant, trace_id, hook.id, kind, updated_us, now_us, now_us)
                )
    insert_outbox(cur, q, rows)


#: How far back a sweep looks, beyond the longest stall timeout, in a tenant with no
#: ``trace.stalled`` subscription: a sweeper stopped for up to this long still notices what
#: stalled meanwhile, and a first sweep over an old store does not notice years of stalls.
STALL_LOOK_BACK_US = 3600 * 1_000_000


def _stall_hooks(cur: Cursor, q: Q) -> dict[str, list[Webhook]]:
    """Each tenant's ``trace.stalled`` subscriptions."""
    cur.execute(q(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks"))
    by_tenant: dict[str, list[Webhook]] = {}
    for row in cur.fetchall():
        hook = webhook_of(row)
        if "trace.stalled" in hook.events:
            by_tenant.setdefault(hook.tenant, []).append(hook)
    return by_tenant


def stalled(
    cur: Cursor,
    q: Q,
    pipelines: Pipelines,
    tenants: Sequence[str],
    now_us: int,
    limit: int,
    never_us: int,
    hooks: dict[str, list[Webhook]] | None = None,
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Up to ``limit`` stalls not yet noticed: per tenant, its (trace_id, updated_us,
    domain, domain_id, cur_component) rows, oldest first. Only reads. A tenant with a
    ``trace.stalled`` subscription (``hooks``, read here unless the caller has them) looks
    back to its oldest one; any other tenant :data:`STALL_LOOK_BACK_US` beyond its longest
    stall timeout."""
    if hooks is None:
        hooks = _stall_hooks(cur, q)
    found: list[tuple[str, list[tuple[Any, ...]]]] = []
    left = limit
    for tenant in sorted(tenants):
        base, per_domain = pipelines.stall_timeouts(tenant)
        timeouts = [t for t in (base, *per_domain.values()) if t is not None]
        if not timeouts:
            continue
        if tenant in hooks:
            # Only traces that stalled after the oldest subscription was made.
            since = min(h.created_us for h in hooks[tenant]) - max(timeouts)
        else:
            since = now_us - max(timeouts) - STALL_LOOK_BACK_US
        params: list[Any] = [tenant, since]
        timeout = "?"
        if per_domain:
            timeout = (
                "CASE " + " ".join("WHEN domain = ? THEN ?" for _ in per_domain) + " ELSE ? END"
            )
        cases: list[Any] = []
        for domain, value in per_domain.items():
            cases += [domain, never_us if value is None else value]
        cases.append(never_us if base is None else base)
        params += [now_us, *cases, left]
        cur.execute(
            q(
                "SELECT trace_id, updated_us, domain, domain_id, cur_component FROM traces t"
                " WHERE tenant = ? AND NOT done AND updated_us >= ?"
                f" AND updated_us < ? - {timeout}"
                " AND NOT EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.tenant = t.tenant"
                " AND o.trace_id = t.trace_id AND o.type = 'trace.stalled'"
                " AND o.change_us = t.updated_us)"
                " ORDER BY updated_us LIMIT ?"
            ),
            params,
        )
        rows = [tuple(row) for row in cur.fetchall()]
        if rows:
            found.append((tenant, rows))
            left -= len(rows)
        if left <= 0:
            break
    return found


def sweep_stalls(
    cur: Cursor,
    q: Q,
    pipelines: Pipelines,
    tenants: Sequence[str],
    now_us: int,
    limit: int,
    never_us: int,
) -> list[tuple[str, str]]:
    """Outbox rows for the stalls :func:`stalled` finds (see Store.sweep_stalls); the
    (tenant, trace_id) of each. The caller holds whatever makes it the only sweeper."""
    hooks = _stall_hooks(cur, q)
    noticed: list[tuple[str, str]] = []
    rows = []
    for tenant, stalls in stalled(cur, q, pipelines, tenants, now_us, limit, never_us, hooks):
        for trace_id, updated_us, domain, domain_id, component in stalls:
            stalled_at = int(updated_us) + (pipelines.lookup(tenant, domain).stall_timeout_us or 0)
            targets = [
                h.id
                for h in hooks.get(tenant, ())
                if h.created_us <= stalled_at and matches(h, "trace.stalled", domain_id, component)
            ]
            # A stall no subscription takes is noted all the same, so it is noticed once.
            for target in targets or [""]:
                due = now_us if target else None
                rows.append(
                    (
                        message_id(),
                        tenant,
                        trace_id,
                        target,
                        "trace.stalled",
                        updated_us,
                        now_us,
                        due,
                    )
                )
            noticed.append((tenant, trace_id))
    insert_outbox(cur, q, rows)
    return noticed
