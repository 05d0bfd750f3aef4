"""Clients for the ``/v1`` API: :class:`Client` (blocking) and :class:`AsyncClient`.

Both retry connection errors, 429 and 5xx with backoff and full jitter, honouring the
server's ``Retry-After``; both raise only the errors of :mod:`waymark.sdk.errors`.

>>> with Client("http://127.0.0.1:8000", tenant="opendes") as client:   # doctest: +SKIP
...     client.send({"trace_id": "t-1", "stage": "UPLOAD", "trace_status": "STARTED"})
...     final = client.wait("t-1", timeout=300)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from waymark.config import server_url
from waymark.lineage import Lineage
from waymark.model import Event, Summary
from waymark.sdk import _api
from waymark.sdk._api import Call, PathHit, SendResult
from waymark.sdk._retry import Backoff
from waymark.sdk.errors import ClientError, ConnectionFailed, TraceNotFound, WaitTimeout
from waymark.sdk.stream import READ_TIMEOUT_S, Messages, StreamMessage

T = TypeVar("T")

EventsIn = Event | Mapping[str, Any] | Sequence[Event | Mapping[str, Any]]

LONG_POLL_MAX_S = 60.0  # the server holds a ``?wait`` at most this long
NOT_FOUND_PAUSE_S = 0.2


class _Settings:
    """What both clients are configured with; resolved once here."""

    def __init__(
        self,
        url: str | None,
        tenant: str | None,
        token: str | None,
        retries: int,
        backoff: Backoff | None,
    ) -> None:
        self.url = server_url(url)
        self.tenant = tenant if tenant is not None else os.environ.get("WAYMARK_TENANT") or None
        self.token = token if token is not None else os.environ.get("WAYMARK_TOKEN") or None
        self.retries = retries
        self.backoff = backoff or Backoff()

    def headers(self) -> dict[str, str]:
        headers = {_api.TENANT_HEADER: self.tenant} if self.tenant else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def delay(self, attempt: int, error: ClientError) -> float | None:
        """Seconds to wait before the next try, or None to give up with ``error``."""
        if attempt >= self.retries or not _api.should_retry(error):
            return None
        return self.backoff.delay(attempt, error.retry_after)


class Client:
    """A blocking client for the ``/v1`` API.

    ``url`` defaults to ``WAYMARK_URL`` (else ``http://127.0.0.1:8000``); ``tenant`` to
    ``WAYMARK_TENANT`` (else the server's ``default``); ``token`` (an API key or an OpenID
    Connect access token, sent as ``Authorization: Bearer``) to ``WAYMARK_TOKEN`` (else
    none). ``retries`` is the number of extra
    tries after a connection error, 429 or 5xx. ``transport`` is passed to httpx (tests use
    ``httpx.MockTransport``).
    """

    def __init__(
        self,
        url: str | None = None,
        tenant: str | None = None,
        timeout: float = 10.0,
        *,
        token: str | None = None,
        retries: int = 3,
        backoff: Backoff | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = _Settings(url, tenant, token, retries, backoff)
        self._http = httpx.Client(
            base_url=self._settings.url,
            timeout=timeout,
            headers=self._settings.headers(),
            transport=transport,
        )

    @property
    def url(self) -> str:
        return self._settings.url

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                try:
                    response = self._http.send(_api.build_request(self._http, call))
                except _api.HTTPX_ERRORS as exc:
                    raise _api.translate(exc) from exc
                return _api.read(call, response)
            except ClientError as error:
                pause = self._settings.delay(attempt, error)
                if pause is None:
                    raise
            time.sleep(pause)
            attempt += 1

    def send(self, events: EventsIn, *, tenant: str | None = None) -> SendResult:
        """Send one event or many (batched within the API's limits); ids are set here, so a
        retry never stores an event twice. ``tenant`` overrides the client's for this call."""
        accepted, ids = 0, []
        for body in _api.encoded_batches(_api.event_docs(events)):
            result = self._call(_api.post_events(body, tenant))
            accepted += result.accepted
            ids.extend(result.event_ids)
        return SendResult(accepted=accepted, event_ids=ids)

    def summary(self, trace_id: str) -> Summary:
        """Where the trace stands; :class:`TraceNotFound` if it has no events."""
        return self._call(_api.summary(trace_id))

    def stream(
        self,
        *,
        state: Sequence[str] = (),
        dataset: Sequence[str] = (),
        component: Sequence[str] = (),
        last_event_id: str | None = None,
    ) -> Iterator[StreamMessage]:
        """The tenant's trace summaries as they change (``GET /v1/stream``), without end.

        Filters keep to summaries in one of the ``state`` values, traces of one of the
        ``dataset`` values and whose current component is one of ``component``. A lost
        connection is made again (with the client's retries and backoff, counted from the
        last message) and resumed from the last id seen, so nothing is missed within the
        server's window; a ``reset`` message says when changes may have been missed (list
        the traces again). ``last_event_id`` resumes an earlier stream."""
        params = {"state": list(state), "dataset": list(dataset), "component": list(component)}
        messages = Messages(last_event_id)
        timeout = httpx.Timeout(self._http.timeout.connect, read=READ_TIMEOUT_S)
        attempt = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if messages.last_event_id:
                headers["Last-Event-ID"] = messages.last_event_id
            try:
                try:
                    with self._http.stream(
                        "GET", "/v1/stream", params=params, headers=headers, timeout=timeout
                    ) as response:
                        if response.status_code != 200:
                            response.read()
                            _api.read(_api.Call("GET", "/v1/stream", dict), response)
                        for line in response.iter_lines():
                            message = messages.feed(line)
                            if message is not None:
                                attempt = 0
                                yield message
                except _api.HTTPX_ERRORS as exc:
                    raise _api.translate(exc) from exc
                error: ClientError = ConnectionFailed("the server ended the stream")
            except ClientError as failed:
                error = failed
            pause = self._settings.delay(attempt, error)
            if pause is None:
                raise error
            time.sleep(pause)
            attempt += 1

    # -- webhooks (the admin role) ----------------------------------------------------------

    def create_webhook(
        self,
        url: str,
        events: Sequence[str],
        *,
        dataset: str | None = None,
        component: str | None = None,
    ) -> dict[str, Any]:
        """Subscribe ``url``; the answer holds the signing ``secret``, shown only now."""
        body = {"url": url, "events": list(events), "dataset": dataset, "component": component}
        created: dict[str, Any] = self._call(_api.webhooks("POST", body=body))
        return created

    def webhooks(self, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """The tenant's subscriptions, oldest first (never their secrets)."""
        cursor = None
        while True:
            params = {"limit": page_size, **({"cursor": cursor} if cursor else {})}
            page = self._call(_api.webhooks("GET", params=params))
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def webhook(self, webhook_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call(_api.webhooks("GET", f"/{quote(webhook_id, safe='')}"))
        return found

    def delete_webhook(self, webhook_id: str) -> None:
        self._call(_api.webhooks("DELETE", f"/{quote(webhook_id, safe='')}"))

    def webhook_deliveries(self, webhook_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The subscription's latest delivery attempts, latest first."""
        path = f"/{quote(webhook_id, safe='')}/deliveries"
        items: list[dict[str, Any]] = self._call(
            _api.webhooks("GET", path, params={"limit": limit})
        )["items"]
        return items

    def events(self, trace_id: str, *, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every event of the trace in order, fetching page after page."""
        cursor: str | None = None
        while True:
            page = self._call(_api.events_page(trace_id, page_size, cursor))
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def search(self, *, page_size: int = 100, **filters: Any) -> Iterator[Summary]:
        """Traces matching ``filters`` (``domain``, ``domain_id``, ``component``, ``stage``,
        ``state``, ``done``, ``user``, ``since``, ``until``), most recently updated first."""
        cursor: str | None = None
        while True:
            page = self._call(_api.search_page(filters, page_size, cursor))
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def paths(self, path: str, *, limit: int = 100) -> list[PathHit]:
        """Every trace that touched ``path``."""
        return self._call(_api.paths(path, limit))

    def lineage(self, trace_id: str, *, page_size: int = 1000) -> Lineage:
        """The trace's whole lineage graph, fetching page after page."""
        whole: Lineage | None = None
        cursor: str | None = None
        while True:
            whole = _api.join(whole, self._call(_api.lineage_page(trace_id, page_size, cursor)))
            if not whole.next:
                return whole
            cursor = whole.next

    def wait(self, trace_id: str, timeout: float) -> Summary:
        """Long-poll until the trace is done; :class:`WaitTimeout` if it is not in time."""
        deadline = time.monotonic() + timeout
        last: Summary | None = None
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                last = self._call(_api.summary(trace_id, min(remaining, LONG_POLL_MAX_S)))
            except TraceNotFound:
                time.sleep(min(NOT_FOUND_PAUSE_S, max(deadline - time.monotonic(), 0)))
                continue
            if last.done:
                return last
        raise WaitTimeout(trace_id, timeout, last)


class AsyncClient:
    """The same API as :class:`Client`, for asyncio: every method is awaited, and
    :meth:`events` and :meth:`search` are async iterators."""

    def __init__(
        self,
        url: str | None = None,
        tenant: str | None = None,
        timeout: float = 10.0,
        *,
        token: str | None = None,
        retries: int = 3,
        backoff: Backoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = _Settings(url, tenant, token, retries, backoff)
        self._http = httpx.AsyncClient(
            base_url=self._settings.url,
            timeout=timeout,
            headers=self._settings.headers(),
            transport=transport,
        )

    @property
    def url(self) -> str:
        return self._settings.url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                try:
                    response = await self._http.send(_api.build_request(self._http, call))
                except _api.HTTPX_ERRORS as exc:
                    raise _api.translate(exc) from exc
                return _api.read(call, response)
            except ClientError as error:
                pause = self._settings.delay(attempt, error)
                if pause is None:
                    raise
            await asyncio.sleep(pause)
            attempt += 1

    async def send(self, events: EventsIn, *, tenant: str | None = None) -> SendResult:
        accepted, ids = 0, []
        for body in _api.encoded_batches(_api.event_docs(events)):
            result = await self._call(_api.post_events(body, tenant))
            accepted += result.accepted
            ids.extend(result.event_ids)
        return SendResult(accepted=accepted, event_ids=ids)

    async def summary(self, trace_id: str) -> Summary:
        return await self._call(_api.summary(trace_id))

    async def events(self, trace_id: str, *, page_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = await self._call(_api.events_page(trace_id, page_size, cursor))
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def search(self, *, page_size: int = 100, **filters: Any) -> AsyncIterator[Summary]:
        cursor: str | None = None
        while True:
            page = await self._call(_api.search_page(filters, page_size, cursor))
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def paths(self, path: str, *, limit: int = 100) -> list[PathHit]:
        return await self._call(_api.paths(path, limit))

    async def lineage(self, trace_id: str, *, page_size: int = 1000) -> Lineage:
        whole: Lineage | None = None
        cursor: str | None = None
        while True:
            page = await self._call(_api.lineage_page(trace_id, page_size, cursor))
            whole = _api.join(whole, page)
            if not whole.next:
                return whole
            cursor = whole.next

    async def wait(self, trace_id: str, timeout: float) -> Summary:
        deadline = time.monotonic() + timeout
        last: Summary | None = None
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                last = await self._call(_api.summary(trace_id, min(remaining, LONG_POLL_MAX_S)))
            except TraceNotFound:
                await asyncio.sleep(min(NOT_FOUND_PAUSE_S, max(deadline - time.monotonic(), 0)))
                continue
            if last.done:
                return last
        raise WaitTimeout(trace_id, timeout, last)
