"""The okdata status API's front door (oslokommune/dataplatform-status-api).

``POST /status`` starts a trace, ``POST /status/{trace_id}`` adds an event,
``GET /status/{trace_id}`` lists its events in okdata's names and
``GET /status-from-path/{b64}`` finds the newest trace that touched an S3 key. Errors
answer ``{"message": "..."}`` naming the field, as okdata's clients expect. The tenant is
the optional ``Waymark-Tenant`` header, as on ``/v1``.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from waymark.api.deps import (
    Tenant,
    TraceIdPath,
    datasets_of,
    json_bytes,
    json_response,
    read_body,
    services,
    submit_records,
    visible,
)
from waymark.api.description import OkdataError
from waymark.api.problems import Problem, shaped
from waymark.auth.grants import Role
from waymark.errors import NotFound
from waymark.ingest import invalid, load_json, to_records
from waymark.model import Event, Summary
from waymark.store.base import PathTouch, Store
from waymark.translate.okdata import create_event, to_item, update_event

MAX_EVENTS = 10_000


def okdata_error(problem: Problem) -> Response:
    """okdata's error shape: ``{"message": ...}``, every bad field named in it (and the
    request id beside it)."""
    detail = problem.detail
    if problem.errors:
        parts = []
        for err in problem.errors:
            loc = [str(p) for p in err["loc"]]
            if loc[:1] == ["body"] and len(loc) > 1:
                loc = loc[1:]
            parts.append(f"{'.'.join(loc)}: {err['msg']}")
        detail = "; ".join(parts)
    return json_response({"message": detail, "request_id": problem.request_id}, problem.status)


router = APIRouter(tags=["okdata status API"], route_class=shaped(okdata_error, OkdataError))


async def _store(request: Request, event: Event, tenant: str) -> dict[str, Any]:
    records = to_records([event], tenant, services(request).pipelines)
    await submit_records(request, records)
    return records[0].doc


@router.post("/status", summary="Start a trace (okdata)")
async def create_status(request: Request, tenant: Tenant) -> Response:
    """Stores a first event (STARTED, OK); answers ``{"trace_id": "<dataset>-<uuid4>"}``."""
    event = create_event(load_json(await read_body(request)))
    await _store(request, event, tenant)
    return json_response({"trace_id": event.trace_id})


def history(
    store: Store, tenant: str, trace_id: str, datasets: frozenset[str] | None = None
) -> bytes:
    """A trace's events in okdata's names, as JSON: its pages read one after another, up to
    :data:`MAX_EVENTS` events (run in a store thread: a long trace takes a while); only
    of a trace of ``datasets`` when given."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(items) < MAX_EVENTS:
        page = store.events(tenant, trace_id, limit=1000, cursor=cursor, datasets=datasets)
        items += (to_item(doc) for doc in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    if not items:
        raise NotFound(f"Could not find item: {trace_id}")
    return orjson.dumps(items)


@router.get("/status/{trace_id}", summary="A trace's events in okdata's names")
async def get_status(request: Request, trace_id: TraceIdPath, tenant: Tenant) -> Response:
    svc = services(request)
    return json_bytes(
        await svc.in_thread(history, svc.store, tenant, trace_id, datasets_of(request))
    )


@router.post("/status/{trace_id}", summary="Add an event to a trace (okdata)")
async def update_status(request: Request, trace_id: TraceIdPath, tenant: Tenant) -> Response:
    """Answers the stored item; 404 if the trace has no events. Right after the `POST
    /status` that started the trace, the trace is waited for until it is stored."""
    # The POST /status that started it may still be on its way to the store (in bus mode,
    # through a collector): a trace not found is waited for as long as the sink may take
    # to make a submitted event readable (Sink.readable_within_s).
    event = update_event(load_json(await read_body(request)), trace_id)
    svc = services(request)

    async def read() -> Summary | None:  # a trace this credential may not write is absent
        return visible(request, await svc.summaries.read(tenant, trace_id), Role.WRITER)

    found = await read()
    if found is None:
        key, within = (tenant, trace_id), svc.sink.readable_within_s
        found = await svc.watcher.wait_for(key, within, read, lambda s: s is not None)
    if found is None:
        raise NotFound(f"Could not find item: {trace_id}")
    return json_response(to_item(await _store(request, event, tenant)))


def decode_path(b64: str) -> str:
    """An S3 key from its base64 (standard or URL-safe alphabet, padding optional)."""
    padded = b64 + "=" * (-len(b64) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        return raw.decode("utf-8")
    except ValueError as exc:  # not base64 (binascii.Error), not ASCII, not UTF-8
        raise invalid(
            [{"loc": ["path", "s3path"], "msg": "must be base64 of a UTF-8 S3 key"}]
        ) from exc


@router.get("/status-from-path/{b64:path}", summary="The newest trace that touched an S3 key")
async def status_from_path(request: Request, b64: str, tenant: Tenant) -> Response:
    path = decode_path(b64)
    svc = services(request)
    datasets = datasets_of(request)
    hits: list[PathTouch] = await svc.in_thread(
        lambda: svc.store.paths(tenant, path, limit=1, datasets=datasets)
    )
    if not hits:
        raise NotFound(f"Could not find item: {path}")
    return json_response({"id": hits[0].trace_id, "trace_id": hits[0].trace_id})
