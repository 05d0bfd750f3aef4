"""What the clients ask of the ``/v1`` API and how they read the answers.

Shared by :class:`~waymark.sdk.Client` and :class:`~waymark.sdk.AsyncClient`, which differ
only in how they wait: each API call is a :class:`Call` (request and parser), and every
response goes through :func:`read` (value or error) and :func:`should_retry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel, TypeAdapter

from waymark.batching import split_batches
from waymark.lineage import Lineage
from waymark.model import MAX_BATCH, MAX_REQUEST_BYTES, Event, Summary, new_event_id
from waymark.sdk._retry import parse_retry_after
from waymark.sdk.errors import APIError, ClientError, ConnectionFailed, api_error

T = TypeVar("T")

TENANT_HEADER = "Waymark-Tenant"


# -- results ------------------------------------------------------------------------------------


class SendResult(BaseModel):
    """What ``POST /v1/events`` accepted, over every batch of one ``send``."""

    accepted: int
    event_ids: list[str]


class PathHit(BaseModel):
    """One trace that touched a path, and the event that did (``at``: its time;
    ``received_at``: when the server received it, the order of the list, latest first)."""

    trace_id: str
    event_id: str
    at: str
    received_at: str | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


_summary_page = TypeAdapter(Page[Summary])
_event_page = TypeAdapter(Page[dict[str, Any]])
_path_page = TypeAdapter(Page[PathHit])


# -- calls --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    tenant: str | None = None
    extra_read_s: float = 0.0  # a long poll holds the answer this much longer


def summary(trace_id: str, wait: float = 0.0) -> Call[Summary]:
    params = {"wait": f"{wait:.3f}"} if wait > 0 else {}
    return Call(
        "GET", f"/v1/traces/{_quote(trace_id)}", Summary.model_validate, params, extra_read_s=wait
    )


def events_page(trace_id: str, limit: int, cursor: str | None) -> Call[Page[dict[str, Any]]]:
    return Call(
        "GET",
        f"/v1/traces/{_quote(trace_id)}/events",
        _event_page.validate_python,
        _page_params({"limit": limit}, cursor),
    )


def search_page(filters: Mapping[str, Any], limit: int, cursor: str | None) -> Call[Page[Summary]]:
    params = {k: _param(v) for k, v in filters.items() if v is not None}
    return Call(
        "GET",
        "/v1/traces",
        _summary_page.validate_python,
        _page_params({**params, "limit": limit}, cursor),
    )


def paths(path: str, limit: int) -> Call[list[PathHit]]:
    return Call(
        "GET",
        "/v1/paths",
        lambda data: _path_page.validate_python(data).items,
        {"path": path, "limit": limit},
    )


def lineage_page(trace_id: str, limit: int, cursor: str | None) -> Call[Lineage]:
    return Call(
        "GET",
        f"/v1/traces/{_quote(trace_id)}/lineage",
        Lineage.model_validate,
        _page_params({"limit": limit}, cursor),
    )


def join(whole: Lineage | None, page: Lineage) -> Lineage:
    """The graph of pages read so far and the next page, as one (nodes merged by id)."""
    if whole is None:
        return page
    ids = {node.id for node in whole.nodes}
    whole.nodes += [node for node in page.nodes if node.id not in ids]
    whole.edges += page.edges
    whole.truncated, whole.next = page.truncated, page.next
    return whole


def post_events(content: bytes, tenant: str | None) -> Call[SendResult]:
    return Call("POST", "/v1/events", SendResult.model_validate, content=content, tenant=tenant)


def webhooks(
    method: str, path: str = "", *, body: Any = None, params: dict[str, Any] | None = None
) -> Call[Any]:
    """A call of ``/v1/webhooks``; its value is the answer's JSON (None for 204)."""
    content = None if body is None else orjson.dumps(body)
    return Call(method, "/v1/webhooks" + path, lambda data: data, params or {}, content)


def _quote(trace_id: str) -> str:
    return quote(trace_id, safe="")


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _page_params(params: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    return params if cursor is None else {**params, "cursor": cursor}


# -- events out ---------------------------------------------------------------------------------


def event_docs(
    events: Event | Mapping[str, Any] | Sequence[Event | Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Events as JSON-ready dicts, each with an ``event_id`` so that a retried send stores
    nothing twice."""
    items: Sequence[Event | Mapping[str, Any]] = (
        [events] if isinstance(events, Event | Mapping) else events
    )
    docs = []
    for item in items:
        doc = (
            item.model_dump(mode="json", exclude_none=True)
            if isinstance(item, Event)
            else dict(item)
        )
        if not doc.get("event_id"):
            doc["event_id"] = new_event_id()
        docs.append(doc)
    return docs


def encoded_batches(
    docs: Sequence[Mapping[str, Any]],
    max_items: int = MAX_BATCH,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> Iterator[bytes]:
    """JSON arrays of the events, each within the API's limits (count and bytes). An event
    too large on its own is sent alone, for the server to refuse by name."""
    raws = [orjson.dumps(doc, default=str) for doc in docs]
    sizes = [len(raw) + 1 for raw in raws]
    for chunk in split_batches(raws, sizes, max_items, max_bytes - 2):
        yield b"[" + b",".join(chunk) + b"]"


# -- answers ------------------------------------------------------------------------------------


def build_request(http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
    headers = {"Content-Type": "application/json"} if call.content is not None else {}
    if call.tenant is not None:
        headers[TENANT_HEADER] = call.tenant
    extensions = {}
    if call.extra_read_s:
        timeout = http.timeout
        extensions["timeout"] = httpx.Timeout(
            timeout.connect,
            read=(timeout.read or 0) + call.extra_read_s,
            write=timeout.write,
            pool=timeout.pool,
        ).as_dict()
    return http.build_request(
        call.method,
        call.path,
        params=call.params or None,
        content=call.content,
        headers=headers,
        extensions=extensions,
    )


def read(call: Call[T], response: httpx.Response) -> T:
    """The call's value from a success, else the mapped :class:`APIError`."""
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    if response.status_code == 204:
        return call.parse(None)
    if response.is_success:
        if body is None:
            raise APIError(response.status_code, "the answer is not JSON")
        try:
            return call.parse(body)
        except ValueError as exc:
            raise APIError(response.status_code, f"unexpected answer: {exc}") from exc
    raise api_error(
        response.status_code, body, parse_retry_after(response.headers.get("Retry-After"))
    )


def should_retry(error: ClientError) -> bool:
    """Connection errors, 429 and 5xx are worth another try; the rest are not."""
    if isinstance(error, ConnectionFailed):
        return True
    return isinstance(error, APIError) and (error.status == 429 or error.status >= 500)


def translate(exc: Exception) -> ClientError:
    """An httpx error as ours: network trouble is :class:`ConnectionFailed`, the rest is a
    plain :class:`ClientError`. The caller raises it ``from exc``."""
    if isinstance(exc, httpx.TransportError):
        return ConnectionFailed(f"{type(exc).__name__}: {exc}")
    return ClientError(f"{type(exc).__name__}: {exc}")


HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict)
