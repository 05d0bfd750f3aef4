"""Routes that answer errors in their anchor's shape instead of ``/v1``'s problem details.

Each front door builds its router with ``route_class=anchored(shape)``: every error raised
while handling one of its requests (FastAPI's own validation errors included) is caught
here and rendered by ``shape(status, detail, errors)``. The app-wide problem handlers
(:mod:`waymark.api.problems`) never see them, so ``/v1`` keeps its shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response

from waymark.errors import BadRequest, NotFound, TooLarge, Unavailable, WaymarkError
from waymark.ingest import invalid

log = logging.getLogger("waymark.api")

Shape = Callable[[int, str, list[dict[str, Any]]], Response]


def status_of(exc: WaymarkError) -> int:
    """Translators answer every bad request with 400 (413 past a size limit)."""
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, BadRequest):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Unavailable):
        return 503
    return 500


def render(shape: Shape, exc: Exception) -> Response:
    """One caught error in the anchor's shape."""
    if isinstance(exc, RequestValidationError):
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        exc = invalid(errors) if errors else BadRequest("invalid request")
    if isinstance(exc, HTTPException):
        response = shape(exc.status_code, str(exc.detail), [])
    elif isinstance(exc, WaymarkError):
        errors = exc.errors if isinstance(exc, BadRequest) else []
        response = shape(status_of(exc), str(exc), errors)
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(exc.retry_after)
    else:
        response = shape(500, "internal error", [])
    return response


def anchored(shape: Shape) -> type[APIRoute]:
    """A route class whose errors are rendered by ``shape``."""

    class AnchoredRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def handler(request: Request) -> Response:
                try:
                    return await handle(request)
                except (RequestValidationError, HTTPException, WaymarkError) as exc:
                    return render(shape, exc)
                except Exception:
                    log.exception("unhandled error on %s %s", request.method, request.url.path)
                    return render(shape, RuntimeError())

            return handler

    return AnchoredRoute
