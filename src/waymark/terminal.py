"""What the CLI's client commands do: read and send through the API, and say what they found.

Exit codes: 0 success; for ``wait`` 1 when the trace failed and 2 when it is not done in
time (also when it never appeared); 4 when the server cannot be reached or answers with an
error (unknown trace, bad input). How the answers are printed: :mod:`waymark.display`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.text import Text

from waymark.config import server_url
from waymark.display import (
    Cell,
    Column,
    Listing,
    ago,
    cell,
    clock,
    duration,
    parse_time,
    plain_line,
    stdout_console,
)
from waymark.model import Summary
from waymark.printable import printable
from waymark.sdk import Client
from waymark.sdk.errors import (
    APIError,
    ClientError,
    ConnectionFailed,
    TraceNotFound,
    Unauthenticated,
    WaitTimeout,
)

EXIT_FAILED = 1
EXIT_NOT_DONE = 2
EXIT_UNREADABLE = 4
LONG_POLL_S = 60.0
STEP_POLL_S = 1.0
"""``wait`` asks at least this often whether new events arrived."""

err = Console(stderr=True, highlight=False)


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


def shown_errors(summary: dict[str, Any]) -> str:
    """A summary's errors: the first and the last ones, and how many are left out between
    (``waymark history`` lists every event's)."""
    first, last = summary["errors"], summary["last_errors"]
    left_out = summary["error_count"] - len(first) - len(last)
    gap = [f"({left_out} more)"] if left_out else []
    return "; ".join(text for text in (error_text(first), *gap, error_text(last)) if text)


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
        report(exc, api.url)
        raise typer.Exit(EXIT_UNREADABLE) from exc
    finally:
        api.close()


def say_error(message: str, *details: str) -> None:
    """An error on stderr, each detail on a line of its own, never wrapped or cut."""
    lines = [printable(message), *("  " + printable(d) for d in details)]
    err.print(Text.assemble(("error: ", "red"), "\n".join(lines)), soft_wrap=True)


def report(exc: ClientError, url: str) -> None:
    """An error in one message: the URL tried when it could not be reached; each rejected
    field once (the problem's ``detail`` repeats the first of them)."""
    if isinstance(exc, ConnectionFailed):
        say_error(f"cannot reach the Waymark server at {url}: {exc}")
    elif isinstance(exc, APIError) and exc.errors:
        fields = [
            ".".join(map(str, e.get("loc", []))) + ": " + str(e.get("msg")) for e in exc.errors
        ]
        say_error(f"{exc.status} rejected:", *fields)
    elif isinstance(exc, Unauthenticated):
        say_error(str(exc), "give a key or token the server accepts: --token or WAYMARK_TOKEN")
    else:
        say_error(str(exc))


# -- status ---------------------------------------------------------------------------------------


def step_name(current: Any) -> str:
    """A step as one text: its component, stage and operation, those it has."""
    parts = (current.get("component"), current.get("stage"), current.get("operation"))
    return " / ".join(p for p in parts if p)


STATUS_FOLDS = {"Current step", "Errors"}


def status_listing(found: Summary, now: datetime | None = None) -> Listing:
    """Where a trace stands: its state, the step it is at and how long ago it last moved,
    and okdata's Done, Trace status and Event status."""
    summary = found.model_dump(mode="json")
    current = summary["current"]
    step = step_name(current)
    moved = summary["updated_at"]
    errors = shown_errors(summary)
    cells = {
        "Trace ID": cell(summary["trace_id"]),
        "State": cell(summary["state"]),
        "Current step": cell(f"{step} ({current['status']})" if step else current["status"]),
        "Last moved": cell(f"{moved} ({ago(moved, now)})", short=ago(moved, now)),
        "Started": cell(summary["started_at"]),
        "Duration": cell(duration(summary["duration_ms"])),
        "Events": cell(summary["event_count"]),
        "Done": cell(summary["done"]),
        "Trace status": cell(summary["trace_status"]),
        "Event status": cell(summary["trace_event_status"]),
        "Errors": cell(errors),
    }
    columns = [Column(name, fold=name in STATUS_FOLDS) for name in cells]
    okdata = [  # the CSV: what `okdata status` shows
        ["Done", "Trace ID", "Status", "Event status", "Errors"],
        [cells["Done"].text, summary["trace_id"], summary["trace_status"],
         summary["trace_event_status"], errors],
    ]  # fmt: skip
    return Listing(columns, [list(cells.values())], summary, record=True, csv=okdata)


# -- history --------------------------------------------------------------------------------------


def history_columns(wide: bool) -> tuple[Column, ...]:
    ids = (Column("Event ID", fold=True), Column("Trace"), Column("Domain ID", fold=True))
    return (
        Column("Time"),
        Column("Took", justify="right"),
        Column("Component", fold=True),
        Column("Step", fold=True),  # the stage, else the operation
        Column("Status"),
        *(ids if wide else ()),
        Column("Error or message", fold=True),
    )


def event_time(event: dict[str, Any]) -> str:
    """The event's time by the sort key: its end, else its start, else its arrival."""
    found = event.get("time") or event.get("end_time") or event.get("start_time")
    return str(found or event.get("received_at") or "")


def event_duration(event: dict[str, Any]) -> str:
    if event.get("duration_ms") is not None:
        return duration(float(event["duration_ms"]))
    start, end = parse_time(event.get("start_time")), parse_time(event.get("end_time"))
    if start is None or end is None:
        return ""
    return duration((end - start).total_seconds() * 1000)


def event_says(event: dict[str, Any]) -> str:
    """What went wrong or what the step said: its errors, exception and message."""
    said = (error_text(event.get("errors") or []), event.get("exception"), event.get("message"))
    return "; ".join(dict.fromkeys(str(s) for s in said if s))


def history_row(event: dict[str, Any], wide: bool, with_day: bool) -> list[Cell]:
    at = event_time(event)
    moment = parse_time(at)
    ids = (
        [cell(event.get("event_id")), cell(event.get("trace_status")), cell(event.get("domain_id"))]
        if wide
        else []
    )
    return [
        cell(at, short=clock(moment, with_day) if moment else None),
        cell(event_duration(event)),
        cell(event.get("component")),
        cell(event.get("stage") or event.get("operation")),
        cell(event.get("status")),
        *ids,
        cell(event_says(event)),
    ]


def history_listing(trace_id: str, events: list[dict[str, Any]], wide: bool) -> Listing:
    days = {m.astimezone(UTC).date() for m in map(parse_time, map(event_time, events)) if m}
    with_day = len(days) > 1
    title = f"History of {trace_id}"
    if len(days) == 1:
        title += f", {next(iter(days)).isoformat()} (UTC)"
    elif days:
        title += " (UTC)"
    rows = [history_row(e, wide, with_day) for e in events]
    okdata = [OKDATA_HISTORY, *map(okdata_history_row, events)]
    return Listing(history_columns(wide), rows, events, title=title, csv=okdata)


OKDATA_HISTORY = [
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
]
"""The history's CSV columns: those of ``okdata status --history``."""


def okdata_history_row(event: dict[str, Any]) -> list[str]:
    fields = ("event_id", "start_time", "end_time", "domain", "domain_id", "component")
    return [
        *(str(event.get(f) or "") for f in fields),
        str(event.get("operation") or ""),
        str(event.get("trace_status") or ""),
        "FAILED" if event.get("status") == "FAILED" else "OK",
        error_text(event.get("errors") or []),
    ]


# -- path -----------------------------------------------------------------------------------------

PATH_COLUMNS = (
    Column("Trace ID", fold=True),
    Column("State"),
    Column("Touched"),
    Column("Current step", fold=True),
)


def path_listing(api: Client, path: str, limit: int) -> Listing:
    """Each trace that touched ``path`` once (newest touch first), with its state."""
    newest: dict[str, Any] = {}
    for hit in api.paths(path, limit=limit):
        newest.setdefault(hit.trace_id, hit)
    rows, data = [], []
    for trace_id, hit in newest.items():
        try:
            summary: Summary | None = api.summary(trace_id)
        except TraceNotFound:  # pruned since the lookup
            summary = None
        state = summary.state if summary is not None else ""
        step = step_name(summary.current.model_dump()) if summary is not None else ""
        rows.append([cell(trace_id), cell(state), cell(hit.at, short=ago(hit.at)), cell(step)])
        data.append({"trace_id": trace_id, "state": state or None, "event_id": hit.event_id,
                     "at": hit.at})  # fmt: skip
    return Listing(PATH_COLUMNS, rows, data, title=f"Traces that touched {path}")


# -- wait -----------------------------------------------------------------------------------------


def wait_for(
    trace_id: str, timeout: float, url: str | None, tenant: str | None, token: str | None = None
) -> int:
    """Show each step of the trace as it arrives until it is done; the exit code says how it
    ended. Waits on the server (``?wait``) and reads the events again only when their
    number changed."""
    deadline = time.monotonic() + max(0.0, timeout)
    console = stdout_console()
    shown: set[str] = set()
    count = 0
    summary: Summary | None = None
    with reader(url, tenant, token) as api:
        while True:
            remaining = deadline - time.monotonic()
            summary = look(api, trace_id, min(remaining, STEP_POLL_S)) or summary
            if summary is not None and summary.event_count != count:
                count = summary.event_count
                fresh = [
                    e for e in api.events(trace_id, page_size=1000) if e["event_id"] not in shown
                ]
                shown.update(e["event_id"] for e in fresh)
                show_steps(console, fresh)
            if (summary is not None and summary.done) or deadline - time.monotonic() <= 0:
                break
    if summary is None:
        say_error(f"trace {trace_id!r} did not appear within {timeout:g} s")
        return EXIT_NOT_DONE
    line = f"{trace_id}: {summary.state} ({summary.outcome})"
    console.print(Text(printable(line), style=Cell(summary.state).style or ""))
    if not summary.done:
        return EXIT_NOT_DONE
    return EXIT_FAILED if summary.state == "FAILED" else 0


def look(api: Client, trace_id: str, seconds: float) -> Summary | None:
    """The summary, once the trace is done or after ``seconds`` (none: at once); None while
    the trace has no events."""
    try:
        return api.wait(trace_id, seconds) if seconds > 0 else api.summary(trace_id)
    except WaitTimeout as exc:
        return exc.summary
    except TraceNotFound:
        return None


def show_steps(console: Console, events: Iterable[dict[str, Any]]) -> None:
    """Events as lines, one a step: the history's columns without the header."""
    for event in events:
        row = history_row(event, wide=False, with_day=False)
        if console.is_terminal:
            line = Text("  ").join(
                Text(printable(c.short or c.text), style=c.style or "") for c in row if c.text
            )
            console.print(line, overflow="fold")
        else:
            sys.stdout.write(plain_line(row) + "\n")
            sys.stdout.flush()


# -- watch ----------------------------------------------------------------------------------------


def change_row(summary: Summary) -> list[Cell]:
    """A change as a line: when the trace last moved (UTC), its id, state and current step."""
    current = summary.current.model_dump()
    moved = parse_time(summary.updated_at)
    return [
        Cell("" if moved is None else clock(moved, with_day=False)),
        Cell(summary.trace_id),
        Cell(summary.state),
        Cell((step_name(current) + " " + current["status"]).strip()),
    ]


def watch_changes(
    api: Client,
    *,
    state: Sequence[str],
    dataset: Sequence[str],
    component: Sequence[str],
    count: int | None,
    as_json: bool,
) -> None:
    """Print each change of the tenant's traces as it comes (``GET /v1/stream``), a line
    each (a JSON object each with ``as_json``); after ``count`` changes, stop."""
    console = stdout_console()
    shown = 0
    for message in api.stream(state=state, dataset=dataset, component=component):
        if message.event == "reset":
            say_error(f"changes may have been missed: {message.data.get('reason', '')}")
        summary = message.summary
        if summary is None:
            continue
        if as_json:
            sys.stdout.write(summary.model_dump_json() + "\n")
        elif console.is_terminal:
            row = change_row(summary)
            console.print(
                Text("  ").join(Text(printable(c.text), style=c.style or "") for c in row)
            )
        else:
            sys.stdout.write(plain_line(change_row(summary)) + "\n")
        sys.stdout.flush()
        shown += 1
        if count is not None and shown >= count:
            return


# -- send -----------------------------------------------------------------------------------------


def send_events(
    file: str | None,
    flags: dict[str, Any],
    url: str | None,
    tenant: str | None,
    token: str | None = None,
) -> int:
    """POST events from a file, stdin or flags; print the accepted ids."""
    if file is not None and flags:
        say_error("give either a file or event flags, not both")
        return EXIT_UNREADABLE
    if file is not None:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        try:
            events = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            say_error(f"{file} is not JSON: {exc}")
            return EXIT_UNREADABLE
    elif "trace_id" in flags:
        events = flags
    else:
        say_error("give a file ('-' for stdin) or at least --trace-id")
        return EXIT_UNREADABLE
    with reader(url, tenant, token) as api:
        result = api.send(events)
    for event_id in result.event_ids:
        typer.echo(event_id)
    return 0
