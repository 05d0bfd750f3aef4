"""RFC 9457 problem details: every error on ``/v1`` is answered here, in one shape.

``{"type": "about:blank", "status": 422, "title": "Unprocessable Content",
"detail": "...", "errors": [{"loc": ["body", 0, "trace_id"], "msg": "..."}]}``
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from waymark.errors import BadRequest, NotFound, TooLarge, Unavailable, WaymarkError
from waymark.ingest import invalid

log = logging.getLogger("waymark.api")

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "status": status,
        "title": HTTPStatus(status).phrase,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def status_of(exc: WaymarkError) -> int:
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, BadRequest):
        return 422 if exc.errors else 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Unavailable):
        return 503
    return 500


def from_error(exc: WaymarkError) -> Response:
    status = status_of(exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else None
    errors = exc.errors if isinstance(exc, BadRequest) else None
    if status == 500:
        log.error("unexpected error: %r", exc)
    return problem(status, str(exc), errors, headers)


def install(app: FastAPI) -> None:
    """Map every error to a problem response, once for the whole app."""

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        if not errors:
            return problem(422, "invalid request")
        return from_error(invalid(errors))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_waymark(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WaymarkError)
        return from_error(exc)

    async def on_anything(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal error")

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(WaymarkError, on_waymark)
    app.add_exception_handler(Exception, on_anything)
