"""The native API, ``/v1``: send events, read summaries, events, searches, paths, lineage.

``POST /v1/events`` (every producer) and ``GET /v1/traces/{trace_id}`` (every reader and
waiter) are the hot endpoints. They are plain Starlette routes (:data:`HOT_ROUTES`), put
first in the app and answered in the same middleware and exception handling as every
other route: FastAPI's matching through included routers and its parameter resolution
cost more than the work these two do. Their handlers take only the request and read it
with :func:`~waymark.api.deps.tenant_of`, :func:`trace_id_of` and :func:`wait_of`;
:data:`DOCUMENTED` describes them to OpenAPI. Every other route is a FastAPI route that
declares its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.routing import APIRoute
from pydantic import Field, TypeAdapter, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from waymark import lineage, retention
from waymark.api.deps import (
    NUL_MSG,
    TENANT_PARAMETER,
    Cursor,
    ItemLimit,
    Services,
    Tenant,
    TraceIdPath,
    datasets_of,
    json_bytes,
    json_response,
    read_body,
    services,
    submit_events,
    tenant_of,
    visible,
)
from waymark.auth.grants import Role
from waymark.errors import NotFound
from waymark.ingest import invalid, load_json, malformed, parse_events
from waymark.lineage import Lineage
from waymark.model import (
    TRACE_ID_MAX,
    DatasetOverview,
    OverviewAnswer,
    State,
    StateCounts,
    Summary,
    Time,
    TraceStatus,
    dataset_trace_id,
    iso,
    now_us,
    to_us,
)
from waymark.store.base import Overview, Page, PathTouch, Store, TraceQuery, encode_cursor

router = APIRouter(prefix="/v1", tags=["v1"])


class SummaryTraceId(Convertor[str]):
    """A trace id on the summary route: anything, slashes included, but a path that ends
    in ``/events``, ``/errors``, ``/paths`` or ``/lineage`` after some id (the routes of a
    trace's lists). So the summary route can be matched first without taking theirs."""

    regex = r"(?!.+/(?:events|errors|paths|lineage)$).*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("summary_trace_id", SummaryTraceId())

#: the longest ``?wait`` of ``GET /v1/traces/{trace_id}``, in seconds
MAX_WAIT_S = 60
#: the overview's default window: the last 24 hours
DAY_US = 86_400_000_000

_JSON_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
}


async def post_events(request: Request) -> Response:
    """Answers 202 once every event is durable; a batch is stored whole or not at all."""
    tenant = tenant_of(request)
    data = load_json(await read_body(request))
    events = parse_events(data)
    sent = data if isinstance(data, list) else [data]
    ids = await submit_events(request, tenant, events, sent)
    return json_bytes(orjson.dumps({"accepted": len(ids), "event_ids": ids}), 202)


@router.post("/traces", status_code=201, summary="Start a trace for a dataset")
async def create_trace(request: Request, tenant: Tenant) -> Response:
    """Makes a new trace id (`<dataset>-<uuid4>`) and stores a first event (STARTED)."""
    data = load_json(await read_body(request))
    if not isinstance(data, dict):
        raise malformed(["body"], "must be an object")
    missing = [
        {"loc": ["body", name], "msg": "Field required"}
        for name in ("domain", "domain_id")
        if name not in data
    ]
    if "trace_id" in data:
        missing.append({"loc": ["body", "trace_id"], "msg": "is made by the server; leave it out"})
    if missing:
        raise invalid(missing)
    trace_id = dataset_trace_id(data["domain_id"] if isinstance(data["domain_id"], str) else "")
    first = {"trace_status": TraceStatus.STARTED.value, **data, "trace_id": trace_id}
    await submit_events(request, tenant, parse_events(first), [first])
    return json_response({"trace_id": trace_id}, 201)


def no_trace(trace_id: str) -> NotFound:
    return NotFound(f"no trace {trace_id!r}")


#: a store's read of one trace for the request's datasets (None: all), as JSON; None if
#: there is no such trace
TraceRead = Callable[[Store, frozenset[str] | None], bytes | None]


async def trace_answer(request: Request, trace_id: str, read: TraceRead) -> Response:
    """The JSON ``read`` makes, in a store thread (read and encoded there: it may be large);
    404 if it finds no such trace."""
    svc = services(request)
    body = await svc.in_thread(read, svc.store, datasets_of(request))
    if body is None:
        raise no_trace(trace_id)
    return json_bytes(body)


def page_json(page: Page[Any]) -> bytes:
    return orjson.dumps({"items": page.items, "next_cursor": page.next_cursor})


@router.get("/traces/{trace_id:path}/events", summary="A trace's events in order")
async def get_events(
    request: Request,
    trace_id: TraceIdPath,
    tenant: Tenant,
    limit: ItemLimit = 100,
    cursor: Cursor = None,
) -> Response:
    """At most `limit` events and about 1 MiB of them (at least one) a page."""

    def page(store: Store, datasets: frozenset[str] | None) -> bytes | None:
        found = store.events(tenant, trace_id, limit=limit, cursor=cursor, datasets=datasets)
        return page_json(found) if found.items or cursor is not None else None

    return await trace_answer(request, trace_id, page)


@router.delete(
    "/traces/{trace_id:summary_trace_id}",
    status_code=204,
    summary="Delete a trace and everything derived from it (admin)",
)
async def delete_trace(request: Request, trace_id: TraceIdPath, tenant: Tenant) -> Response:
    """Its summary, events, errors, paths, lineage and dataset details go; searches and
    path lookups no longer find it. Events of it received before now that are still on
    the bus are not stored when they arrive (a tombstone, kept as long as the bus keeps
    messages); events received afterwards start it anew. 404 if nothing of it is stored."""
    svc = services(request)
    if datasets_of(request, Role.ADMIN) is not None:
        summary = await svc.in_thread(svc.store.summary, tenant, trace_id)
        if visible(request, summary, Role.ADMIN) is None:
            raise no_trace(trace_id)
    if not await svc.in_thread(retention.delete, svc.store, tenant, trace_id):
        raise no_trace(trace_id)
    return Response(status_code=204)


def _list_route(kind: str, plural: str, order: str) -> None:
    """``GET /v1/traces/{trace_id}/<plural>``: the trace's distinct errors or paths, paged."""

    async def get_items(
        request: Request,
        trace_id: TraceIdPath,
        tenant: Tenant,
        limit: ItemLimit = 100,
        cursor: Cursor = None,
    ) -> Response:
        def page(store: Store, datasets: frozenset[str] | None) -> bytes | None:
            found = store.trace_items(
                tenant, trace_id, kind, limit=limit, cursor=cursor, datasets=datasets
            )
            return None if found is None else page_json(found)

        return await trace_answer(request, trace_id, page)

    router.add_api_route(
        f"/traces/{{trace_id:path}}/{plural}",
        get_items,
        methods=["GET"],
        name=f"get_{plural}",
        summary=f"A trace's distinct {plural} in order",
        description=f"Every distinct {kind} of the trace's events, {order}; at most `limit`"
        " and about 1 MiB a page (`next_cursor`).",
    )


_list_route("error", "errors", "in the order of the first event that reported each")
_list_route("path", "paths", "in first-seen order")


@router.get("/traces", summary="Search traces, most recently updated first")
async def search_traces(
    request: Request,
    tenant: Tenant,
    domain: str | None = None,
    domain_id: str | None = None,
    dataset: Annotated[
        str | None,
        Query(
            max_length=500,
            description="a dataset: domain_id is it, or begins with it and '/' (any version)",
        ),
    ] = None,
    component: str | None = None,
    stage: str | None = None,
    state: State | None = None,
    done: bool | None = None,
    user: str | None = None,
    since: Annotated[Time | None, Query(description="RFC 3339; updated at or after")] = None,
    until: Annotated[Time | None, Query(description="RFC 3339; updated before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> Response:
    query = TraceQuery(
        domain=domain,
        domain_id=domain_id,
        component=component,
        stage=stage,
        state=state,
        done=done,
        user=user,
        since_us=None if since is None else to_us(since),
        until_us=None if until is None else to_us(until),
        datasets=asked_datasets(datasets_of(request), dataset),
    )
    svc = services(request)

    def search() -> bytes:  # the answer is encoded in the thread too: up to 500 summaries
        page = svc.store.search(tenant, query, limit=limit, cursor=cursor)
        items = b",".join(s.model_dump_json().encode() for s in page.items)
        return b'{"items":[' + items + b'],"next_cursor":' + orjson.dumps(page.next_cursor) + b"}"

    return json_bytes(await svc.in_thread(search))


def asked_datasets(allowed: frozenset[str] | None, dataset: str | None) -> frozenset[str] | None:
    """The datasets a search keeps to: those the credential may read (None: all), narrowed
    to ``dataset`` when one is asked for (none if the credential may not read it)."""
    if dataset is None:
        return allowed
    if allowed is None or any(dataset == a or dataset.startswith(a + "/") for a in allowed):
        return frozenset({dataset})
    return frozenset()


@router.get("/paths", summary="Every event that touched a file or object, latest arrival first")
async def get_paths(
    request: Request,
    tenant: Tenant,
    path: Annotated[str, Query(min_length=1, max_length=10_000)],
    limit: ItemLimit = 100,
    cursor: Cursor = None,
) -> Response:
    """Latest received first, at most `limit` a page (`next_cursor`)."""
    svc = services(request)
    datasets = datasets_of(request)
    hits: list[PathTouch] = await svc.in_thread(
        lambda: svc.store.paths(tenant, path, limit=limit + 1, cursor=cursor, datasets=datasets)
    )
    next_cursor = None
    if len(hits) > limit:
        last = hits[limit - 1]
        next_cursor = encode_cursor(last.received_us, last.time_us, last.event_id)
    items = [
        {"trace_id": h.trace_id, "event_id": h.event_id, "at": h.at, "received_at": h.received_at}
        for h in hits[:limit]
    ]
    return json_response({"items": items, "next_cursor": next_cursor})


@router.get(
    "/traces/{trace_id:path}/lineage",
    summary="What went in and out of each step",
    response_model=Lineage,
)
async def get_lineage(
    request: Request,
    trace_id: TraceIdPath,
    tenant: Tenant,
    limit: Annotated[
        int,
        Query(ge=2, le=lineage.MAX_LIMIT, description="the most nodes, and edges, on the page"),
    ] = lineage.DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """Steps and paths as nodes, an edge from each path a step read to the step and from
    the step to each path it wrote; paged (`next`), `truncated` when there is more."""

    def page(store: Store, datasets: frozenset[str] | None) -> bytes | None:
        flow = store.lineage(tenant, trace_id, limit=limit, cursor=cursor, datasets=datasets)
        if flow is None:
            return None
        nxt = flow.next_cursor
        return orjson.dumps(
            {
                "trace_id": trace_id,
                "nodes": flow.nodes,
                "edges": flow.edges,
                "truncated": nxt is not None,
                "next": nxt,
            }
        )

    return await trace_answer(request, trace_id, page)


@router.get(
    "/overview",
    summary="How the traces of a window stand, by state and dataset",
    response_model=OverviewAnswer,
)
async def get_overview(
    request: Request,
    tenant: Tenant,
    since: Annotated[
        Time | None, Query(description="RFC 3339; traces updated at or after (default: 24 h ago)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="the most datasets listed")] = 100,
) -> Response:
    """Counts of the traces updated since ``since`` by state, in all and per dataset (the
    part of ``domain_id`` before its first ``/``), the failing datasets first. Counts the
    most recently updated 100,000 traces at most; ``truncated`` says when there were more."""
    svc = services(request)
    since_us = now_us() - DAY_US if since is None else to_us(since)
    datasets = datasets_of(request)
    view: Overview = await svc.in_thread(
        lambda: svc.store.overview(tenant, since_us, limit=limit, datasets=datasets)
    )
    answer = OverviewAnswer(
        since=iso(view.since_us) or "",
        until=iso(view.now_us) or "",
        counts=StateCounts(**view.counts),
        datasets=[
            DatasetOverview(
                dataset=d.dataset,
                counts=StateCounts(**d.counts),
                total=d.total,
                updated_at=iso(d.updated_us) or "",
            )
            for d in view.datasets
        ],
        more_datasets=view.more_datasets,
        truncated=view.truncated,
    )
    return json_bytes(answer.model_dump_json().encode())


# -- the summary ---------------------------------------------------------------------------

_wait = TypeAdapter(Annotated[float, Field(ge=0, le=MAX_WAIT_S)])


def wait_of(request: Request) -> float:
    """The ``?wait`` of a request, checked: 0 to :data:`MAX_WAIT_S` seconds, 0 if absent."""
    if not request.scope["query_string"]:
        return 0
    raw = request.query_params.get("wait")
    if raw is None:
        return 0
    try:
        wait: float = _wait.validate_python(raw)
    except ValidationError as exc:
        raise invalid([{"loc": ["query", "wait"], "msg": exc.errors()[0]["msg"]}]) from exc
    return wait


def trace_id_of(request: Request) -> str:
    trace_id: str = request.path_params["trace_id"]
    if not trace_id or len(trace_id) > TRACE_ID_MAX:
        msg = f"must be 1 to {TRACE_ID_MAX} characters"
        raise invalid([{"loc": ["path", "trace_id"], "msg": msg}])
    if "\x00" in trace_id:
        raise invalid([{"loc": ["path", "trace_id"], "msg": NUL_MSG}])
    return trace_id


async def read_summary(
    request: Request, svc: Services, tenant: str, trace_id: str, wait: float
) -> Summary:
    """The summary; with ``wait``, once the trace is done or ``wait`` seconds pass. A
    trace of a dataset the request may not read is absent, waited for as one."""

    async def read() -> Summary | None:
        return visible(request, await svc.summaries.read(tenant, trace_id))

    if wait > 0:
        summary = await svc.watcher.wait_done((tenant, trace_id), wait, read)
    else:
        summary = await read()
    if summary is None:
        raise no_trace(trace_id)
    return summary


async def get_trace(request: Request) -> Response:
    summary = await read_summary(
        request, services(request), tenant_of(request), trace_id_of(request), wait_of(request)
    )
    return json_bytes(summary.model_dump_json().encode())


#: The hot endpoints, served as plain Starlette routes ahead of every other route.
HOT_ROUTES: list[BaseRoute] = [
    Route("/v1/events", post_events, methods=["POST"]),
    Route("/v1/traces/{trace_id:summary_trace_id}", get_trace, methods=["GET"]),
]

#: The hot endpoints as OpenAPI sees them: routes that only describe, never serve.
DOCUMENTED: list[BaseRoute] = [
    APIRoute(
        "/v1/events",
        post_events,
        methods=["POST"],
        status_code=202,
        tags=["v1"],
        summary="Send one event or a batch of up to 1,000",
        description="Answers 202 once every event is durable; a batch is stored whole or "
        "not at all.",
        openapi_extra={"parameters": [TENANT_PARAMETER], "requestBody": _JSON_BODY},
    ),
    APIRoute(
        "/v1/traces/{trace_id}",
        get_trace,
        methods=["GET"],
        tags=["v1"],
        summary="Where a trace stands",
        response_model=Summary,
        openapi_extra={
            "parameters": [
                {
                    "name": "trace_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": TRACE_ID_MAX},
                },
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "description": "Hold the answer up to this many seconds until done.",
                    "schema": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": MAX_WAIT_S,
                        "default": 0,
                    },
                },
                TENANT_PARAMETER,
            ]
        },
    ),
]
