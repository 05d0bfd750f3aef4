"""The ``waymark`` command: serve the API, and read and send status from a terminal.

The client commands (``status``, ``history``, ``wait``, ``send``, ``path``) need only the
base install. The server commands (``serve``, ``collect``, ``migrate``, ``streams``,
``dead-letters``, ``prune``) import their dependencies, the ``server`` extra, inside the command, so
that this module imports none of them; without the extra they end with a message that
names it (:func:`needs_server_extra`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from waymark import __version__
from waymark.config import Settings
from waymark.display import Format, dumps, emit
from waymark.sdk import Client
from waymark.terminal import (
    history_listing,
    path_listing,
    reader,
    send_events,
    status_listing,
    wait_for,
    watch_changes,
)

if TYPE_CHECKING:
    from waymark.logs import LogFormat

app = typer.Typer(
    name="waymark",
    help="Status tracking for asynchronous data pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", metavar="URL", help="Store URL (env WAYMARK_STORE), e.g. sqlite:///./waymark.db"
    ),
]
BusOpt = Annotated[
    str | None,
    typer.Option(
        "--bus", metavar="URL", help="Bus URL (env WAYMARK_BUS); empty: write to the store directly"
    ),
]
PipelinesOpt = Annotated[
    str | None,
    typer.Option(
        "--pipelines", metavar="FILE", help="Pipelines file, TOML (env WAYMARK_PIPELINES)"
    ),
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


def _show_version(asked: bool) -> None:
    if asked:
        typer.echo(f"waymark {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            metavar="",
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """Status tracking for asynchronous data pipelines."""


SERVER_PACKAGES = frozenset(
    {
        "alembic",
        "fastapi",
        "nats",
        "prometheus_client",
        "psycopg",
        "psycopg_pool",
        "pythonjsonlogger",
        "sqlalchemy",
        "starlette",
        "uvicorn",
    }
)
"""What the ``server`` extra installs, as top-level import names."""


class LogLevel(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


LogLevelOpt = Annotated[LogLevel, typer.Option(help="Log level")]
LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        metavar="text|json",
        help="Log lines as text, or one JSON object each (env WAYMARK_LOG_FORMAT; default text)",
        show_default=False,
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def needs_server_extra(command: Callable[P, R]) -> Callable[P, R]:
    """Mark a server command: if one of the ``server`` extra's packages turns out to be
    missing while it runs, it ends with exit code 1 and ``pip install 'waymark-status[server]'``
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
                "pip install 'waymark-status[server]'",
                err=True,
            )
            raise typer.Exit(1) from exc

    return run


@app.command()
@needs_server_extra
def serve(
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Address to listen on")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on")] = 8000,
    store: StoreOpt = None,
    bus: BusOpt = None,
    pipelines: PipelinesOpt = None,
    workers: Annotated[int, typer.Option(metavar="N", help="Worker processes")] = 1,
    log_level: LogLevelOpt = LogLevel.info,
    log_format: LogFormatOpt = None,
    auth: AuthOpt = None,
    oidc_issuer: OidcIssuerOpt = None,
    oidc_audience: OidcAudienceOpt = None,
    oidc_roles_claim: OidcRolesClaimOpt = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            "--allowed-hosts",
            help="With authentication off, the Host names answered besides loopback ones,"
            " comma separated; * for any (env WAYMARK_ALLOWED_HOSTS)",
            show_default=False,
        ),
    ] = None,
    prune_interval: Annotated[
        str | None,
        typer.Option(
            "--prune-interval",
            metavar="SECONDS",
            help="How often one replica deletes traces past their pipeline's retention_days"
            " (env WAYMARK_PRUNE_INTERVAL; default 3600; 0: never)",
            show_default=False,
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve on a non-loopback address with authentication off (anyone who can"
            " reach it may read and write every tenant)",
        ),
    ] = False,
    header_timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds a client has to send a request's head (env WAYMARK_HEADER_TIMEOUT)"
            " [default: 10]",
            show_default=False,
        ),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds a request's body may stall before it is cut off"
            " (env WAYMARK_BODY_TIMEOUT) [default: 10]",
            show_default=False,
        ),
    ] = None,
    keep_alive: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds an idle keep-alive connection is kept (env WAYMARK_KEEP_ALIVE)"
            " [default: 5]",
            show_default=False,
        ),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Connections one worker holds before it answers 503"
            " (env WAYMARK_MAX_CONNECTIONS) [default: 1000]",
            show_default=False,
        ),
    ] = None,
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

    # uvicorn loads the app by name and reports a failed import in its own words: load it
    # here first, so that a missing dependency names the extra to install.
    import waymark.api.app  # noqa: F401
    from waymark import server
    from waymark.config import ClientLimits

    settings = _checked(
        _or_exit(
            lambda: Settings.resolve(
                store,
                bus,
                pipelines,
                auth=auth,
                oidc_issuer=oidc_issuer,
                oidc_audience=oidc_audience,
                oidc_roles_claim=oidc_roles_claim,
                allowed_hosts=allowed_hosts,
                webhook_allow_private=webhook_allow_private,
                prune_interval=prune_interval,
            )
        )
    )
    limits = _or_exit(
        lambda: ClientLimits.resolve(header_timeout, body_timeout, keep_alive, max_connections)
    )
    formatting = _log_format(log_format)
    from waymark.api.hosts import host_name, is_loopback

    if not settings.auth and not insecure and not is_loopback(host_name(host)):
        typer.echo(
            f"waymark: refusing to serve on {host} with authentication off: anyone who can"
            " reach that address could read and write every tenant. Turn authentication on"
            " (--auth keys or --auth oidc, see `waymark keys create`), serve on 127.0.0.1,"
            " or give --insecure to serve it open anyway.",
            err=True,
        )
        raise typer.Exit(2)
    _check_store(settings.store)
    if settings.bus:
        _check_bus(settings.bus)
    # Workers are separate processes: they read the resolved settings from the environment.
    os.environ["WAYMARK_STORE"] = settings.store
    os.environ["WAYMARK_BUS"] = settings.bus
    os.environ["WAYMARK_PIPELINES"] = settings.pipelines
    os.environ["WAYMARK_AUTH"] = ",".join(settings.auth) or "none"
    os.environ["WAYMARK_OIDC_ISSUER"] = settings.oidc_issuer
    os.environ["WAYMARK_OIDC_AUDIENCE"] = settings.oidc_audience
    os.environ["WAYMARK_OIDC_ROLES_CLAIM"] = settings.oidc_roles_claim
    os.environ["WAYMARK_ALLOWED_HOSTS"] = ",".join(settings.allowed_hosts)
    os.environ["WAYMARK_HEADER_TIMEOUT"] = str(limits.header_timeout_s)
    os.environ["WAYMARK_BODY_TIMEOUT"] = str(limits.body_timeout_s)
    os.environ["WAYMARK_KEEP_ALIVE"] = str(limits.keep_alive_s)
    os.environ["WAYMARK_MAX_CONNECTIONS"] = str(limits.max_connections)
    os.environ["WAYMARK_WEBHOOK_ALLOW_PRIVATE"] = "1" if settings.webhook_allow_private else "0"
    os.environ["WAYMARK_PRUNE_INTERVAL"] = str(settings.prune_interval_s)
    server.run(
        "waymark.api.app:serve_app",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level.value,
        log_format=formatting,
    )


@app.command()
@needs_server_extra
def collect(
    store: StoreOpt = None,
    bus: BusOpt = None,
    pipelines: PipelinesOpt = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, metavar="N", help="Most messages per batch")
    ] = 1000,
    batch_wait_ms: Annotated[
        int, typer.Option(min=1, metavar="MS", help="Longest wait to fill a batch")
    ] = 50,
    max_deliveries: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Deliveries before a message the store rejects is parked"
        ),
    ] = 10,
    log_level: LogLevelOpt = LogLevel.info,
    log_format: LogFormatOpt = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            metavar="PORT",
            help="Serve the collector's metrics (Prometheus text) at /metrics on this port",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", metavar="ADDRESS", help="Address of --metrics-port")
    ] = "127.0.0.1",
) -> None:
    """Move events from the bus (JetStream) into the store until SIGTERM."""
    from waymark import logs
    from waymark.collector import main as run_collector

    logs.configure(_log_format(log_format), log_level.value)
    settings = Settings.resolve(store, bus, pipelines)
    if not settings.bus:
        raise typer.BadParameter("the collector needs a bus URL (nats://...)", param_hint="--bus")
    _checked(settings)
    with exit_on_failure:  # a bad URL, a store that cannot be opened
        run_collector(
            settings,
            batch_size=batch_size,
            batch_wait_s=batch_wait_ms / 1000,
            max_deliveries=max_deliveries,
            metrics_at=None if metrics_port is None else (metrics_host, metrics_port),
        )


@app.command("dead-letters")
@needs_server_extra
def dead_letters(
    store: StoreOpt = None,
    bus: BusOpt = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, metavar="N", help="Most letters to list")
    ] = 100,
    output: Annotated[str, typer.Option("--format", metavar="table|json")] = "table",
    replay: Annotated[
        list[int] | None,
        typer.Option(
            metavar="ID", help="Publish this letter again to its subject, then remove it (repeat)"
        ),
    ] = None,
    discard: Annotated[
        list[int] | None,
        typer.Option(metavar="ID", help="Remove this letter, given up on (repeat)"),
    ] = None,
) -> None:
    """List messages the collector parked (could not use), newest first; or replay or
    discard some of them by id."""
    from waymark import deadletters

    if output not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    settings = Settings.resolve(store, bus)
    if replay and not settings.bus:
        raise typer.BadParameter("replaying needs the bus URL (nats://...)", param_hint="--bus")
    with exit_on_failure:
        if replay:
            done = deadletters.replay(settings.store, settings.bus, replay)
            typer.echo(f"replayed {len(done)}: {' '.join(map(str, done))}")
        if discard:
            typer.echo(f"discarded {deadletters.discard(settings.store, discard)}")
        if not replay and not discard:
            deadletters.show(settings.store, limit=limit, as_json=output == "json")


@app.command()
@needs_server_extra
def prune(
    older_than: Annotated[
        str,
        typer.Option("--older-than", metavar="AGE", help="Age of the last event: 30d, 12h, 90m"),
    ],
    tenant: Annotated[
        str | None, typer.Option(metavar="TENANT", help="Only this tenant (default: every one)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be deleted; delete nothing")
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Delete traces whose last event is older than AGE, with everything derived from them,
    in small transactions; print what was deleted (or would be) per tenant."""
    from waymark import retention
    from waymark.model import now_us
    from waymark.store import open_store

    try:
        age = retention.parse_age(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from exc
    settings = Settings.resolve(store)
    verb = "would delete" if dry_run else "deleted"
    with exit_on_failure:
        opened = open_store(settings.store)
        try:
            before = now_us() - age
            for name in [tenant] if tenant is not None else opened.tenants():
                traces = events = 0
                for done in retention.prune(opened, before, tenant=name, dry_run=dry_run):
                    traces, events = traces + done.traces, events + done.events
                typer.echo(f"{name}: {verb} {traces} traces ({events} events)")
            if not dry_run:
                typer.echo(f"tombstones expired: {opened.drop_tombstones(now_us())}")
        finally:
            opened.close()


@app.command()
@needs_server_extra
def streams(
    bus: BusOpt = None,
    apply: Annotated[
        bool,
        typer.Option("--apply", metavar="", help="Create or change them to match the bus URL"),
    ] = False,
    output: Annotated[str, typer.Option("--format", metavar="table|json")] = "table",
    monitor: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="A NATS server's monitoring URL (the http: of its configuration), to read its"
            " JetStream sync setting; repeat for each server. Default: port 8222 on each host"
            " of the bus URL",
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

    if output not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    url = Settings.resolve(None, bus).bus
    if not url:
        raise typer.BadParameter("needs the bus URL (nats://...)", param_hint="--bus")
    with exit_on_failure:
        settings = BusSettings.from_url(url)
        work = bus_streams.apply if apply else bus_streams.inspect
        found = asyncio.run(work(settings))
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
    role: Annotated[
        list[str], typer.Option(help="reader, writer, admin or metrics (repeat for several)")
    ],
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

    with exit_on_failure:
        grants = admin.grants_of(tenant, role, dataset or [])
        secret = admin.create(
            Settings.resolve(store).store, grants, name=name, expires_in=expires_in
        )
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

    if output not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    with exit_on_failure:
        admin.show(Settings.resolve(store).store, limit=limit, as_json=output == "json")


@keys_app.command("revoke")
@needs_server_extra
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see waymark keys list)")],
    store: StoreOpt = None,
) -> None:
    """Revoke a key: every API server refuses it within 10 seconds."""
    from waymark.auth import admin

    with exit_on_failure:
        key = admin.revoke(Settings.resolve(store).store, key_id)
    typer.echo(f"revoked {key.id} ({key.name})")


class _ExitOnFailure:
    """A block that ends the command with exit code 1 and the error's message when a store
    or bus cannot be used (:class:`~waymark.errors.Unavailable`), a setting is wrong
    (:class:`ValueError`, whose message names the part) or a port or file cannot be had
    (:class:`OSError`)."""

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        from waymark.errors import Unavailable

        if isinstance(exc, Unavailable | ValueError | OSError):
            typer.echo(f"waymark: {exc}", err=True)
            raise typer.Exit(1) from exc


exit_on_failure = _ExitOnFailure()


def _or_exit(work: Callable[[], R]) -> R:
    """``work()``, in :data:`exit_on_failure`."""
    with exit_on_failure:
        return work()


def _log_format(given: str | None) -> LogFormat:
    """The log format of ``--log-format``, else ``WAYMARK_LOG_FORMAT``; exit 1 naming a bad one."""
    from waymark.logs import log_format

    return _or_exit(lambda: log_format(given))


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


webhooks_app = typer.Typer(
    name="webhooks",
    help="A tenant's webhook subscriptions (needs the admin role when authentication is on).",
    no_args_is_help=True,
)
app.add_typer(webhooks_app)


def _print_answer(
    url: str | None, tenant: str | None, token: str | None, ask: Callable[[Client], Any]
) -> None:
    """Print, as JSON, what ``ask`` gets from the server that the command's options name."""
    with reader(url, tenant, token) as api:
        typer.echo(dumps(ask(api)))  # the server's text, escaped for the terminal


WebhookIdArg = Annotated[str, typer.Argument(help="The subscription's id")]


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
    token: TokenOpt = None,
) -> None:
    """Subscribe a URL; prints the subscription and its signing secret, shown only now."""
    _print_answer(
        url,
        tenant,
        token,
        lambda api: api.create_webhook(target, event, dataset=dataset, component=component),
    )


@webhooks_app.command("list")
def webhooks_list(url: UrlOpt = None, tenant: TenantOpt = None, token: TokenOpt = None) -> None:
    """The tenant's subscriptions, oldest first."""
    _print_answer(url, tenant, token, lambda api: list(api.webhooks()))


@webhooks_app.command("show")
def webhooks_show(
    webhook_id: WebhookIdArg, url: UrlOpt = None, tenant: TenantOpt = None, token: TokenOpt = None
) -> None:
    """One subscription, with its last failure if a message was given up on."""
    _print_answer(url, tenant, token, lambda api: api.webhook(webhook_id))


@webhooks_app.command("delete")
def webhooks_delete(
    webhook_id: WebhookIdArg, url: UrlOpt = None, tenant: TenantOpt = None, token: TokenOpt = None
) -> None:
    """Remove a subscription and its undelivered messages."""
    with reader(url, tenant, token) as api:
        api.delete_webhook(webhook_id)
    typer.echo(f"deleted {webhook_id}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook_id: WebhookIdArg,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Most messages to show")] = 100,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
    token: TokenOpt = None,
) -> None:
    """The subscription's latest attempts: status code, error and time, latest first."""
    _print_answer(url, tenant, token, lambda api: api.webhook_deliveries(webhook_id, limit=limit))


def _check_store(url: str) -> None:
    """Refuse to serve a store that cannot be opened (e.g. its schema is outdated)."""
    from waymark.store import open_store

    with exit_on_failure:
        open_store(url).close()


def _check_bus(url: str) -> None:
    """Refuse to serve with a bus URL that is wrong, or whose credentials the NATS server
    refuses; a server that cannot be reached now is fine (publishes answer 503 until it is
    back)."""
    import asyncio

    from waymark.bus import open_bus
    from waymark.errors import Unavailable

    async def connect() -> None:
        bus = open_bus(url)
        try:
            await bus.connect()
        finally:
            await bus.close()

    try:
        asyncio.run(connect())
    except Unavailable:
        pass
    except ValueError as exc:  # a bad setting, or credentials refused (never shown)
        typer.echo(f"waymark: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
@needs_server_extra
def migrate(store: StoreOpt = None) -> None:
    """Create the store's schema, or upgrade it to the one this Waymark needs."""
    from waymark.store import migrate as migrations

    url = _checked(Settings.resolve(store)).store
    with exit_on_failure:
        before, after = migrations.upgrade(url)
    if before == after:
        typer.echo(f"schema already at revision {after}")
    else:
        typer.echo(f"schema upgraded from {before or 'nothing'} to revision {after}")


UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", metavar="URL", help="Waymark server (env WAYMARK_URL)", show_default=False
    ),
]
TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant", metavar="TENANT", help="Tenant (env WAYMARK_TENANT)", show_default=False
    ),
]
TraceArg = Annotated[str, typer.Argument(metavar="TRACE_ID", help="The trace", show_default=False)]
FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        metavar="table|json|csv",
        help="table: fits the terminal, plain text when piped; json: the API's fields",
    ),
]
WideOpt = Annotated[bool, typer.Option("--wide", help="Add the ids", metavar="")]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="API key or OpenID Connect access token, sent as a bearer token (env WAYMARK_TOKEN)",
        show_default=False,
    ),
]


@app.command()
def status(
    trace_id: TraceArg,
    history: Annotated[
        bool, typer.Option("--history", help="List every event", metavar="")
    ] = False,
    wide: WideOpt = False,
    fmt: FormatOpt = Format.table,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
    token: TokenOpt = None,
) -> None:
    """Where a trace stands: its state, current step, how long ago it last moved, and
    okdata's Done, Trace status and Event status; or, with --history, every event."""
    with reader(url, tenant, token) as api:
        if history:
            events = list(api.events(trace_id, page_size=1000))
            listing = history_listing(trace_id, events, wide)
        else:
            listing = status_listing(api.summary(trace_id))
    emit(listing, fmt)


@app.command()
def history(
    trace_id: TraceArg,
    wide: WideOpt = False,
    fmt: FormatOpt = Format.table,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
    token: TokenOpt = None,
) -> None:
    """Every event of a trace, in order (the same as `status --history`)."""
    status(trace_id, history=True, wide=wide, fmt=fmt, url=url, tenant=tenant, token=token)


@app.command()
def wait(
    trace_id: TraceArg,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Give up after this many seconds")
    ] = 300.0,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show each step of a trace as it arrives, until it is done. Exit 0: succeeded,
    1: failed, 2: not done in time (or never appeared), 4: cannot be read."""
    raise typer.Exit(wait_for(trace_id, timeout, url, tenant, token))


def _text_opt(help: str, metavar: str = "TEXT") -> Any:
    return typer.Option(help=help, metavar=metavar, show_default=False)


@app.command()
def watch(
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="Only traces in this state (repeat)", metavar="STATE", show_default=False
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            help="Only traces of this dataset (repeat)", metavar="DATASET", show_default=False
        ),
    ] = None,
    component: Annotated[
        list[str] | None,
        typer.Option(
            help="Only traces whose current step is of this component (repeat)",
            metavar="COMPONENT",
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many changes", metavar="N", show_default=False),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", metavar="table|json", help="json: one summary a line"),
    ] = Format.table,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show each change of the tenant's traces as it happens: when, the trace, its state and
    current step (the live stream, resumed if the connection is lost). Exit 4: cannot be read."""
    with reader(url, tenant, token) as api:
        watch_changes(
            api,
            state=state or [],
            dataset=dataset or [],
            component=component or [],
            count=count,
            as_json=fmt == Format.json,
        )


@app.command()
def send(
    file: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE",
            help="JSON file of one event or a list ('-' for stdin)",
            show_default=False,
        ),
    ] = None,
    trace_id: Annotated[str | None, _text_opt("Trace id (for one event from flags)", "ID")] = None,
    event_status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="SUBMITTED, IN_PROGRESS, SUCCESS (default), FAILED, SKIPPED, PARTIAL_SUCCESS",
            show_default=False,
        ),
    ] = None,
    trace_status: Annotated[
        str | None, _text_opt("STARTED, CONTINUE (default), FINISHED", "STATUS")
    ] = None,
    component: Annotated[str | None, _text_opt("The service or job that did the step")] = None,
    stage: Annotated[str | None, _text_opt("The stage of the pipeline")] = None,
    operation: Annotated[str | None, _text_opt("What the step did, e.g. a function")] = None,
    domain: Annotated[str | None, _text_opt("What the trace is about, e.g. dataset")] = None,
    domain_id: Annotated[str | None, _text_opt("Its id, e.g. parking-fees/1", "ID")] = None,
    message: Annotated[str | None, _text_opt("What the step says")] = None,
    error: Annotated[
        list[str] | None, _text_opt("An error message (repeat for several)", "MESSAGE")
    ] = None,
    error_code: Annotated[int | None, _text_opt("A numeric error code", "CODE")] = None,
    path: Annotated[str | None, _text_opt("The file or object the step worked on", "PATH")] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option("--input", metavar="PATH", help="A file or object read (repeat)"),
    ] = None,
    output: Annotated[
        list[str] | None,
        typer.Option("--output", metavar="PATH", help="A file or object written (repeat)"),
    ] = None,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
    token: TokenOpt = None,
) -> None:
    """Send events: from a JSON file or stdin, or one event from flags."""
    flags: dict[str, Any] = {
        "trace_id": trace_id,
        "status": event_status,
        "trace_status": trace_status,
        "component": component,
        "stage": stage,
        "operation": operation,
        "domain": domain,
        "domain_id": domain_id,
        "message": message,
        "errors": [{"message": {"en": e}} for e in error] if error else None,
        "error_code": error_code,
        "path": path,
        "inputs": input_ or None,
        "outputs": output or None,
    }
    raise typer.Exit(
        send_events(file, {k: v for k, v in flags.items() if v is not None}, url, tenant, token)
    )


@app.command("path")
def path_lookup(
    path: Annotated[
        str, typer.Argument(metavar="PATH", help="A file or object path", show_default=False)
    ],
    limit: Annotated[
        int, typer.Option(min=1, max=1000, metavar="N", help="Most lookups of the path")
    ] = 100,
    fmt: FormatOpt = Format.table,
    url: UrlOpt = None,
    tenant: TenantOpt = None,
    token: TokenOpt = None,
) -> None:
    """Every trace whose events touched a path, once each with its state, newest first."""
    with reader(url, tenant, token) as api:
        listing = path_listing(api, path, limit)
    emit(listing, fmt)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
