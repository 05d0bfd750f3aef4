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

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.routing import APIRoute
from pydantic import Field, TypeAdapter, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from waymark.api.deps import (
    TENANT_PARAMETER,
    Services,
    Tenant,
    TraceIdPath,
    json_bytes,
    json_response,
    read_body,
    services,
    tenant_of,
)
from waymark.errors import NotFound
from waymark.ingest import invalid, load_json, malformed, parse_events
from waymark.model import (
    TRACE_ID_MAX,
    State,
    Summary,
    Time,
    TraceStatus,
    dataset_trace_id,
    to_us,
)
from waymark.store.base import DataFlow, Page, PathTouch, TraceQuery

router = APIRouter(prefix="/v1", tags=["v1"])

#: the longest ``?wait`` of ``GET /v1/traces/{trace_id}``, in seconds
MAX_WAIT_S = 60

_JSON_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
}


async def post_events(request: Request) -> Response:
    """Answers 202 once every event is durable; a batch is stored whole or not at all."""
    svc = services(request)
    tenant = tenant_of(request)
    data = load_json(await read_body(request))
    events = parse_events(data)
    sent = data if isinstance(data, list) else [data]
    ids = await svc.sink.submit_events(tenant, events, sent, svc.pipelines)
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
    svc = services(request)
    await svc.sink.submit_events(tenant, parse_events(first), [first], svc.pipelines)
    return json_response({"trace_id": trace_id}, 201)


@router.get("/traces/{trace_id:path}/events", summary="A trace's events in order")
async def get_events(
    request: Request,
    trace_id: TraceIdPath,
    tenant: Tenant,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    svc = services(request)
    page: Page[dict[str, Any]] = await svc.in_thread(
        lambda: svc.store.events(tenant, trace_id, limit=limit, cursor=cursor)
    )
    if not page.items and cursor is None:
        raise NotFound(f"no trace {trace_id!r}")
    return json_response({"items": page.items, "next_cursor": page.next_cursor})


@router.get("/traces", summary="Search traces, most recently updated first")
async def search_traces(
    request: Request,
    tenant: Tenant,
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
    )
    svc = services(request)

    def search() -> bytes:  # the answer is encoded in the thread too: up to 500 summaries
        page = svc.store.search(tenant, query, limit=limit, cursor=cursor)
        items = b",".join(s.model_dump_json().encode() for s in page.items)
        return b'{"items":[' + items + b'],"next_cursor":' + orjson.dumps(page.next_cursor) + b"}"

    return json_bytes(await svc.in_thread(search))


@router.get("/paths", summary="Every event that touched a file or object, latest arrival first")
async def get_paths(
    request: Request,
    tenant: Tenant,
    path: Annotated[str, Query(min_length=1, max_length=10_000)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    svc = services(request)
    hits: list[PathTouch] = await svc.in_thread(lambda: svc.store.paths(tenant, path, limit=limit))
    return json_response(
        {
            "items": [
                {
                    "trace_id": h.trace_id,
                    "event_id": h.event_id,
                    "at": h.at,
                    "received_at": h.received_at,
                }
                for h in hits
            ]
        }
    )


@router.get("/traces/{trace_id:path}/lineage", summary="What went in and out of each step")
async def get_lineage(request: Request, trace_id: TraceIdPath, tenant: Tenant) -> Response:
    svc = services(request)
    lineage: DataFlow | None = await svc.in_thread(svc.store.lineage, tenant, trace_id)
    if lineage is None:
        raise NotFound(f"no trace {trace_id!r}")
    return json_response({"nodes": lineage.nodes, "edges": lineage.edges})


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
    return trace_id


async def read_summary(svc: Services, tenant: str, trace_id: str, wait: float) -> Summary:
    """The summary; with ``wait``, once the trace is done or ``wait`` seconds pass."""

    async def read() -> Summary | None:
        return await svc.summaries.read(tenant, trace_id)

    if wait > 0:
        summary = await svc.watcher.wait_done((tenant, trace_id), wait, read)
    else:
        summary = await read()
    if summary is None:
        raise NotFound(f"no trace {trace_id!r}")
    return summary


async def get_trace(request: Request) -> Response:
    summary = await read_summary(
        services(request), tenant_of(request), trace_id_of(request), wait_of(request)
    )
    return json_bytes(summary.model_dump_json().encode())


class SummaryTraceId(Convertor[str]):
    """A trace id on the summary route: anything, slashes included, but a path that ends
    in ``/events`` or ``/lineage`` after some id (the routes of a trace's events and
    lineage). So the summary route can be matched first without taking theirs."""

    regex = r"(?!.+/(?:events|lineage)$).*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("summary_trace_id", SummaryTraceId())

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
