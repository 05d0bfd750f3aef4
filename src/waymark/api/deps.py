"""What every router of the API shares: the services, the tenant of a request, its body,
JSON answers, and the one way a request's store calls run (in a store thread).

Routers import this module; it imports no router, so the API's modules form layers:
:mod:`waymark.api.app` on top, the routers (``v1``, the front doors, the page) under it,
and this module and :mod:`waymark.api.problems` at the bottom.
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Header, Path, Request
from starlette.responses import Response

from waymark.errors import BadRequest, TooLarge
from waymark.ingest import MAX_REQUEST_BYTES, check_tenant, invalid
from waymark.model import TRACE_ID_MAX, Summary
from waymark.pipelines import Pipelines
from waymark.sink import Sink
from waymark.store import Store
from waymark.watch import Watcher

T = TypeVar("T")

#: threads that run a worker's store calls: enough for quick reads to go on beside a slow
#: one (a large trace's lineage, a search that filters much); a PostgreSQL store's pool
#: bounds how many of them talk to the server at once.
STORE_THREADS = 16


@dataclass
class Services:
    """What every request handler may use; kept on ``app.state.services``."""

    store: Store
    sink: Sink
    watcher: Watcher
    pipelines: Pipelines
    threads: ThreadPoolExecutor

    def __post_init__(self) -> None:
        #: where requests read summaries: :meth:`SummaryReads.read`
        self.summaries = SummaryReads(self)

    async def in_thread(self, call: Callable[..., T], *args: Any) -> T:
        """Run ``call(*args)`` in a store thread and await its result: every store call of
        a request goes through here, so that no read or write holds the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.threads, call, *args)


class SummaryReads:
    """Summary reads of concurrent requests, read together (:meth:`read`).

    A hand-off to a store thread costs more CPU than a SQLite summary read, so the reads
    that arrive while a group is in a thread wait and go as the next group, one hand-off
    and one :meth:`Store.summaries <waymark.store.base.Store.summaries>` per tenant for
    all of them. Up to :attr:`GROUPS` groups are read at once, so that one slow read holds
    up few others; a failed group's error goes to each of its readers.
    """

    GROUPS = 4
    MAX_GROUP = 100

    def __init__(self, services: Services) -> None:
        self.services = services
        self._waiting: dict[tuple[str, str], list[asyncio.Future[Summary | None]]] = {}
        self._groups: set[asyncio.Task[None]] = set()

    async def read(self, tenant: str, trace_id: str) -> Summary | None:
        """The trace's summary, or None if it has no events."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Summary | None] = loop.create_future()
        self._waiting.setdefault((tenant, trace_id), []).append(done)
        if len(self._groups) < self.GROUPS:
            task = loop.create_task(self._drain())
            self._groups.add(task)
            task.add_done_callback(self._groups.discard)
        return await done

    async def _drain(self) -> None:
        while self._waiting:
            keys = list(itertools.islice(self._waiting, self.MAX_GROUP))
            group = {key: self._waiting.pop(key) for key in keys}
            try:
                found = await self.services.in_thread(self._read, keys)
            except BaseException as exc:
                for readers in group.values():
                    for done in readers:
                        _settle(done, None, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for key, readers in group.items():
                for done in readers:
                    _settle(done, found.get(key), None)

    def _read(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Summary]:
        by_tenant: dict[str, list[str]] = {}
        for tenant, trace_id in keys:
            by_tenant.setdefault(tenant, []).append(trace_id)
        return {
            (tenant, summary.trace_id): summary
            for tenant, trace_ids in by_tenant.items()
            for summary in self.services.store.summaries(tenant, trace_ids)
        }


def _settle(
    done: asyncio.Future[Summary | None], result: Summary | None, exc: BaseException | None
) -> None:
    if done.done():  # its reader went away
        return
    if isinstance(exc, asyncio.CancelledError):
        done.cancel()
    elif exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)


def store_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="waymark-store")


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


# -- the tenant ---------------------------------------------------------------------------

TENANT_HEADER = "Waymark-Tenant"


def tenant_of(request: Request) -> str:
    """The request's tenant, from the ``Waymark-Tenant`` header (``default`` when absent)."""
    return check_tenant(request.headers.get(TENANT_HEADER))


def _tenant(
    value: Annotated[
        str | None, Header(alias=TENANT_HEADER, description="The tenant; `default` when absent.")
    ] = None,
) -> str:
    return check_tenant(value)


#: A route parameter: the request's tenant, checked (and documented in OpenAPI).
Tenant = Annotated[str, Depends(_tenant)]

#: The OpenAPI description of the tenant header, for routes that read it with :func:`tenant_of`.
TENANT_PARAMETER: dict[str, Any] = {
    "name": TENANT_HEADER,
    "in": "header",
    "required": False,
    "description": "The tenant; `default` when absent.",
    "schema": {"type": "string", "maxLength": TRACE_ID_MAX},
}

TraceIdPath = Annotated[str, Path(min_length=1, max_length=TRACE_ID_MAX)]


# -- what no store can hold -----------------------------------------------------------------

NUL_MSG = "must not contain a NUL character (\\u0000)"


def refuse_nul(request: Request) -> None:
    """Every route's dependency: a NUL character in a path or query parameter is refused
    (422 naming it), as :mod:`waymark.storable` refuses one in a body. PostgreSQL cannot
    take one in a query's text, and no stored value holds one."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise invalid([{"loc": ["path", name], "msg": NUL_MSG}])
    if b"%00" in request.scope["query_string"]:
        for name, value in request.query_params.multi_items():
            if "\x00" in name or "\x00" in value:
                raise invalid([{"loc": ["query", name.replace("\x00", "\\u0000")], "msg": NUL_MSG}])


# -- the body -----------------------------------------------------------------------------


async def read_body(request: Request, *, gzip: bool = False) -> bytes:
    """The request's body, refused (:class:`TooLarge`) as soon as it passes
    :data:`~waymark.ingest.MAX_REQUEST_BYTES`; with ``gzip``, a body sent with
    ``Content-Encoding: gzip`` is inflated, within the same limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise TooLarge(f"body is {declared} bytes, more than the limit of {MAX_REQUEST_BYTES}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise TooLarge(f"body is more than the limit of {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if gzip and request.headers.get("content-encoding", "").lower() == "gzip":
        return gunzip(raw)
    return raw


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


# -- answers ------------------------------------------------------------------------------


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def json_bytes(body: bytes, status: int = 200) -> Response:
    """An answer whose JSON is already encoded."""
    return Response(body, status_code=status, media_type="application/json")
