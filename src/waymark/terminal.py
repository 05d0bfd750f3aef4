"""What the CLI's reading commands do: talk to the API, and print tables, JSON or CSV.

Exit codes: 0 success; for ``wait`` 1 when the trace failed and 2 when it is not
done in time; 4 when the server cannot be reached or answers with an error
(unknown trace, bad input).
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from waymark.config import server_url
from waymark.model import Summary
from waymark.sdk import Client
from waymark.sdk.errors import APIError, ClientError, Unauthenticated, WaitTimeout

EXIT_FAILED = 1
EXIT_NOT_DONE = 2
EXIT_UNREADABLE = 4
LONG_POLL_S = 60.0
PROGRESS_EVERY_S = 5.0

STATUS_COLUMNS = ("Done", "Trace ID", "Status", "Event status", "Errors")
HISTORY_COLUMNS = (
    "Event ID",
    "Start",
    "End",
    "Domain",
    "Domain ID",
    "Component",
    "Operation",
    "Status",
    "Event status",
    "Errors",
)
PATH_COLUMNS = ("Trace ID", "Event ID", "At")

err = Console(stderr=True)


def error_text(errors: Sequence[Any]) -> str:
    """Errors as okdata shows them: the English message of each, else any language."""
    out = []
    for error in errors:
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, dict) and message:
            out.append(str(message.get("en") or next(iter(message.values()))))
        elif message is not None:
            out.append(str(message))
    return "; ".join(out)


def client(url: str | None, tenant: str | None, token: str | None = None) -> Client:
    """The SDK client the CLI reads and sends with: one retry, long enough for ``?wait``;
    ``token`` None means ``WAYMARK_TOKEN``, if set."""
    return Client(server_url(url), tenant, timeout=LONG_POLL_S + 10, token=token, retries=1)


@contextlib.contextmanager
def reader(url: str | None, tenant: str | None, token: str | None = None) -> Iterator[Client]:
    """A client whose errors end the command with exit code 4 and a clear message."""
    api = client(url, tenant, token)
    try:
        yield api
    except ClientError as exc:
        report(exc)
        raise typer.Exit(EXIT_UNREADABLE) from exc
    finally:
        api.close()


def report(exc: ClientError) -> None:
    lines = [str(exc)]
    if isinstance(exc, APIError):
        lines += [".".join(map(str, e["loc"])) + ": " + e["msg"] for e in exc.errors]
    if isinstance(exc, Unauthenticated):
        lines.append("give a key or token the server accepts: --token or WAYMARK_TOKEN")
    err.print("[red]error:[/red] " + "\n  ".join(lines), highlight=False)


def status_row(found: Summary) -> dict[str, Any]:
    summary = found.model_dump(mode="json")
    return {
        "Done": summary["done"],
        "Trace ID": summary["trace_id"],
        "Status": summary["trace_status"],
        "Event status": summary["trace_event_status"],
        "Errors": error_text(summary["errors"]),
        # json only:
        "done": summary["done"],
        "trace_id": summary["trace_id"],
        "trace_status": summary["trace_status"],
        "trace_event_status": summary["trace_event_status"],
        "errors": summary["errors"],
        "state": summary["state"],
        "outcome": summary["outcome"],
    }


def history_row(event: dict[str, Any]) -> dict[str, Any]:
    event_status = "FAILED" if event.get("status") == "FAILED" else "OK"
    return {
        "Event ID": event["event_id"],
        "Start": event.get("start_time", ""),
        "End": event.get("end_time", ""),
        "Domain": event.get("domain", ""),
        "Domain ID": event.get("domain_id", ""),
        "Component": event.get("component", ""),
        "Operation": event.get("operation", ""),
        "Status": event.get("trace_status", ""),
        "Event status": event_status,
        "Errors": error_text(event.get("errors", [])),
        "event": event,
    }


def emit(
    rows: list[dict[str, Any]], columns: Sequence[str], fmt: str, title: str | None = None
) -> None:
    """Print rows: a rich table, CSV of the columns, or JSON (the API's own fields)."""
    if fmt == "json":
        data = [_json_of(row, columns) for row in rows]
        payload: Any = data[0] if columns is STATUS_COLUMNS else data
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
    else:
        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row[c]) for c in columns))
        Console().print(table)


def _json_of(row: dict[str, Any], columns: Sequence[str]) -> Any:
    if columns is STATUS_COLUMNS:
        keys = ("done", "trace_id", "trace_status", "trace_event_status", "errors", "state")
        return {k: row[k] for k in (*keys, "outcome")}
    if columns is HISTORY_COLUMNS:
        return row["event"]
    return {"trace_id": row["Trace ID"], "event_id": row["Event ID"], "at": row["At"]}


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def wait_for(
    trace_id: str, timeout: float, url: str | None, tenant: str | None, token: str | None = None
) -> int:
    """Long-poll until done, showing progress on a terminal; the exit code says how it ended."""
    deadline = time.monotonic() + max(0.0, timeout)
    progress = err.status(f"waiting for {trace_id}") if err.is_terminal else None
    summary: Summary | None = None
    with reader(url, tenant, token) as api:
        if progress is not None:
            progress.start()
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    summary = api.wait(trace_id, min(remaining, PROGRESS_EVERY_S))
                    break
                except WaitTimeout as exc:
                    summary = exc.summary or summary
                if progress is not None and summary is not None:
                    where = summary.current.stage or summary.current.component or "?"
                    progress.update(f"waiting for {trace_id}: {summary.state} at {where}")
            if summary is None:  # never seen: one last plain read says why
                summary = api.summary(trace_id)
        finally:
            if progress is not None:
                progress.stop()
    typer.echo(f"{trace_id}: {summary.state} ({summary.outcome})")
    if not summary.done:
        return EXIT_NOT_DONE
    return EXIT_FAILED if summary.state == "FAILED" else 0


def send_events(
    file: str | None,
    flags: dict[str, str],
    url: str | None,
    tenant: str | None,
    token: str | None = None,
) -> int:
    """POST events from a file, stdin or flags; print the accepted ids."""
    if file is not None and flags:
        err.print("[red]error:[/red] give either a file or event flags, not both")
        return EXIT_UNREADABLE
    if file is not None:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        try:
            events = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            err.print(f"[red]error:[/red] {file} is not JSON: {exc}")
            return EXIT_UNREADABLE
    elif "trace_id" in flags:
        events = flags
    else:
        err.print("[red]error:[/red] give a file ('-' for stdin) or at least --trace-id")
        return EXIT_UNREADABLE
    with reader(url, tenant, token) as api:
        result = api.send(events)
    for event_id in result.event_ids:
        typer.echo(event_id)
    return 0
