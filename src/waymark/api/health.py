"""Health endpoints, for load balancers and orchestrators.

- ``GET /healthz``: the process lives and its event loop answers: 200 ``{"status": "ok"}``,
  whatever the store and the bus are doing (a liveness probe must not restart a server
  for a backend's outage).
- ``GET /readyz``: whether the server can accept writes now. 200
  ``{"status": "ready", "warnings": [...]}`` when the store answers and the sink can take
  a write (:meth:`waymark.sink.Sink.check_ready`): in direct mode the store commits a
  small write (so a full disk, a read-only file system or a read-only database makes it
  fail), in bus mode the bus is connected. 503 ``{"status": "unavailable", "detail": ...,
  "warnings": []}`` with ``Retry-After`` otherwise. ``warnings`` lists each way the
  store's configuration lets an acknowledged event be lost to an OS crash or a power
  loss (:meth:`waymark.store.base.Store.durability_warnings`); a warning does not take
  the server out of service: it is a configuration to fix, not an outage.

A check costs a write, so its outcome is kept for :data:`READY_FOR_S` and shared by the
probes that arrive meanwhile: however often a load balancer asks, one check a second.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from waymark.api.deps import Services, services
from waymark.errors import Unavailable
from waymark.store.base import Store

router = APIRouter(tags=["health"])

#: how long the outcome of a readiness check is kept, in seconds
READY_FOR_S = 1.0


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@dataclass(frozen=True, slots=True)
class Readiness:
    """One check's outcome: the warnings when ready, else the reason it is not."""

    warnings: list[str]
    problem: Unavailable | None
    at: float


class ReadinessCheck:
    """The last readiness check of an app, and the one under way."""

    def __init__(self) -> None:
        self.last: Readiness | None = None
        self.lock = asyncio.Lock()

    async def get(self, svc: Services) -> Readiness:
        async with self.lock:  # the probes that come meanwhile wait for the one check
            last = self.last
            if last is None or time.monotonic() - last.at >= READY_FOR_S:
                last = self.last = await _check(svc)
            return last


async def _check(svc: Services) -> Readiness:
    try:
        warnings = await svc.in_thread(_warnings, svc.store)
        await svc.sink.check_ready()
    except Unavailable as exc:
        return Readiness([], exc, time.monotonic())
    except Exception as exc:  # whatever failed, the answer is "not ready", never a 500
        problem = Unavailable(f"the readiness check failed: {exc!r}")
        return Readiness([], problem, time.monotonic())
    return Readiness(warnings, None, time.monotonic())


def _warnings(store: Store) -> list[str]:
    store.ping()
    return store.durability_warnings()


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    state = request.app.state
    if not hasattr(state, "readiness"):
        state.readiness = ReadinessCheck()
    ready: Readiness = await state.readiness.get(services(request))
    if ready.problem is not None:
        body = {"status": "unavailable", "detail": ready.problem.detail, "warnings": []}
        return Response(
            orjson.dumps(body),
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": str(ready.problem.retry_after)},
        )
    return Response(
        orjson.dumps({"status": "ready", "warnings": ready.warnings}),
        media_type="application/json",
    )
