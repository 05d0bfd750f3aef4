"""The HTTP server as ``waymark serve`` runs it: uvicorn, with limits on slow and idle
clients (:class:`~waymark.config.ClientLimits`).

uvicorn closes a keep-alive connection that is idle after a response
(``timeout_keep_alive``), and that is all: a connection that never sends a request, a
request head that never ends, or a body that stops half-way holds its socket and, for a
body, a request task, for as long as the client likes; and its ``limit_concurrency``
answers 503 in plain text. :class:`GuardedProtocol`, its HTTP protocol with these added,
is the one place they are enforced:

- **request head**: a new connection has ``header_timeout_s`` to send a whole request
  head, and so has each request from its first byte; then it is answered 408 and closed;
- **body**: a body that stalls (no byte) for ``body_timeout_s`` is answered 408 and the
  connection closed; the handler reading it sees the client gone;
- **keep-alive**: an idle connection between requests is closed after ``keep_alive_s``
  (uvicorn's own timer);
- **connections**: a worker holding more than ``max_connections`` answers each request
  503 (problem details, ``Retry-After``) and closes its connection.

A response that never ends by itself (a live stream) is told of a graceful shutdown, and
can drop its connection, through :class:`Connection`, which each request's scope carries
as the extension :data:`CONNECTION`. No timer runs while a response is being sent, so
streams are cut by none of the limits above; they count as connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from waymark.config import ClientLimits
from waymark.logs import LogFormat, log_config

#: what a refused request is told to wait before it tries again, in seconds
RETRY_AFTER_S = 1

#: the name of :class:`Connection` in a request scope's ``extensions``
CONNECTION = "waymark.connection"


class Connection:
    """What a response may know of and do to its connection: ``closing`` is set when the
    server begins a graceful shutdown (uvicorn waits for every response to end before it
    stops); :meth:`close` drops the connection at once, with whatever it had not sent."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.closing = asyncio.Event()
        self._transport = transport

    def close(self) -> None:
        self._transport.abort()  # close() would wait to send the buffer the client is not taking


def _problem_body(status: int, title: str, detail: str) -> bytes:
    return orjson.dumps({"type": "about:blank", "status": status, "title": title, "detail": detail})


def _problem(status: int, title: str, detail: str) -> bytes:
    """A whole HTTP/1.1 answer: problem details, and the connection closed after it."""
    body = _problem_body(status, title, detail)
    return (
        f"HTTP/1.1 {status} {title}\r\n".encode()
        + b"content-type: application/problem+json\r\n"
        + f"content-length: {len(body)}\r\n".encode()
        + b"connection: close\r\n\r\n"
        + body
    )


@functools.cache
def limits() -> ClientLimits:
    """This process's limits, from the environment (as ``waymark serve`` sets it for its
    workers), read once."""
    return ClientLimits.resolve()


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :mod:`waymark.server`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits()
        self.timeout_keep_alive = self.limits.keep_alive_s  # type: ignore[assignment]  # seconds, any number
        self._timer: asyncio.TimerHandle | None = None
        self._connection: Connection | None = None

    # -- timers: one at a time, for the head or for the body ----------------------------------

    def _arm(self, seconds: float, on_expiry: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, on_expiry)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._connection = Connection(transport)
        self._arm(self.limits.header_timeout_s, self._head_too_slow)

    def shutdown(self) -> None:
        if self._connection is not None:
            self._connection.closing.set()
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {CONNECTION: self._connection}  # type: ignore[dict-item]
        self._arm(self.limits.header_timeout_s, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._arm(self.limits.body_timeout_s, self._body_stalled)
        if len(self.connections) <= self.limits.max_connections:
            super().on_headers_complete()
            return
        app, self.app = self.app, self._refuse
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.limits.body_timeout_s, self._body_stalled)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # -- what happens when a limit is reached ----------------------------------------------------

    def _head_too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no request is being answered
            detail = f"no complete request head within {self.limits.header_timeout_s:g} s"
            self.transport.write(_problem(408, "Request Timeout", detail))
        self.transport.close()

    def _body_stalled(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            detail = f"the request body stalled for {self.limits.body_timeout_s:g} s"
            self.transport.write(_problem(408, "Request Timeout", detail))
        if cycle is not None:
            cycle.disconnected = True  # the handler's next receive sees the client gone
            cycle.message_event.set()
        self.transport.close()

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        detail = (
            f"this server worker holds more than {self.limits.max_connections} connections:"
            " try again shortly"
        )
        body = _problem_body(503, "Service Unavailable", detail)
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def run(
    app: str,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    log_format: LogFormat = LogFormat.text,
) -> None:
    """Serve the app factory ``app`` (``module:function``) with uvicorn and the limits of
    the environment (:func:`limits`), logging in ``log_format``.

    With several workers, their metrics meet in a multiprocess directory
    (:func:`waymark.metrics.private_directory`), set up before they start."""
    import uvicorn

    from waymark import metrics

    shared = metrics.private_directory() if workers > 1 else contextlib.nullcontext()
    with shared:
        uvicorn.run(
            app,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=log_config(log_format, log_level),
            access_log=False,
            http=GuardedProtocol,
        )
