"""The two hot endpoints served straight from ASGI: ``POST /v1/events`` (every producer)
and ``GET /v1/traces/{trace_id}`` (every reader and waiter).

FastAPI's middleware, routing and dependency resolution cost several times more per
request than validating and storing a small event or reading a summary, so the app
(:class:`waymark.api.app.WaymarkApp`) answers these two before any of that runs. They
run the same functions (:func:`accept_events`, :func:`read_summary`) as the documented
routes in :mod:`waymark.api.v1`, and answer errors with the same problem details.
(FastAPI's OpenTelemetry hooks do not see these requests.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qsl

import orjson
from pydantic import Field, TypeAdapter, ValidationError
from starlette.types import Message, Receive, Scope, Send

from waymark.api import offload
from waymark.api.problems import from_error
from waymark.errors import NotFound, TooLarge, WaymarkError
from waymark.ingest import MAX_REQUEST_BYTES, check_tenant, invalid, load_json, parse_events
from waymark.model import TRACE_ID_MAX, Summary

if TYPE_CHECKING:
    from waymark.api.app import Services

PATH = "/v1/events"


async def accept_events(services: Services, raw: bytes, tenant_header: str | None) -> bytes:
    """Validate, store (or publish) and answer: the body of the 202."""
    tenant = check_tenant(tenant_header)
    data = load_json(raw)
    events = parse_events(data)
    ids = await services.sink.submit_events(
        tenant, events, data if isinstance(data, list) else [data], services.pipelines
    )
    return orjson.dumps({"accepted": len(ids), "event_ids": ids})


async def read_summary(services: Services, tenant: str, trace_id: str, wait: float = 0) -> bytes:
    """The summary as JSON; with ``wait``, once the trace is done or ``wait`` seconds pass."""
    store = services.store

    async def read() -> Summary | None:
        return await offload.read(store, lambda: store.summary(tenant, trace_id))

    if wait > 0:
        summary = await services.watcher.wait_done((tenant, trace_id), wait, read)
    else:
        summary = await read()
    if summary is None:
        raise NotFound(f"no trace {trace_id!r}")
    return summary.model_dump_json().encode()


_wait = TypeAdapter(Annotated[float, Field(ge=0, le=60)])
_SUMMARY_PREFIX = "/v1/traces/"


def summary_trace_id(scope: Scope) -> str | None:
    """The trace id of a ``GET /v1/traces/{trace_id}``, else None (other routes)."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not path.startswith(_SUMMARY_PREFIX):
        return None
    trace_id = path[len(_SUMMARY_PREFIX) :]
    if not trace_id or trace_id.endswith(("/events", "/lineage")) or len(trace_id) > TRACE_ID_MAX:
        return None  # the router answers these (and names what is wrong)
    return trace_id


async def serve_summary(
    services: Services, trace_id: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer one ``GET /v1/traces/{trace_id}`` as the route would, without the router."""
    try:
        tenant = check_tenant(_header(scope, b"waymark-tenant"))
        wait: float = 0
        for name, value in parse_qsl(scope["query_string"].decode("latin-1")):
            if name == "wait":
                try:
                    wait = _wait.validate_python(value)
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"]
                    raise invalid([{"loc": ["query", "wait"], "msg": msg}]) from exc
        body = await read_summary(services, tenant, trace_id, wait)
    except WaymarkError as exc:
        await from_error(exc)(scope, receive, send)
        return
    await _send_json(send, 200, body)


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


async def _send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def is_events_post(scope: Scope) -> bool:
    return bool(scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST")


async def serve_events(services: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``POST /v1/events`` as the route would, without the router."""
    try:
        raw = await _read_body(receive)
        body = await accept_events(services, raw, _header(scope, b"waymark-tenant"))
    except WaymarkError as exc:
        await from_error(exc)(scope, receive, send)  # the problem response, Retry-After too
        return
    await _send_json(send, 202, body)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise TooLarge(f"body is more than the limit of {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
