"""The ``waymark`` command: serve the API, and read and send status from a terminal.

The client commands (``status``, ``history``, ``wait``, ``send``, ``path``) need only the
base install. The server commands (``serve``, ``collect``, ``migrate``, ``streams``,
``dead-letters``) import their dependencies, the ``server`` extra, inside the command, so
that this module imports none of them; without the extra they end with a message that
names it (:func:`needs_server_extra`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, ParamSpec, TypeVar

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
AuthOpt = Annotated[
    str | None,
    typer.Option(
        "--auth",
        help="none, or a comma list of keys and oidc (env WAYMARK_AUTH)",
        show_default=False,
    ),
]
OidcIssuerOpt = Annotated[
    str | None,
    typer.Option("--oidc-issuer", help="OpenID Connect issuer URL (env WAYMARK_OIDC_ISSUER)"),
]
OidcAudienceOpt = Annotated[
    str | None,
    typer.Option("--oidc-audience", help="Audience tokens must name (env WAYMARK_OIDC_AUDIENCE)"),
]
OidcRolesClaimOpt = Annotated[
    str | None,
    typer.Option(
        "--oidc-roles-claim",
        help="Dotted path of the tokens' roles claim (env WAYMARK_OIDC_ROLES_CLAIM;"
        " default waymark_roles)",
    ),
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
    auth: AuthOpt = None,
    oidc_issuer: OidcIssuerOpt = None,
    oidc_audience: OidcAudienceOpt = None,
    oidc_roles_claim: OidcRolesClaimOpt = None,
    webhook_allow_private: Annotated[
        bool | None,
        typer.Option(
            "--webhook-allow-private",
            help="Let webhooks call loopback, link-local and private addresses"
            " [env: WAYMARK_WEBHOOK_ALLOW_PRIVATE]",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API."""
    import os

    import uvicorn

    # uvicorn loads the app by name and reports a failed import in its own words: load it
    # here first, so that a missing dependency names the extra to install.
    import waymark.api.app  # noqa: F401

    try:
        settings = Settings.resolve(
            store,
            bus,
            pipelines,
            auth=auth,
            oidc_issuer=oidc_issuer,
            oidc_audience=oidc_audience,
            oidc_roles_claim=oidc_roles_claim,
            webhook_allow_private=webhook_allow_private,
        )
    except ValueError as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(2) from exc
    _check_store(settings.store)
    # Workers are separate processes: they read the resolved settings from the environment.
    os.environ["WAYMARK_STORE"] = settings.store
    os.environ["WAYMARK_BUS"] = settings.bus
    os.environ["WAYMARK_PIPELINES"] = settings.pipelines
    os.environ["WAYMARK_AUTH"] = ",".join(settings.auth) or "none"
    os.environ["WAYMARK_OIDC_ISSUER"] = settings.oidc_issuer
    os.environ["WAYMARK_OIDC_AUDIENCE"] = settings.oidc_audience
    os.environ["WAYMARK_OIDC_ROLES_CLAIM"] = settings.oidc_roles_claim
    os.environ["WAYMARK_WEBHOOK_ALLOW_PRIVATE"] = "1" if settings.webhook_allow_private else "0"
    uvicorn.run(
        "waymark.api.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
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


keys_app = typer.Typer(
    name="keys",
    help="Make, list and revoke API keys (kept in the store; needs WAYMARK_AUTH=keys).",
    no_args_is_help=True,
)
app.add_typer(keys_app)


@keys_app.command("create")
@needs_server_extra
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts in ('*': every tenant)")],
    role: Annotated[list[str], typer.Option(help="reader, writer or admin (repeat for several)")],
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="Limit the key to this dataset (repeat; default: every dataset)"),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Recorded as submitted_by on its events (default key-<id>)")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 90d, 12h, 2w (default: no expiry)")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Make a key and print its secret alone on stdout: it is shown this once."""
    from waymark.auth import admin
    from waymark.errors import Unavailable

    try:
        grants = admin.grants_of(tenant, role, dataset or [])
        secret = admin.create(
            Settings.resolve(store).store, grants, name=name, expires_in=expires_in
        )
    except (Unavailable, ValueError) as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(secret)


@keys_app.command("list")
@needs_server_extra
def keys_list(
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Most keys to list")] = 1000,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List keys, newest first: id, name, grants, state and times (never a secret)."""
    from waymark.auth import admin
    from waymark.errors import Unavailable

    if output not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    try:
        admin.show(Settings.resolve(store).store, limit=limit, as_json=output == "json")
    except (Unavailable, ValueError) as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc


@keys_app.command("revoke")
@needs_server_extra
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see waymark keys list)")],
    store: StoreOpt = None,
) -> None:
    """Revoke a key: every API server refuses it within 10 seconds."""
    from waymark.auth import admin
    from waymark.errors import Unavailable

    try:
        key = admin.revoke(Settings.resolve(store).store, key_id)
    except (Unavailable, ValueError) as exc:
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"revoked {key.id} ({key.name})")


webhooks_app = typer.Typer(
    name="webhooks",
    help="A tenant's webhook subscriptions (needs the admin role when authentication is on).",
    no_args_is_help=True,
)
app.add_typer(webhooks_app)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@webhooks_app.command("create")
def webhooks_create(
    target: Annotated[str, typer.Argument(metavar="URL", help="Where to POST messages")],
    event: Annotated[
        list[str],
        typer.Option(
            "--event",
            help="trace.started, trace.succeeded, trace.failed or trace.stalled (repeat)",
        ),
    ],
    dataset: Annotated[str | None, typer.Option(help="Only traces of this dataset")] = None,
    component: Annotated[str | None, typer.Option(help="Only this component's")] = None,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Subscribe a URL; prints the subscription and its signing secret, shown only now."""
    with reader(url, tenant) as api:
        _print_json(api.create_webhook(target, event, dataset=dataset, component=component))


@webhooks_app.command("list")
def webhooks_list(url: UrlOpt = None, tenant: TenantOpt = None) -> None:
    """The tenant's subscriptions, oldest first."""
    with reader(url, tenant) as api:
        _print_json(list(api.webhooks()))


@webhooks_app.command("show")
def webhooks_show(
    webhook_id: Annotated[str, typer.Argument(help="The subscription's id")],
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """One subscription, with its last failure if a message was given up on."""
    with reader(url, tenant) as api:
        _print_json(api.webhook(webhook_id))


@webhooks_app.command("delete")
def webhooks_delete(
    webhook_id: Annotated[str, typer.Argument(help="The subscription's id")],
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Remove a subscription and its undelivered messages."""
    with reader(url, tenant) as api:
        api.delete_webhook(webhook_id)
    typer.echo(f"deleted {webhook_id}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook_id: Annotated[str, typer.Argument(help="The subscription's id")],
    limit: Annotated[int, typer.Option(min=1, max=100, help="Most messages to show")] = 100,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """The subscription's latest attempts: status code, error and time, latest first."""
    with reader(url, tenant) as api:
        _print_json(api.webhook_deliveries(webhook_id, limit=limit))


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

    url = Settings.resolve(store).store
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
