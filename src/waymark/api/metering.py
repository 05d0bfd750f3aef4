"""What the API measures of its requests, and ``GET /metrics``.

:class:`HttpMetrics` is a pure ASGI middleware, the outermost of the app's own (outside
:class:`~waymark.api.problems.RequestGuard`), so that it sees every answer's final
status: the routes', the access guard's refusals and the 500s the request guard makes.
It labels a request with its route's path template (``/v1/traces/{trace_id:...}``),
which the router (or the access guard, for a refusal) leaves in the request's scope,
never with the request's own path: a client cannot make series of its own.

The events accepted and refused per front door are counted here too: a door's write
routes are :data:`DOOR_OF`; :func:`accepted` counts a request's events once the sink took
them, and the middleware counts a 4xx answer of a write route as one refused submission.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waymark import metrics
from waymark.api.routing import served_routes

#: the front door of each route that submits events, by (method, path as the route has it)
DOOR_OF: dict[tuple[str, str], str] = {
    ("POST", "/v1/events"): "v1",
    ("POST", "/v1/traces"): "v1",
    ("POST", "/status"): "okdata",
    ("POST", "/status/{trace_id}"): "okdata",
    ("POST", "/api/status-publisher/v1/status"): "gsm",
    ("POST", "/api/v1/lineage"): "openlineage",
    ("POST", "/aws/step-functions/events"): "stepfunctions",
}


def route_of(scope: Scope) -> str:
    """The path template of the route a request went to, or :data:`metrics.UNMATCHED`.

    FastAPI's routes leave themselves in the scope (``route``); a plain Starlette route
    (the hot ones) leaves only its endpoint, whose route is looked up."""
    route = scope.get("route")
    if route is None:
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return metrics.UNMATCHED
        return _paths(scope["app"]).get(endpoint, metrics.UNMATCHED)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else metrics.UNMATCHED


@functools.lru_cache(maxsize=8)
def _paths(app: Any) -> dict[Any, str]:
    """The path of each endpoint of ``app``'s routes (asked once requests come, when
    every route is in place)."""
    paths: dict[Any, str] = {}
    for route in served_routes(app.routes):
        endpoint = getattr(route, "endpoint", None) or getattr(route, "app", None)
        path = getattr(route, "path", None)
        if endpoint is not None and isinstance(path, str):
            paths.setdefault(endpoint, path)
    return paths


def accepted(scope: Scope, n: int) -> None:
    """Count ``n`` events the sink made durable for the request of ``scope``."""
    door = DOOR_OF.get((scope["method"], route_of(scope)))
    if door is not None:
        metrics.events_accepted(door, n)


class HttpMetrics:
    """Times every HTTP request, from its arrival to the end of its answer, by route
    template, method and status (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if nothing was sent

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_of(scope)
            method = scope["method"]
            metrics.http_request(route, method, status, time.perf_counter() - started)
            if 400 <= status < 500:
                door = DOOR_OF.get((method, route))
                if door is not None:
                    metrics.events_rejected(door, status)


router = APIRouter(tags=["metrics"])


@router.get("/metrics")
def metrics_text() -> Response:
    """Metrics in Prometheus's text format (summed over the server's workers); run in a
    thread, since several workers' values are read from files."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
