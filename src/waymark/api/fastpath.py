"""``POST /v1/events`` served straight from ASGI: the hot path of every producer.

FastAPI's middleware, routing and dependency resolution cost more per request
than validating and storing a small event, so the app (:class:`waymark.api.app.
WaymarkApp`) answers the one endpoint that producers call thousands of times a
second before any of that runs. It runs the same :func:`accept_events` as the
documented route in :mod:`waymark.api.v1`, and answers errors with the same
problem details. (FastAPI's OpenTelemetry hooks do not see these requests.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from starlette.types import Message, Receive, Scope, Send

from waymark.api.problems import from_error
from waymark.errors import TooLarge, WaymarkError
from waymark.ingest import MAX_REQUEST_BYTES, check_tenant, load_json, parse_events

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


def is_events_post(scope: Scope) -> bool:
    return bool(scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST")


async def serve_events(services: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``POST /v1/events`` as the route would, without the router."""
    tenant = None
    for name, value in scope["headers"]:
        if name == b"waymark-tenant":
            tenant = value.decode("latin-1")
    try:
        raw = await _read_body(receive)
        body = await accept_events(services, raw, tenant)
    except WaymarkError as exc:
        await from_error(exc)(scope, receive, send)  # the problem response, Retry-After too
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
