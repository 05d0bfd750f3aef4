"""Health endpoints, for load balancers and orchestrators.

- ``GET /healthz``: 200 ``{"status": "ok"}`` when the store answers, else 503 (problem
  details with ``Retry-After``, as every route answers an unreachable store).
- ``GET /readyz``: 200 ``{"status": "ready", "warnings": [...]}`` when the store answers;
  ``warnings`` lists each way the store's configuration lets an acknowledged event be
  lost to an OS crash or a power loss (:meth:`waymark.store.base.Store.durability_warnings`,
  for example PostgreSQL with ``synchronous_commit`` off), empty when none. A warning does
  not take the server out of service: it is a configuration to fix, not an outage. 503
  ``{"status": "unavailable", "detail": ..., "warnings": []}`` with ``Retry-After`` when
  the store cannot be reached.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from waymark.api.deps import services
from waymark.errors import Unavailable
from waymark.store.base import Store

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    svc = services(request)
    await svc.in_thread(svc.store.ping)
    return Response(b'{"status":"ok"}', media_type="application/json")


def _readiness(store: Store) -> list[str]:
    store.ping()
    return store.durability_warnings()


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    svc = services(request)
    try:
        warnings = await svc.in_thread(_readiness, svc.store)
    except Unavailable as exc:
        body = {"status": "unavailable", "detail": exc.detail, "warnings": []}
        return Response(
            orjson.dumps(body),
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": str(exc.retry_after)},
        )
    return Response(
        orjson.dumps({"status": "ready", "warnings": warnings}), media_type="application/json"
    )
