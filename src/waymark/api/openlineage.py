"""The OpenLineage front door: ``POST /api/v1/lineage``, where Marquez takes run events.

Takes one RunEvent or a JSON array of up to 1,000 (Marquez has no batch endpoint; its
users ask for one), gzip-compressed or not (the Python client's ``compression: gzip``),
and answers ``201`` once they are durable. Errors answer Marquez's shape,
``{"code": ..., "message": ...}``, with ``errors`` naming each bad field. The tenant is the
optional ``Waymark-Tenant`` header (the client's ``custom_headers``).
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from waymark.api.anchored import anchored
from waymark.api.v1 import TenantHeader, json_response, services
from waymark.errors import BadRequest, TooLarge
from waymark.ingest import MAX_REQUEST_BYTES, check_tenant, load_json, to_records
from waymark.translate.openlineage import parse


def marquez_error(status: int, detail: str, errors: list[dict[str, Any]]) -> Response:
    body: dict[str, Any] = {"code": status, "message": detail}
    if errors:
        body["errors"] = errors
    return json_response(body, status)


router = APIRouter(tags=["OpenLineage"], route_class=anchored(marquez_error))


def gunzip(raw: bytes) -> bytes:
    """A gzip body, inflated up to the request size limit."""
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(raw, MAX_REQUEST_BYTES + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from exc
    if len(out) > MAX_REQUEST_BYTES or inflate.unconsumed_tail:
        raise TooLarge(f"body inflates to more than the limit of {MAX_REQUEST_BYTES} bytes")
    if not inflate.eof:
        raise BadRequest("body is not valid gzip: truncated")
    return out


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
async def post_lineage(request: Request, tenant: TenantHeader = None) -> Response:
    the_tenant = check_tenant(tenant)
    raw = await request.body()
    if request.headers.get("content-encoding", "").lower() == "gzip":
        raw = gunzip(raw)
    svc = services(request)
    records = to_records(parse(load_json(raw)), the_tenant, svc.pipelines)
    await svc.sink.submit(records)
    return Response(status_code=201)
