"""The ``waymark`` command: serve the API, and read and send status from a terminal.

The client commands (``status``, ``history``, ``wait``, ``send``, ``path``) need only the
base install. The server commands (``serve``, ``collect``, ``migrate``, ``streams``,
``dead-letters``) import their dependencies, the ``server`` extra, inside the command, so
that this module imports none of them; without the extra they end with a message that
names it (:func:`needs_server_extra`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, ParamSpec, TypeVar

import typer

from waymark.config import Settings
from waymark.terminal import (
    HISTORY_COLUMNS,
    PATH_COLUMNS,
    STATUS_COLUMNS,
    emit,
    history_row,
    reader,
    send_events,
    status_row,
    wait_for,
)

app = typer.Typer(
    name="waymark",
    help="Status tracking for asynchronous data pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (env WAYMARK_STORE), e.g. sqlite:///./waymark.db"),
]
BusOpt = Annotated[
    str | None,
    typer.Option("--bus", help="Bus URL (env WAYMARK_BUS); empty: write to the store directly"),
]
PipelinesOpt = Annotated[
    str | None,
    typer.Option("--pipelines", help="Pipelines file, TOML (env WAYMARK_PIPELINES)"),
]


@app.callback()
def _root() -> None:
    """Status tracking for asynchronous data pipelines."""


SERVER_PACKAGES = frozenset(
    {"alembic", "fastapi", "nats", "psycopg", "psycopg_pool", "sqlalchemy", "starlette", "uvicorn"}
)
"""What the ``server`` extra installs, as top-level import names."""

P = ParamSpec("P")
R = TypeVar("R")


def needs_server_extra(command: Callable[P, R]) -> Callable[P, R]:
    """Mark a server command: if one of the ``server`` extra's packages turns out to be
    missing while it runs, it ends with exit code 1 and ``pip install 'waymark[server]'``
    instead of a traceback. Any other missing module is a bug and is raised as it is."""
    name = command.__name__.replace("_", "-")

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing not in SERVER_PACKAGES:
                raise
            typer.echo(
                f"waymark {name} needs {missing}, which the server extra installs: "
                "pip install 'waymark[server]'",
                err=True,
            )
            raise typer.Exit(1) from exc

    return run


@app.command()
@needs_server_extra
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    store: StoreOpt = None,
    bus: BusOpt = None,
    pipelines: PipelinesOpt = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    header_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a client has to send a request's head (env WAYMARK_HEADER_TIMEOUT)"
            " [default: 10]",
            show_default=False,
        ),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a request's body may stall before it is cut off"
            " (env WAYMARK_BODY_TIMEOUT) [default: 10]",
            show_default=False,
        ),
    ] = None,
    keep_alive: Annotated[
        float | None,
        typer.Option(
            help="Seconds an idle keep-alive connection is kept (env WAYMARK_KEEP_ALIVE)"
            " [default: 5]",
            show_default=False,
        ),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            help="Connections one worker holds before it answers 503"
            " (env WAYMARK_MAX_CONNECTIONS) [default: 1000]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the HTTP API."""
    import os

    # uvicorn loads the app by name and reports a failed import in its own words: load it
    # here first, so that a missing dependency names the extra to install.
    import waymark.api.app  # noqa: F401
    from waymark import server
    from waymark.config import ClientLimits

    settings = _checked(Settings.resolve(store, bus, pipelines))
    limits = _or_exit(
        lambda: ClientLimits.resolve(header_timeout, body_timeout, keep_alive, max_connections)
    )
    _check_store(settings.store)
    # Workers are separate processes: they read the resolved settings from the environment.
    os.environ["WAYMARK_STORE"] = settings.store
    os.environ["WAYMARK_BUS"] = settings.bus
    os.environ["WAYMARK_PIPELINES"] = settings.pipelines
    os.environ["WAYMARK_HEADER_TIMEOUT"] = str(limits.header_timeout_s)
    os.environ["WAYMARK_BODY_TIMEOUT"] = str(limits.body_timeout_s)
    os.environ["WAYMARK_KEEP_ALIVE"] = str(limits.keep_alive_s)
    os.environ["WAYMARK_MAX_CONNECTIONS"] = str(limits.max_connections)
    server.run(
        "waymark.api.app:serve_app", host=host, port=port, workers=workers, log_level=log_level
    )


@app.command()
@needs_server_extra
def collect(
    store: StoreOpt = None,
    bus: BusOpt = None,
    pipelines: PipelinesOpt = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Most messages per batch")
    ] = 1000,
    batch_wait_ms: Annotated[int, typer.Option(min=1, help="Longest wait to fill a batch")] = 50,
    max_deliveries: Annotated[
        int, typer.Option(min=1, help="Deliveries before a message the store rejects is parked")
    ] = 10,
    log_level: Annotated[str, typer.Option(help="Log level")] = "info",
) -> None:
    """Move events from the bus (JetStream) into the store until SIGTERM."""
    import logging

    from waymark.collector import main as run_collector

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.resolve(store, bus, pipelines)
    if not settings.bus:
        raise typer.BadParameter("the collector needs a bus URL (nats://...)", param_hint="--bus")
    _checked(settings)
    from waymark.errors import Unavailable

    try:
        run_collector(
            settings,
            batch_size=batch_size,
            batch_wait_s=batch_wait_ms / 1000,
            max_deliveries=max_deliveries,
        )
    except (Unavailable, ValueError) as exc:  # a bad URL, a store that cannot be opened
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("dead-letters")
@needs_server_extra
def dead_letters(
    store: StoreOpt = None,
    bus: BusOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most letters to list")] = 100,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    replay: Annotated[
        list[int] | None,
        typer.Option(help="Publish this letter again to its subject, then remove it (repeat)"),
    ] = None,
    discard: Annotated[
        list[int] | None, typer.Option(help="Remove this letter, given up on (repeat)")
    ] = None,
) -> None:
    """List messages the collector parked (could not use), newest first; or replay or
    discard some of them by id."""
    from waymark import deadletters
    from waymark.errors import Unavailable

    if output not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    settings = Settings.resolve(store, bus)
    if replay and not settings.bus:
        raise typer.BadParameter("replaying needs the bus URL (nats://...)", param_hint="--bus")
    try:
        if replay:
            done = deadletters.replay(settings.store, settings.bus, replay)
            typer.echo(f"replayed {len(done)}: {' '.join(map(str, done))}")
        if discard:
            typer.echo(f"discarded {deadletters.discard(settings.store, discard)}")
        if not replay and not discard:
            deadletters.show(settings.store, limit=limit, as_json=output == "json")
    except (Unavailable, ValueError) as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
@needs_server_extra
def streams(
    bus: BusOpt = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Create or change them to match the bus URL")
    ] = False,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    monitor: Annotated[
        list[str] | None,
        typer.Option(
            help="A NATS server's monitoring URL (the http: of its configuration), to read its"
            " JetStream sync setting; repeat for each server. Default: port 8222 on each host"
            " of the bus URL"
        ),
    ] = None,
) -> None:
    """Show the bus's streams and the collectors' consumer, with every setting that differs
    from the bus URL's (they are only created with it); --apply changes them to match.
    Also shows each server's JetStream sync setting, and warns where the server can lose
    messages it has acknowledged (anything but sync_interval: always)."""
    import asyncio

    from waymark.bus import streams as bus_streams
    from waymark.bus import syncing
    from waymark.bus.base import BusSettings
    from waymark.errors import Unavailable

    if output not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    url = Settings.resolve(None, bus).bus
    if not url:
        raise typer.BadParameter("needs the bus URL (nats://...)", param_hint="--bus")
    try:
        settings = BusSettings.from_url(url)
        work = bus_streams.apply if apply else bus_streams.inspect
        found = asyncio.run(work(settings))
    except (Unavailable, ValueError) as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc
    monitors = monitor or syncing.default_monitors(settings)
    found += asyncio.run(syncing.inspect_servers(monitors))
    bus_streams.show(found, as_json=output == "json", applied=apply)


def _or_exit(work: Callable[[], R]) -> R:
    """``work()``, or exit 1 with its :class:`ValueError`'s message (which names the part)."""
    try:
        return work()
    except ValueError as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc


def _checked(settings: Settings) -> Settings:
    """``settings``, once each of its URLs parses and the environment holds no unknown
    ``WAYMARK_*`` variable; else exit 1 with a message naming the part, before anything
    is opened or created."""
    from waymark.bus.base import BusSettings
    from waymark.config import KNOWN, unknown_settings
    from waymark.store.url import parse_store_url

    unknown = unknown_settings()
    if unknown:
        typer.echo(
            f"waymark: unknown setting {', '.join(unknown)} in the environment"
            f" (known: {', '.join(KNOWN)})",
            err=True,
        )
        raise typer.Exit(1)
    if settings.bus:
        _or_exit(lambda: BusSettings.from_url(settings.bus))
    _or_exit(lambda: parse_store_url(settings.store))
    return settings


def _check_store(url: str) -> None:
    """Refuse to serve a store that cannot be opened (e.g. its schema is outdated)."""
    from waymark.errors import Unavailable
    from waymark.store import open_store

    try:
        open_store(url).close()
    except (Unavailable, ValueError) as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
@needs_server_extra
def migrate(store: StoreOpt = None) -> None:
    """Create the store's schema, or upgrade it to the one this Waymark needs."""
    from waymark.errors import Unavailable
    from waymark.store import migrate as migrations

    url = _checked(Settings.resolve(store)).store
    try:
        before, after = migrations.upgrade(url)
    except (Unavailable, ValueError) as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc
    if before == after:
        typer.echo(f"schema already at revision {after}")
    else:
        typer.echo(f"schema upgraded from {before or 'nothing'} to revision {after}")


UrlOpt = Annotated[
    str | None, typer.Option("--url", help="Waymark server (env WAYMARK_URL)", show_default=False)
]
TenantOpt = Annotated[
    str | None, typer.Option("--tenant", help="Tenant (env WAYMARK_TENANT)", show_default=False)
]


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


FormatOpt = Annotated[Format, typer.Option("--format", help="Output format")]


@app.command()
def status(
    trace_id: Annotated[str, typer.Argument(help="The trace to show")],
    history: Annotated[bool, typer.Option("--history", help="List every event")] = False,
    fmt: FormatOpt = Format.table,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Where a trace stands (like `okdata status`), or its whole history."""
    with reader(url, tenant) as api:
        if history:
            rows = [history_row(e) for e in api.events(trace_id, page_size=1000)]
            emit(rows, HISTORY_COLUMNS, fmt, title=f"History of {trace_id}")
        else:
            summary = api.summary(trace_id)
            emit([status_row(summary)], STATUS_COLUMNS, fmt)


@app.command()
def history(
    trace_id: Annotated[str, typer.Argument(help="The trace to show")],
    fmt: FormatOpt = Format.table,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Every event of a trace, in order (same as `status --history`)."""
    status(trace_id, history=True, fmt=fmt, url=url, tenant=tenant)


@app.command()
def wait(
    trace_id: Annotated[str, typer.Argument(help="The trace to wait for")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 300.0,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Wait until a trace is done. Exit 0: succeeded, 1: failed, 2: not done in time,
    4: cannot be read."""
    raise typer.Exit(wait_for(trace_id, timeout, url, tenant))


@app.command()
def send(
    file: Annotated[
        str | None,
        typer.Argument(help="JSON file of one event or a list ('-' for stdin)", show_default=False),
    ] = None,
    trace_id: Annotated[
        str | None, typer.Option(help="Trace id (for one event from flags)")
    ] = None,
    event_status: Annotated[
        str | None, typer.Option("--status", help="SUCCESS, FAILED, IN_PROGRESS, ...")
    ] = None,
    trace_status: Annotated[str | None, typer.Option(help="STARTED, CONTINUE, FINISHED")] = None,
    component: Annotated[str | None, typer.Option()] = None,
    stage: Annotated[str | None, typer.Option()] = None,
    operation: Annotated[str | None, typer.Option()] = None,
    message: Annotated[str | None, typer.Option()] = None,
    path: Annotated[str | None, typer.Option(help="The file or object the step worked on")] = None,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Send events: from a JSON file or stdin, or one event from flags."""
    flags = {
        "trace_id": trace_id,
        "status": event_status,
        "trace_status": trace_status,
        "component": component,
        "stage": stage,
        "operation": operation,
        "message": message,
        "path": path,
    }
    raise typer.Exit(
        send_events(file, {k: v for k, v in flags.items() if v is not None}, url, tenant)
    )


@app.command("path")
def path_lookup(
    path: Annotated[str, typer.Argument(help="A file or object path")],
    fmt: FormatOpt = Format.table,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Every trace whose events touched a path, newest first."""
    with reader(url, tenant) as api:
        hits = api.paths(path)
    rows = [{"Trace ID": h.trace_id, "Event ID": h.event_id, "At": h.at} for h in hits]
    emit(rows, PATH_COLUMNS, fmt, title=f"Traces that touched {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
