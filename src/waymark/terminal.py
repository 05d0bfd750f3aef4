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
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from waymark.config import server_url

EXIT_FAILED = 1
EXIT_NOT_DONE = 2
EXIT_UNREADABLE = 4

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


class Unreadable(Exception):
    """The server could not be reached or refused the request."""


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


class Reader:
    def __init__(self, url: str | None, tenant: str | None) -> None:
        import os

        headers = {}
        the_tenant = tenant or os.environ.get("WAYMARK_TENANT")
        if the_tenant:
            headers["Waymark-Tenant"] = the_tenant
        self.http = httpx.Client(base_url=server_url(url), headers=headers, timeout=70.0)

    def get(self, route: str, **params: Any) -> Any:
        given = {k: v for k, v in params.items() if v is not None}
        try:
            response = self.http.get(route, params=given)
        except httpx.HTTPError as exc:
            raise Unreadable(f"cannot reach {self.http.base_url}: {exc}") from exc
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise Unreadable(f"{response.status_code}: {detail}")
        return response.json()

    def summary(self, trace_id: str, wait: float = 0) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/v1/traces/{trace_id}", wait=wait or None)
        return found

    def events(self, trace_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get(f"/v1/traces/{trace_id}/events", limit=1000, cursor=cursor)
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    def paths(self, path: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {"Trace ID": h["trace_id"], "Event ID": h["event_id"], "At": h["at"]}
            for h in self.get("/v1/paths", path=path)["items"]
        ]
        return rows


@contextlib.contextmanager
def reader(url: str | None, tenant: str | None) -> Iterator[Reader]:
    api = Reader(url, tenant)
    try:
        yield api
    except Unreadable as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_UNREADABLE) from exc
    finally:
        api.http.close()


def status_row(summary: dict[str, Any]) -> dict[str, Any]:
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


def wait_for(trace_id: str, timeout: float, url: str | None, tenant: str | None) -> int:
    """Long-poll until done; the exit code says how it ended."""
    deadline = time.monotonic() + max(0.0, timeout)
    api = Reader(url, tenant)
    progress = err.status(f"waiting for {trace_id}") if err.is_terminal else None
    summary: dict[str, Any] | None = None
    try:
        if progress is not None:
            progress.start()
        while True:
            remaining = deadline - time.monotonic()
            chunk = min(60.0, max(0.0, remaining))
            try:
                summary = api.summary(trace_id, wait=chunk)
            except Unreadable as exc:
                if "404" not in str(exc) or remaining <= 0:
                    err.print(f"[red]error:[/red] {exc}")
                    return EXIT_UNREADABLE
                time.sleep(min(0.5, max(0.0, remaining)))  # not created yet: keep waiting
                continue
            if progress is not None:
                current = summary["current"]
                where = current.get("stage") or current.get("component") or "?"
                progress.update(f"waiting for {trace_id}: {summary['state']} at {where}")
            if summary["done"] or deadline - time.monotonic() <= 0:
                break
    finally:
        if progress is not None:
            progress.stop()
        api.http.close()
    typer.echo(f"{trace_id}: {summary['state']} ({summary['outcome']})")
    if not summary["done"]:
        return EXIT_NOT_DONE
    return EXIT_FAILED if summary["state"] == "FAILED" else 0


def send_events(
    file: str | None, flags: dict[str, str], url: str | None, tenant: str | None
) -> int:
    """POST events from a file, stdin or flags; print the accepted ids."""
    if file is not None:
        raw = sys.stdin.buffer.read() if file == "-" else open(file, "rb").read()  # noqa: SIM115
        if flags:
            err.print("[red]error:[/red] give either a file or event flags, not both")
            return EXIT_UNREADABLE
    elif "trace_id" in flags:
        raw = json.dumps(flags).encode()
    else:
        err.print("[red]error:[/red] give a file ('-' for stdin) or at least --trace-id")
        return EXIT_UNREADABLE
    api = Reader(url, tenant)
    try:
        response = api.http.post(
            "/v1/events", content=raw, headers={"Content-Type": "application/json"}
        )
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach {api.http.base_url}: {exc}")
        return EXIT_UNREADABLE
    finally:
        api.http.close()
    if response.status_code != 202:
        try:
            body = response.json()
            detail = body.get("detail", "")
            for item in body.get("errors", []):
                detail += "\n  " + ".".join(map(str, item["loc"])) + ": " + item["msg"]
        except ValueError:
            detail = response.text
        err.print(f"[red]error {response.status_code}:[/red] {detail}")
        return EXIT_UNREADABLE
    for event_id in response.json()["event_ids"]:
        typer.echo(event_id)
    return 0
