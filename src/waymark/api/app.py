"""The application factory: one stateless app, whatever the store and sink behind it."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from waymark.api import gsm, okdata, openlineage, page, problems, v1
from waymark.api.fastpath import is_events_post, serve_events, serve_summary, summary_trace_id
from waymark.bus import sink_for
from waymark.config import Settings
from waymark.pipelines import Pipelines, load
from waymark.sink import Sink
from waymark.store import Store, open_store
from waymark.watch import Watcher


@dataclass
class Services:
    """What every request handler may use; kept on ``app.state.services``."""

    store: Store
    sink: Sink
    watcher: Watcher
    pipelines: Pipelines


class WaymarkApp(FastAPI):
    """FastAPI, with ``POST /v1/events`` and ``GET /v1/traces/{trace_id}`` answered before
    the middleware stack (:mod:`waymark.api.fastpath`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_events_post(scope):
            await serve_events(self.state.services, scope, receive, send)
            return
        trace_id = summary_trace_id(scope)
        if trace_id is not None:
            await serve_summary(self.state.services, trace_id, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def load_pipelines(settings: Settings) -> Pipelines:
    if not settings.pipelines:
        return Pipelines()
    return load(settings.pipelines)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    sink: Sink | None = None,
    pipelines: Pipelines | None = None,
) -> FastAPI:
    """Build the app. Anything not passed in is opened from ``settings`` at startup and
    closed at shutdown; what is passed in stays the caller's to close."""
    settings = settings or Settings.resolve()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rules = pipelines or load_pipelines(settings)
        the_store = (
            store
            if store is not None
            else await run_in_threadpool(open_store, settings.store, rules)
        )
        watcher = Watcher(commit_marker=the_store.commit_marker)
        the_sink = sink or sink_for(settings.bus, the_store, watcher)
        await the_sink.start()
        app.state.services = Services(the_store, the_sink, watcher, rules)
        try:
            yield
        finally:
            if sink is None:
                await the_sink.close()
            if store is None:
                await run_in_threadpool(the_store.close)

    app = WaymarkApp(
        title="Waymark",
        summary="Status tracking for asynchronous data pipelines",
        version="0.1.0",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(v1.router)
    app.include_router(okdata.router)
    app.include_router(gsm.router)
    app.include_router(openlineage.router)
    app.include_router(page.router)

    @app.get("/healthz", tags=["health"])
    async def healthz(request: Request) -> Response:
        services: Services = request.app.state.services
        await run_in_threadpool(services.store.ping)
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


#: the collector's first threshold in a server process (Python's default is 700).
SERVER_GC_THRESHOLD = 10_000


def serve_app() -> FastAPI:
    """The app as ``waymark serve`` runs it in each worker: :func:`create_app`, with the
    cyclic garbage collector started less often.

    A 500-event batch makes some ten thousand short-lived containers (models, dicts,
    records, rows) that reference counting frees when the batch is answered; with the
    default threshold they set off about twenty young collections per batch, and every
    tenth of those an older one: 3% of the instructions of a batch, and more of its time.
    Cycles are still collected, after 10,000 net new containers instead of 700.
    """
    gc.set_threshold(SERVER_GC_THRESHOLD, 10, 10)
    return create_app()
