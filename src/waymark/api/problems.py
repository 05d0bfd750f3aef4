"""Errors as HTTP answers, decided once for every door: the status of each error class
(:data:`STATUS`), the request id that ties an answer to the log, and the shapes.

``/v1`` answers RFC 9457 problem details::

    {"type": "about:blank", "status": 422, "title": "Unprocessable Content",
     "detail": "body.0.trace_id: Field required", "request_id": "9f2c...",
     "errors": [{"loc": ["body", 0, "trace_id"], "msg": "Field required"}]}

A front door's router passes ``route_class=shaped(its_shape, its_model)``: the same
:class:`Problem` is then rendered in its anchor's body shape instead, with the same status.

:class:`RequestGuard` gives every request an id (the caller's ``X-Request-ID`` when it is
a sane token, else a new one), sends it back as ``X-Request-ID``, and answers an
exception that nothing else answered with a 500 in the door's shape, logged with its
traceback and the id. No request gets the server's plain-text 500.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waymark import logs
from waymark.api.routing import served_routes
from waymark.errors import (
    BadRequest,
    Forbidden,
    InvalidFields,
    NotFound,
    TooLarge,
    Unauthenticated,
    Unavailable,
    WaymarkError,
)
from waymark.ingest import invalid
from waymark.model import is_token

log = logging.getLogger("waymark.api")

PROBLEM_JSON = "application/problem+json"

#: where a request's id is kept in its ASGI scope
REQUEST_ID = "waymark.request_id"
REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_MAX = 200

#: The HTTP status of each error class. An error takes the status of the first class of
#: its method resolution order found here; any other exception is a 500.
STATUS: dict[type[BaseException], int] = {
    BadRequest: 400,  # malformed: not JSON, the wrong kind of value, bad gzip
    InvalidFields: 422,  # well-formed, with fields whose values are wrong
    RequestValidationError: 422,  # the same, found by FastAPI in a path, query or header
    TooLarge: 413,
    Unauthenticated: 401,  # with WWW-Authenticate: Bearer
    Forbidden: 403,  # a valid credential without the role, tenant or dataset
    NotFound: 404,
    Unavailable: 503,  # with Retry-After
    # the client went away while its body was read (or was cut off for stalling): nobody
    # reads this answer, and it is no fault of the server's
    ClientDisconnect: 400,
}

INTERNAL = 500


def status_of(exc: BaseException) -> int:
    if isinstance(exc, HTTPException):  # the router's own: no such route, method not allowed
        return exc.status_code
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return INTERNAL


@dataclass(frozen=True, slots=True)
class Problem:
    """One error, as every shape sees it."""

    status: int
    detail: str
    errors: list[dict[str, Any]]
    request_id: str

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase


#: Renders a problem in one door's body shape (status, body and content type).
Shape = Callable[[Problem], Response]


def problem_of(exc: BaseException, request_id: str) -> Problem:
    status = status_of(exc)
    errors: list[dict[str, Any]] = []
    if status == INTERNAL:
        detail = "internal error"  # what went wrong is in the log, under the request id
    elif isinstance(exc, RequestValidationError):
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        detail = invalid(errors).detail if errors else "invalid request"
    elif isinstance(exc, HTTPException):
        detail = str(exc.detail)
    elif isinstance(exc, BadRequest | Forbidden):
        detail, errors = exc.detail, exc.errors
    else:
        detail = str(exc)
    return Problem(status, detail, errors, request_id)


def problem_details(problem: Problem) -> Response:
    """``/v1``'s shape: RFC 9457 problem details, with the request id."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "status": problem.status,
        "title": problem.title,
        "detail": problem.detail,
        "request_id": problem.request_id,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return Response(orjson.dumps(body), status_code=problem.status, media_type=PROBLEM_JSON)


def shaped(shape: Shape, model: type[BaseModel]) -> type[APIRoute]:
    """A route class whose errors answer in ``shape``, whose body ``model`` describes (for
    the API description); a front door's router takes it as ``route_class``."""
    return type(
        "ShapedRoute", (APIRoute,), {"error_shape": staticmethod(shape), "error_model": model}
    )


def render(scope: Scope, exc: BaseException) -> Response:
    """The answer to ``exc`` in the shape of the route that raised it, logged."""
    request_id: str = scope.get(REQUEST_ID, "")
    problem = problem_of(exc, request_id)
    response = shape_of(scope)(problem)
    if isinstance(exc, Unavailable):
        response.headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="waymark"'

    elif isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)
    if problem.status == 405:  # the router names the methods of the first route that matched
        response.headers["Allow"] = allowed_methods(scope)
    where = f"{scope.get('method')} {scope.get('path')}"
    if problem.status == INTERNAL:
        log.error("request %s: %s failed", request_id, where, exc_info=exc)
    elif problem.status >= INTERNAL:
        log.warning("request %s: %s answered %d: %s", request_id, where, problem.status, exc)
    else:
        log.info("request %s: %s answered %d: %s", request_id, where, problem.status, exc)
    return response


def shape_of(scope: Scope) -> Shape:
    """The error shape of the request's door: its route's, else (an answer no route gave:
    the router's own 404, or a refusal before a route was found) that of the door whose
    paths the request's path is under, a path that begins with one of the door's routes'
    paths up to its first parameter (``/status/`` of okdata's ``/status/{trace_id}``), so
    that a client of a door gets that door's shape on all its paths; else problem details."""
    route = scope.get("route")
    if route is None:
        path: str = scope.get("path", "")
        route = next(
            (
                door
                for door in served_routes(getattr(scope.get("app"), "routes", ()))
                if isinstance(door, APIRoute)
                and hasattr(door, "error_shape")
                and "{" in door.path_format
                and path.startswith(door.path_format.partition("{")[0])
            ),
            None,
        )
    shape: Shape = getattr(route, "error_shape", problem_details)
    return shape


def allowed_methods(scope: Scope) -> str:
    """Every method some route takes at this path (``Allow`` of a 405)."""
    routes = getattr(scope.get("app"), "routes", ())
    return ", ".join(
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    )


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


# -- request ids --------------------------------------------------------------------------


def request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` if it is 1-200 printable characters without
    whitespace, else a new one."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            given = value.decode("latin-1")
            if len(given) <= REQUEST_ID_MAX and is_token(given):
                return str(given)
            break
    return new_request_id()


class _Ids:
    """New request ids: a random prefix per process and a counter, unique across the
    workers and processes of a deployment without a system call per request."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}-{next(self.counter):x}"


new_request_id = _Ids()


class RequestGuard:
    """Pure ASGI middleware, inside Starlette's error middleware and outside the routes:
    the request id in and out, and a 500 in the door's shape for whatever escaped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        scope[REQUEST_ID] = rid
        logs.REQUEST_ID.set(rid)  # for the log lines of this request (its own task)
        header = (REQUEST_ID_HEADER, rid.encode("latin-1"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:  # too late for an answer: the server closes the connection
                log.error(
                    "request %s: %s %s failed while answering",
                    rid,
                    scope.get("method"),
                    scope.get("path"),
                    exc_info=exc,
                )
                return
            await render(scope, exc)(scope, receive, send_with_id)


def install(app: FastAPI) -> None:
    """Answer every error through :func:`render`, and guard every request."""

    async def on_error(request: Request, exc: Exception) -> Response:
        return render(request.scope, exc)

    for cls in (WaymarkError, RequestValidationError, HTTPException):
        app.add_exception_handler(cls, on_error)
    app.add_middleware(RequestGuard)
