"""OSDU Global Status Monitoring's front door: the status publisher and processor APIs.

The tenant is the ``data-partition-id`` header (required, as on every OSDU API). Errors
answer OSDU's shape, ``{"code", "reason", "message"}``, with ``errors`` listing the index
(in the posted list) and field of each bad message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from waymark.api.deps import (
    TENANT,
    check_writes,
    datasets_of,
    json_bytes,
    json_response,
    read_body,
    services,
    submit_records,
)
from waymark.api.description import GsmError
from waymark.api.problems import Problem, shaped
from waymark.errors import BadCursor
from waymark.ingest import check_tenant, invalid, load_json
from waymark.model import TRACE_ID_MAX, now_us
from waymark.store.base import DatasetDetails
from waymark.translate.gsm import (
    DETAILS_KIND,
    STATUS_KIND,
    details_properties,
    event_query,
    status_properties,
    translate,
)


def gsm_error(problem: Problem) -> Response:
    """OSDU's error shape, with the request id beside it."""
    body: dict[str, Any] = {
        "code": problem.status,
        "reason": problem.title,
        "message": problem.detail,
        "request_id": problem.request_id,
    }
    if problem.errors:
        body["errors"] = [_item_error(e) for e in problem.errors]
    return json_response(body, problem.status)


def _item_error(err: dict[str, Any]) -> dict[str, Any]:
    loc = list(err["loc"])
    index = loc.pop(0) if loc and isinstance(loc[0], int) else None
    return {"index": index, "field": ".".join(str(p) for p in loc), "message": err["msg"]}


router = APIRouter(tags=["OSDU GSM"], route_class=shaped(gsm_error, GsmError))


def _tenant(
    request: Request,
    partition: Annotated[
        str, Header(alias="data-partition-id", min_length=1, max_length=TRACE_ID_MAX)
    ],
) -> str:
    allowed: str | None = request.scope.get(TENANT)  # the access guard read the same header
    if allowed is not None:
        return allowed
    return check_tenant(partition, ("header", "data-partition-id"))


#: A route parameter: the tenant, from the ``data-partition-id`` header (required).
Partition = Annotated[str, Depends(_tenant)]
CorrelationHeader = Annotated[
    str | None,
    Header(alias="correlation-id", description="Trace id of messages without correlationId"),
]


@router.post("/api/status-publisher/v1/status", summary="Publish status messages (GSM)")
async def publish_status(
    request: Request, tenant: Partition, correlation_id: CorrelationHeader = None
) -> Response:
    """A list of ``{"kind": "status", "properties": {...}}``; all stored or none."""
    svc = services(request)
    records, _ = translate(
        load_json(await read_body(request), where=()),
        tenant,
        svc.pipelines,
        now_us(),
        correlation_id=correlation_id or None,
        kinds=(STATUS_KIND,),
    )
    await submit_records(request, records)
    return json_response({"accepted": len(records)})


@router.post("/api/status-publisher/v1/dataset-details", summary="Publish dataset details (GSM)")
async def publish_dataset_details(
    request: Request, tenant: Partition, correlation_id: CorrelationHeader = None
) -> Response:
    """A list of ``{"kind": "datasetDetails", "properties": {...}}``; all stored or none."""
    svc = services(request)
    _, details = translate(
        load_json(await read_body(request), where=()),
        tenant,
        svc.pipelines,
        now_us(),
        correlation_id=correlation_id or None,
        kinds=(DETAILS_KIND,),
    )
    check_writes(request, [d.dataset_id for d in details], "properties.datasetId")
    await svc.sink.submit_dataset_details(details)
    return json_response({"accepted": len(details)})


@router.post("/api/status-processor/v1/status/query", summary="Query status messages (GSM)")
async def query_status(request: Request, tenant: Partition) -> Response:
    """``{"statusQuery": {...}, "limit": N, "cursor": C}`` -> ``{"results", "cursor"}``."""
    query, limit, cursor = event_query(load_json(await read_body(request)))
    query = replace(query, datasets=datasets_of(request))
    svc = services(request)

    def find() -> bytes:  # up to 1,000 messages, encoded in the thread too
        page = svc.store.find_events(tenant, query, limit=limit, cursor=cursor)
        results = [status_properties(d) for d in page.items]
        return orjson.dumps({"results": results, "cursor": page.next_cursor})

    try:
        return json_bytes(await svc.in_thread(find))
    except BadCursor as exc:  # the cursor came in the body, not the query string
        raise invalid([{"loc": ["body", "cursor"], "msg": exc.detail}]) from exc


@router.get("/api/status-processor/v1/dataset-details", summary="Dataset details (GSM)")
async def get_dataset_details(
    request: Request,
    tenant: Partition,
    correlation_id: Annotated[
        str | None, Query(alias="correlationId", min_length=1, max_length=TRACE_ID_MAX)
    ] = None,
    dataset_id: Annotated[
        str | None, Query(alias="datasetId", min_length=1, max_length=500)
    ] = None,
) -> Response:
    """By ``correlationId`` or ``datasetId`` (one of them required)."""
    if correlation_id is None and dataset_id is None:
        raise invalid(
            [{"loc": ["query", "correlationId"], "msg": "give correlationId or datasetId"}]
        )
    svc = services(request)
    datasets = datasets_of(request)
    found: list[DatasetDetails] = await svc.in_thread(
        lambda: svc.store.dataset_details(
            tenant, trace_id=correlation_id, dataset_id=dataset_id, datasets=datasets
        )
    )
    return json_response({"results": [details_properties(d) for d in found]})
