"""``GET /v1/stream``: the summaries of a tenant's traces as they change, as Server-Sent
Events, from this process's change record (:mod:`waymark.changes`).

Messages:

- ``event: summary``, ``id: <epoch>-<n>``, ``data:`` the trace's summary (as ``GET
  /v1/traces/{id}`` answers it): one per change of a trace the filters and the
  credential's datasets let through. When a trace changes again before a stream has sent
  its change, the stream sends only the later one.
- ``event: reset``, ``data: {"reason": ...}``: the ``Last-Event-ID`` the client resumed
  from is not of this process or has left the window, or the client fell so far behind
  that the changes it had not read left it; changes may have been missed, so the client
  lists the traces again. The stream goes on live from there.
- ``event: ready`` first on a stream that gave no ``Last-Event-ID``: its ``id`` is where
  it started, so that a client that reconnects before any change still misses none.
- a comment (``: keep-alive``) with the stream's position as ``id`` every
  ``keep_alive_s`` when nothing was sent.

A stream holds no worker: it waits on the event loop for the next change. A client that
does not take a message within ``send_timeout_s`` is dropped (what a stream buffers is
its connection's write buffer and one message); at a graceful shutdown every stream ends
its answer, so the server does not wait on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from waymark.api.deps import Services, Tenant, datasets_of, services
from waymark.changes import Behind, Changes
from waymark.config import StreamLimits
from waymark.errors import Unavailable, WaymarkError
from waymark.model import State, Summary, dataset_of
from waymark.server import CONNECTION, Connection

router = APIRouter(prefix="/v1", tags=["v1"])
log = logging.getLogger("waymark.api")

MEDIA_TYPE = "text/event-stream"


def message(event: str, event_id: str, data: bytes) -> bytes:
    """One SSE message. ``data`` is JSON (one line: orjson and pydantic write no newline)."""
    head = b"event: " + event.encode() + b"\nid: " + event_id.encode()
    return head + b"\ndata: " + data + b"\n\n"


class Filters:
    """What a stream sends: summaries of these states, datasets (as search's ``dataset``:
    the ``domain_id`` is one, or begins with one and ``/``) and current components (the
    deciding event's ``component``); an empty filter lets everything through. ``allowed``:
    the datasets the credential may read (None: all)."""

    def __init__(
        self,
        states: list[State],
        datasets: list[str],
        components: list[str],
        allowed: frozenset[str] | None,
    ) -> None:
        self.states = frozenset(states)
        self.datasets = tuple(datasets)
        self.components = frozenset(components)
        self.allowed = allowed

    def let_through(self, summary: Summary) -> bool:
        if self.allowed is not None and dataset_of(summary.domain_id) not in self.allowed:
            return False
        if self.states and summary.state not in self.states:
            return False
        if self.components and summary.current.component not in self.components:
            return False
        if self.datasets:
            domain_id = summary.domain_id or ""
            return any(domain_id == d or domain_id.startswith(d + "/") for d in self.datasets)
        return True


async def messages(
    svc: Services, changes: Changes, tenant: str, filters: Filters, last_event_id: str | None
) -> AsyncIterator[bytes]:
    """The stream's messages, without end."""
    limits = svc.streams
    position = changes.position(last_event_id)
    at = position.after
    if position.reset is not None:
        yield message("reset", changes.event_id(at), orjson.dumps({"reason": position.reset}))
    elif last_event_id is None:
        yield message("ready", changes.event_id(at), b"{}")
    quiet = asyncio.get_running_loop().time()
    while True:
        try:
            change = changes.next_after(at)
        except Behind:
            at = changes.head
            reason = "this stream fell behind the changes the server keeps: list the traces again"
            yield message("reset", changes.event_id(at), orjson.dumps({"reason": reason}))
            continue
        if change is None:
            waited = asyncio.get_running_loop().time() - quiet
            if waited >= limits.keep_alive_s:
                yield b": keep-alive\nid: " + changes.event_id(at).encode() + b"\n\n"
                quiet = asyncio.get_running_loop().time()
                continue
            await changes.moved(limits.keep_alive_s - waited)
            continue
        at = change.number
        if change.key[0] != tenant or change.superseded:
            continue
        try:
            sent = await changes.read(change, svc.summaries.read)
        except WaymarkError as exc:  # the store cannot be read now: the client resumes later
            log.warning("a live stream ends: reading a change failed: %s", exc)
            return
        if sent is None or not filters.let_through(sent.summary):
            continue
        yield message("summary", changes.event_id(at), sent.json)
        quiet = asyncio.get_running_loop().time()


class EventStream(Response):
    """An answer of SSE messages that ends only when the client goes, the client does not
    read for ``send_timeout_s``, or the server shuts down (see the module's docstring)."""

    media_type = MEDIA_TYPE

    def __init__(self, body: AsyncIterator[bytes], send_timeout_s: float, svc: Services) -> None:
        # as StreamingResponse does: no body, so no content-length
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-store", "x-accel-buffering": "no"})
        self.body_iterator = body
        self.send_timeout_s = send_timeout_s
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection: Connection | None = scope.get("extensions", {}).get(CONNECTION)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            writing = asyncio.ensure_future(self._write(send, connection))
            gone = asyncio.ensure_future(_disconnected(receive))
            ending: list[asyncio.Future[Any]] = [writing, gone]
            if connection is not None:
                ending.append(asyncio.ensure_future(connection.closing.wait()))
            try:
                await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
                dropped = writing.done() and not writing.cancelled() and writing.result()
                if dropped:  # end once the server has seen the connection go
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(gone), 1)
            finally:
                for task in ending:
                    task.cancel()
                for task in ending:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if (gone.done() and not gone.cancelled()) or dropped:
                return
            # the messages ended (the store failed) or the server shuts down: end the
            # answer, so that the client reconnects and the server need not wait for it
            with contextlib.suppress(TimeoutError, OSError):
                end: Any = {"type": "http.response.body", "body": b"", "more_body": False}
                await asyncio.wait_for(send(end), self.send_timeout_s)
        finally:
            self.svc.open_streams -= 1

    async def _write(self, send: Send, connection: Connection | None) -> bool:
        """Send the messages until they end (False), or until the client is dropped for
        not taking one (True)."""
        async with contextlib.aclosing(self.body_iterator) as body:  # type: ignore[type-var]
            async for chunk in body:
                part: Any = {"type": "http.response.body", "body": chunk, "more_body": True}
                try:
                    await asyncio.wait_for(send(part), self.send_timeout_s)
                except TimeoutError:
                    log.warning(
                        "dropped a live stream whose client read nothing for %g s",
                        self.send_timeout_s,
                    )
                    if connection is None:
                        raise
                    connection.close()
                    return True
        return False


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@router.get(
    "/stream",
    summary="The tenant's trace summaries as they change (Server-Sent Events)",
    response_class=Response,
)
async def stream(
    request: Request,
    tenant: Tenant,
    state: Annotated[
        list[State] | None, Query(description="only summaries in these states (repeat)")
    ] = None,
    dataset: Annotated[
        list[str] | None,
        Query(
            max_length=100,
            description="only traces of these datasets: domain_id is one, or begins with"
            " one and '/' (repeat)",
        ),
    ] = None,
    component: Annotated[
        list[str] | None,
        Query(
            max_length=100,
            description="only traces whose current (deciding) event is of one of these"
            " components (repeat)",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=100,
            description="the id of the last message seen: resume after it",
        ),
    ] = None,
) -> Response:
    """One message per change of a trace's summary, for as long as the client reads:
    `event: summary` with the summary, `event: reset` when changes may have been missed
    (list the traces again), `event: ready` first on a new stream. `Last-Event-ID` resumes
    after the message it names, without a gap, within the server's window (the last
    10,000 changes and 5 minutes, by default). A trace that changed several times before
    the stream sent it is sent once, as it stands."""
    svc = services(request)
    limits: StreamLimits = svc.streams
    if svc.open_streams >= limits.max_streams:
        raise Unavailable(
            f"this server process has {limits.max_streams} live streams open: try again shortly",
            retry_after=5,
        )
    filters = Filters(state or [], dataset or [], component or [], datasets_of(request))
    body = messages(svc, svc.changes, tenant, filters, last_event_id)
    svc.open_streams += 1
    return EventStream(body, limits.send_timeout_s, svc)
