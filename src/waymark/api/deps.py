"""What every router of the API shares: the services, the tenant and principal of a
request (and what its datasets allow), its body, JSON answers, the way accepted events go
to the sink, and the one way a request's store calls run (in a store thread).

Routers import this module; it imports no router, so the API's modules form layers:
:mod:`waymark.api.app` on top, the routers (``v1``, the front doors, the page) under it,
and this module and :mod:`waymark.api.problems` at the bottom.
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Header, Path, Query, Request
from starlette.responses import Response

from waymark.api import metering
from waymark.auth.grants import Principal, Role
from waymark.changes import Changes
from waymark.config import StreamLimits
from waymark.errors import BadRequest, Forbidden, TooLarge
from waymark.ingest import MAX_REQUEST_BYTES, check_tenant, invalid
from waymark.model import TRACE_ID_MAX, Event, Record, Summary, dataset_of
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
    webhook_allow_private: bool = False
    #: the changes live streams follow (fed by ``watcher``), and their limits
    changes: Changes = field(default_factory=Changes)
    streams: StreamLimits = field(default_factory=StreamLimits)
    #: live streams open now (``GET /v1/stream``)
    open_streams: int = 0

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


# -- the tenant and the principal ----------------------------------------------------------

TENANT_HEADER = "Waymark-Tenant"

#: where :class:`waymark.api.access.AccessGuard` puts a request's authenticated
#: :class:`~waymark.auth.grants.Principal` in its ASGI scope (absent with auth off)
PRINCIPAL = "waymark.principal"
#: where it puts the request's tenant, once the principal may act in it
TENANT = "waymark.tenant"


def tenant_of(request: Request) -> str:
    """The request's tenant: the one the access guard allowed, else the ``Waymark-Tenant``
    header (``default`` when absent)."""
    allowed: str | None = request.scope.get(TENANT)
    if allowed is not None:
        return allowed
    return check_tenant(request.headers.get(TENANT_HEADER))


def _tenant(
    request: Request,
    value: Annotated[
        str | None, Header(alias=TENANT_HEADER, description="The tenant; `default` when absent.")
    ] = None,
) -> str:
    allowed: str | None = request.scope.get(TENANT)
    if allowed is not None:
        return allowed
    return check_tenant(value)


def principal_of(request: Request) -> Principal | None:
    """Who sent the request; None when authentication is off."""
    found: Principal | None = request.scope.get(PRINCIPAL)
    return found


def datasets_of(request: Request, role: Role = Role.READER) -> frozenset[str] | None:
    """The datasets the request may use with ``role`` in its tenant, None for all of them
    (always None with authentication off)."""
    principal = principal_of(request)
    if principal is None:
        return None
    return principal.datasets(tenant_of(request), role)


def visible(request: Request, summary: Summary | None, role: Role = Role.READER) -> Summary | None:
    """``summary`` if the request may use its trace with ``role``, else None (as if it did
    not exist)."""
    datasets = datasets_of(request, role)
    if summary is None or datasets is None or dataset_of(summary.domain_id) in datasets:
        return summary
    return None


def check_writes(
    request: Request, domain_ids: Sequence[str | None], field: str = "domain_id"
) -> None:
    """:class:`Forbidden` naming the first item (``body[i].<field>``) whose dataset (the
    part of ``domain_ids[i]`` before the first ``/``) the request's credential may not
    write."""
    datasets = datasets_of(request, Role.WRITER)
    if datasets is None:
        return
    for i, domain_id in enumerate(domain_ids):
        dataset = dataset_of(domain_id)
        if dataset not in datasets:
            at = f"body[{i}].{field}" if len(domain_ids) > 1 else f"body.{field}"
            named = "no dataset" if dataset is None else f"dataset {dataset!r}"
            allowed = ", ".join(sorted(datasets)) or "none"
            raise Forbidden(
                f"{at} names {named}; this credential may write only datasets: {allowed}",
                [{"loc": ["body", i, field], "msg": f"may not write {named}"}],
            )


def submitter(request: Request) -> str | None:
    """What the request's events record as ``submitted_by``: its principal's name."""
    principal = principal_of(request)
    return None if principal is None else principal.name


async def submit_events(
    request: Request, tenant: str, events: Sequence[Event], sent: Sequence[dict[str, Any]]
) -> list[str]:
    """Validated events of one request to the sink, once its credential may write their
    datasets; each records who submitted it. Returns their event ids."""
    check_writes(request, [e.domain_id for e in events])
    svc = services(request)
    ids = await svc.sink.submit_events(
        tenant, events, sent, svc.pipelines, submitted_by=submitter(request)
    )
    metering.accepted(request.scope, len(ids))
    return ids


async def submit_records(request: Request, records: Sequence[Record]) -> None:
    """Records made by a front door to the sink, as :func:`submit_events` does events."""
    check_writes(request, [r.domain_id for r in records])
    by = submitter(request)
    if by is not None:
        for record in records:
            record.doc["submitted_by"] = by
    await services(request).sink.submit(records)
    metering.accepted(request.scope, len(records))


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
#: a page's cursor, as a previous page's ``next_cursor`` gave it
Cursor = Annotated[str | None, Query(max_length=2000)]
#: the most items of a trace's list (events, errors, paths) on a page
ItemLimit = Annotated[int, Query(ge=1, le=1000)]


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
