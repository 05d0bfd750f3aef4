"""The ``waymark`` command: serve the API, and read and send status from a terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from waymark.config import Settings

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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    store: StoreOpt = None,
    bus: BusOpt = None,
    pipelines: PipelinesOpt = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the HTTP API."""
    import os

    import uvicorn

    settings = Settings.resolve(store, bus, pipelines)
    _check_store(settings.store)
    # Workers are separate processes: they read the resolved settings from the environment.
    os.environ["WAYMARK_STORE"] = settings.store
    os.environ["WAYMARK_BUS"] = settings.bus
    os.environ["WAYMARK_PIPELINES"] = settings.pipelines
    uvicorn.run(
        "waymark.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
