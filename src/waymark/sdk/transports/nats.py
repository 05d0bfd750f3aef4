"""``nats``: publish to JetStream in the bus format of :mod:`waymark.jetstream`, for the
collector.

Needs nats-py (``pip install 'waymark-status[nats]'``), imported only when this transport
is made. nats-py is asyncio-based: the transport runs one event loop in its own daemon
thread, which also answers the server's pings between batches, and the tracker's sender
waits on each publish. Each message is one :func:`waymark.jetstream.encode` of a run of
events (within the server's payload limit); its ``Nats-Msg-Id`` lets the stream's
duplicate window drop a retried publish.

The events stream is created on first connect if it does not exist yet, with the
defaults of :mod:`waymark.jetstream` that the server's bus uses too; an existing stream
is left as it is. The transport imports nothing of the server (``waymark.bus``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from waymark import jetstream, nats_credentials
from waymark.batching import split_batches
from waymark.model import now_us
from waymark.sdk.errors import ConnectionFailed, MissingExtra
from waymark.sdk.transports.base import EventDoc, Transport

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsConnection
    from nats.js import JetStreamContext

T = TypeVar("T")

MAX_EVENTS_PER_MESSAGE = 1000
PAYLOAD_OVERHEAD = 200  # the envelope around the events: tenant, received_us, brackets
RECONNECT_ATTEMPTS = 3  # then the connection closes, and the next batch makes a new one


def _require_nats() -> None:
    try:
        import nats  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("nats transport", "nats", "nats-py") from exc


async def create_missing_stream(
    js: JetStreamContext,
    stream: str = jetstream.STREAM,
    subject: str = jetstream.EVENTS_SUBJECTS,
) -> None:
    """Create the events stream if it does not exist, with the stream defaults of
    :mod:`waymark.jetstream`; an existing stream, whoever made it, is left as it is.
    (``stream`` and ``subject`` are for tests.)"""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    try:
        await js.stream_info(stream)
        return
    except NotFoundError:
        pass
    config = StreamConfig(
        name=stream,
        subjects=[subject],
        retention=RetentionPolicy(jetstream.STREAM_RETENTION),
        storage=StorageType(jetstream.STREAM_STORAGE),
        max_age=jetstream.STREAM_MAX_AGE_S,
        duplicate_window=jetstream.STREAM_DUPLICATE_WINDOW_S,
        num_replicas=jetstream.STREAM_REPLICAS,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.stream_info(stream)  # made meanwhile with other settings: theirs stand


class NatsTransport(Transport):
    kind = "nats"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        _require_nats()
        parsed = nats_credentials.parse(url)  # the stream settings of a bus URL are the server's
        self._servers, self._credentials = parsed.servers, parsed.credentials
        self.url = parsed.redacted()  # as messages may show it
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: NatsConnection | None = None
        self._js: JetStreamContext | None = None
        self._pid = os.getpid()

    def send(self, tenant: str, events: Sequence[EventDoc]) -> None:
        self._run(self._publish(tenant, events), self.timeout * 2)

    def close(self) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            self._run(self._disconnect(), self.timeout)
        except ConnectionFailed:
            pass
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout)
            self._loop.close()
            self._loop = self._thread = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the transport's loop; every failure becomes ConnectionFailed."""
        if self._pid != os.getpid():  # forked: the loop thread and connection are the parent's
            self._pid = os.getpid()
            self._loop = self._thread = None
            self._nc = self._js = None
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="waymark-nats", daemon=True
            )
            self._thread.start()
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise ConnectionFailed(f"no answer from NATS at {self.url} in {timeout:g} s") from exc
        except Exception as exc:
            raise ConnectionFailed(f"NATS at {self.url}: {type(exc).__name__}: {exc}") from exc

    async def _jetstream(self) -> tuple[NatsConnection, JetStreamContext]:
        if self._nc is None or self._nc.is_closed or self._js is None:
            self._nc = await nats_credentials.connect(
                self._servers,
                self._credentials,
                connect_timeout=max(int(self.timeout), 1),
                max_reconnect_attempts=RECONNECT_ATTEMPTS,
                reconnect_time_wait=1,
                error_cb=_quiet,
            )
            self._js = self._nc.jetstream(timeout=self.timeout)
            await create_missing_stream(self._js)
        return self._nc, self._js

    async def _publish(self, tenant: str, events: Sequence[EventDoc]) -> None:
        from nats.js.errors import NoStreamResponseError

        nc, js = await self._jetstream()
        sizes = [len(orjson.dumps(e)) + 1 for e in events]
        limit = nc.max_payload - PAYLOAD_OVERHEAD
        for run in split_batches(events, sizes, MAX_EVENTS_PER_MESSAGE, limit):
            message = jetstream.encode(tenant, run, now_us())
            try:
                await js.publish(message.subject, message.payload, headers=message.headers)
            except NoStreamResponseError:
                await create_missing_stream(js)  # the stream went away: make it again, then retry
                raise

    async def _disconnect(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        self._nc = self._js = None


async def _quiet(exc: Exception) -> None:
    """nats-py reports connection trouble here; the sender's retries already deal with it."""
