"""The application factory: one stateless app, whatever the store and sink behind it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from waymark import metrics, retention
from waymark.api import (
    access,
    description,
    gsm,
    health,
    hosts,
    metering,
    okdata,
    openlineage,
    page,
    problems,
    stepfunctions,
    stream,
    v1,
    webhooks,
)
from waymark.api.deps import Services, refuse_nul, store_threads
from waymark.auth.authenticators import build_authenticators
from waymark.bus import sink_for
from waymark.changes import Changes
from waymark.config import Settings
from waymark.notify import Notifier, StallSweep, running
from waymark.pipelines import Pipelines, load
from waymark.sink import DirectSink, Sink
from waymark.store import Store, log_durability_warnings, open_store
from waymark.store.base import ApiKey
from waymark.watch import Watcher


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
    guard_hosts: bool = False,
) -> FastAPI:
    """Build the app. Anything not passed in is opened from ``settings`` at startup and
    closed at shutdown; what is passed in stays the caller's to close. ``guard_hosts``:
    with authentication off, answer only loopback and allowed ``Host`` names
    (:mod:`waymark.api.hosts`), as the served app does (:func:`serve_app`)."""
    settings = settings or Settings.resolve()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rules = pipelines or load_pipelines(settings)
        the_store = (
            store
            if store is not None
            else await run_in_threadpool(open_store, settings.store, rules)
        )
        await run_in_threadpool(log_durability_warnings, the_store)
        watcher = Watcher(counts=the_store.event_counts, commit_marker=the_store.commit_marker)
        the_sink = sink or sink_for(settings.bus, the_store, watcher)
        await the_sink.start()
        threads = store_threads()
        limits = settings.streams
        changes = Changes(keep=limits.window, keep_s=limits.window_s)
        watcher.listen(changes.record)
        services = Services(
            the_store,
            the_sink,
            watcher,
            rules,
            threads,
            settings.webhook_allow_private,
            changes=changes,
            streams=limits,
        )
        app.state.services = services
        # The notifier and the stall sweep have threads of their own: a slow receiver or
        # DNS server never takes a thread that requests need.
        background = ThreadPoolExecutor(4, thread_name_prefix="waymark-notify")

        async def in_background(call: Any, *args: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(background, call, *args)

        notifier = Notifier(
            the_store,
            in_background,
            allow_private=settings.webhook_allow_private,
            give_up_s=settings.webhook_give_up_s,
        )
        sweep = StallSweep(
            the_store, in_background, the_sink.announce, interval_s=settings.stall_sweep_s
        )
        app.state.notifier, app.state.stall_sweep = notifier, sweep

        async def lookup_key(key_id: str) -> ApiKey | None:
            return await services.in_thread(the_store.api_key, key_id)

        app.state.authenticators = build_authenticators(settings, lookup_key)
        # Direct mode: hear the commits of other processes on the same store, where the
        # store announces them (PostgreSQL); in bus mode the collectors' feed does this.
        following = (
            asyncio.create_task(the_store.follow_changes(watcher.notify))
            if isinstance(the_sink, DirectSink)
            else None
        )
        pruning = None
        if settings.prune_interval_s > 0 and rules.keeps_some_for_a_time():
            pruner = retention.Pruner(the_store, rules, settings.prune_interval_s)
            pruning = asyncio.create_task(pruner.run())
        try:
            async with running(notifier.run, sweep.run):
                yield
        finally:
            for task in (pruning, following):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await run_in_threadpool(background.shutdown)
            metrics.process_ended()
            if sink is None:
                await the_sink.close()
            await run_in_threadpool(threads.shutdown)
            if store is None:
                await run_in_threadpool(the_store.close)

    app = FastAPIOffline(  # /docs and /redoc served with their files, no CDN
        static_url="/docs/static",
        title="Waymark",
        summary="Status tracking for asynchronous data pipelines",
        version="0.1.0",
        lifespan=lifespan,
        routes=list(v1.HOT_ROUTES),  # first, ahead of every router
        dependencies=[Depends(refuse_nul)],
    )
    # Added before the request guard, so that they run inside it: their refusals get the
    # request id and the door's shape.
    app.add_middleware(access.AccessGuard, routes=app.router.routes, on=bool(settings.auth))
    if guard_hosts and not settings.auth:
        app.add_middleware(hosts.HostGuard, allowed=settings.allowed_hosts)
    problems.install(app)
    # Outermost of the app's own: it sees the final status of every answer, refusals and
    # the request guard's 500s included.
    app.add_middleware(metering.HttpMetrics)
    routers = (
        v1.router,
        stream.router,
        webhooks.router,
        okdata.router,
        stepfunctions.router,
        gsm.router,
        openlineage.router,
        page.router,
        health.router,
        metering.router,
    )
    for router in routers:
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        """FastAPI's schema of the app, with the hot endpoints that it does not see."""
        if app.openapi_schema is None:
            generated = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=[*v1.DOCUMENTED, *app.routes],
            )
            described = [*v1.DOCUMENTED, *(r for router in routers for r in router.routes)]
            app.openapi_schema = description.complete(generated, described)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


#: the collector's first threshold in a server process (Python's default is 700).
SERVER_GC_THRESHOLD = 10_000


def serve_app() -> FastAPI:
    """The app as ``waymark serve`` runs it in each worker: :func:`create_app` with the
    settings of the environment and the ``Host`` guard, and the cyclic garbage collector
    started less often.

    A 500-event batch makes some ten thousand short-lived containers (models, dicts,
    records, rows) that reference counting frees when the batch is answered; with the
    default threshold they set off a score of young collections per batch that find
    nothing to free (docs/BENCHMARKS.md has the cost). Cycles are still collected, after
    10,000 net new containers instead of 700.
    """
    gc.set_threshold(SERVER_GC_THRESHOLD, 10, 10)
    return create_app(guard_hosts=True)
