"""The native API, ``/v1``: send events, read summaries, events, searches, paths, lineage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response

from waymark.api import offload
from waymark.api.fastpath import accept_events, read_summary
from waymark.errors import NotFound
from waymark.ingest import check_tenant, invalid, load_json, parse_events
from waymark.model import (
    TRACE_ID_MAX,
    State,
    Summary,
    Time,
    TraceStatus,
    dataset_trace_id,
    to_us,
)
from waymark.store.base import TraceQuery

if TYPE_CHECKING:
    from waymark.api.app import Services

router = APIRouter(prefix="/v1", tags=["v1"])

TenantHeader = Annotated[
    str | None,
    Header(alias="Waymark-Tenant", description="The tenant; `default` when absent."),
]
TraceIdPath = Annotated[str, Path(min_length=1, max_length=TRACE_ID_MAX)]


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def _accept(request: Request, data: dict[str, Any], tenant: str) -> list[str]:
    svc = services(request)
    return await svc.sink.submit_events(tenant, parse_events(data), [data], svc.pipelines)


@router.post(
    "/events",
    status_code=202,
    summary="Send one event or a batch of up to 1,000",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
        }
    },
)
async def post_events(request: Request, tenant: TenantHeader = None) -> Response:
    """Answers 202 once every event is durable; a batch is stored whole or not at all.

    (Requests are served by :mod:`waymark.api.fastpath`, which runs the same code.)"""
    body = await accept_events(services(request), await request.body(), tenant)
    return Response(body, status_code=202, media_type="application/json")


@router.post("/traces", status_code=201, summary="Start a trace for a dataset")
async def create_trace(request: Request, tenant: TenantHeader = None) -> Response:
    """Makes a new trace id (`<dataset>-<uuid4>`) and stores a first event (STARTED)."""
    the_tenant = check_tenant(tenant)
    data = load_json(await request.body())
    if not isinstance(data, dict):
        raise invalid([{"loc": ["body"], "msg": "must be an object"}])
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
    await _accept(request, first, the_tenant)
    return json_response({"trace_id": trace_id}, 201)


@router.get("/traces/{trace_id:path}/events", summary="A trace's events in order")
async def get_events(
    request: Request,
    trace_id: TraceIdPath,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    tenant: TenantHeader = None,
) -> Response:
    the_tenant = check_tenant(tenant)
    store = services(request).store
    page = await offload.read(
        store, lambda: store.events(the_tenant, trace_id, limit=limit, cursor=cursor)
    )
    if not page.items and cursor is None:
        raise NotFound(f"no trace {trace_id!r}")
    return json_response({"items": page.items, "next_cursor": page.next_cursor})


@router.get("/traces", summary="Search traces, most recently updated first")
async def search_traces(
    request: Request,
    domain: str | None = None,
    domain_id: str | None = None,
    component: str | None = None,
    stage: str | None = None,
    state: State | None = None,
    done: bool | None = None,
    user: str | None = None,
    since: Annotated[Time | None, Query(description="RFC 3339; updated at or after")] = None,
    until: Annotated[Time | None, Query(description="RFC 3339; updated before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    tenant: TenantHeader = None,
) -> Response:
    the_tenant = check_tenant(tenant)
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
    )
    store = services(request).store
    page = await offload.read(
        store, lambda: store.search(the_tenant, query, limit=limit, cursor=cursor)
    )
    items = b",".join(s.model_dump_json().encode() for s in page.items)
    return Response(
        b'{"items":[' + items + b'],"next_cursor":' + orjson.dumps(page.next_cursor) + b"}",
        media_type="application/json",
    )


@router.get("/paths", summary="Every trace that touched a file or object")
async def get_paths(
    request: Request,
    path: Annotated[str, Query(min_length=1, max_length=10_000)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tenant: TenantHeader = None,
) -> Response:
    the_tenant = check_tenant(tenant)
    store = services(request).store
    hits = await offload.read(store, lambda: store.paths(the_tenant, path, limit=limit))
    return json_response(
        {"items": [{"trace_id": h.trace_id, "event_id": h.event_id, "at": h.at} for h in hits]}
    )


@router.get("/traces/{trace_id:path}/lineage", summary="What went in and out of each step")
async def get_lineage(
    request: Request, trace_id: TraceIdPath, tenant: TenantHeader = None
) -> Response:
    the_tenant = check_tenant(tenant)
    store = services(request).store
    lineage = await offload.read(store, lambda: store.lineage(the_tenant, trace_id))
    if lineage is None:
        raise NotFound(f"no trace {trace_id!r}")
    return json_response({"nodes": lineage.nodes, "edges": lineage.edges})


# Declared last: trace ids may hold "/", so this route matches whatever the others did not.
@router.get("/traces/{trace_id:path}", summary="Where a trace stands", response_model=Summary)
async def get_trace(
    request: Request,
    trace_id: TraceIdPath,
    wait: Annotated[
        float,
        Query(ge=0, le=60, description="Hold the answer up to this many seconds until done."),
    ] = 0,
    tenant: TenantHeader = None,
) -> Response:
    """(Requests are served by :mod:`waymark.api.fastpath`, which runs the same code.)"""
    body = await read_summary(services(request), check_tenant(tenant), trace_id, wait)
    return Response(body, media_type="application/json")
