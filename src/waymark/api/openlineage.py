"""The OpenLineage front door: ``POST /api/v1/lineage``, where Marquez takes run events.

Takes one RunEvent or a JSON array of up to 1,000 (Marquez has no batch endpoint; its
users ask for one), gzip-compressed or not (the Python client's ``compression: gzip``),
and answers ``201`` once they are durable. Errors answer Marquez's shape,
``{"code": ..., "message": ...}``, with ``errors`` naming each bad field. The tenant is the
optional ``Waymark-Tenant`` header (the client's ``custom_headers``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from waymark.api.deps import Tenant, json_response, read_body, services, submit_records
from waymark.api.description import MarquezError
from waymark.api.problems import Problem, shaped
from waymark.ingest import load_json, to_records
from waymark.translate.openlineage import parse


def marquez_error(problem: Problem) -> Response:
    """Marquez's error shape, with the request id beside it."""
    body: dict[str, Any] = {
        "code": problem.status,
        "message": problem.detail,
        "request_id": problem.request_id,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return json_response(body, problem.status)


router = APIRouter(tags=["OpenLineage"], route_class=shaped(marquez_error, MarquezError))


@router.post(
    "/api/v1/lineage",
    status_code=201,
    summary="Send OpenLineage run events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
        }
    },
)
async def post_lineage(request: Request, tenant: Tenant) -> Response:
    raw = await read_body(request, gzip=True)
    records = to_records(parse(load_json(raw)), tenant, services(request).pipelines)
    await submit_records(request, records)
    return Response(status_code=201)
