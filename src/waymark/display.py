"""How the CLI prints what it read: a table on a terminal, plain text when piped, CSV, JSON.

``--format table`` (the default) adapts to where the output goes. On a terminal it is a
table that fits the terminal's width (``COLUMNS``), with colour (off with ``NO_COLOR``):
long values fold onto more lines inside their column, and a few columns use a shorter form
(a clock time instead of the whole timestamp). Piped or redirected it is plain text, one
line per row, columns aligned with spaces, no box drawing, no colour, and every value
whole: nothing cut, nothing wrapped. CSV and JSON are for programs and never change.

Every text goes through :func:`waymark.printable.printable` (JSON through
:func:`~waymark.printable.json_printable`) before it is printed: a producer's control
characters are shown escaped, never sent to the terminal.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from waymark.printable import json_printable, printable


class Format(StrEnum):
    """What ``--format`` chooses."""

    table = "table"
    json = "json"
    csv = "csv"


STYLES = {
    "FAILED": "bold red",
    "SUCCEEDED": "green",
    "SUCCESS": "green",
    "OK": "green",
    "RUNNING": "yellow",
    "IN_PROGRESS": "yellow",
    "SUBMITTED": "yellow",
    "STALLED": "magenta",
    "PARTIAL_SUCCESS": "yellow",
}
"""Colours of states and statuses on a terminal."""

EMPTY = "-"
"""An empty value in plain text, so that every line has every column."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One value: ``text`` whole (plain text, CSV); ``short`` for a terminal's table."""

    text: str
    short: str | None = None

    @property
    def style(self) -> str | None:
        return STYLES.get(self.text)


@dataclass(frozen=True, slots=True)
class Column:
    """On a terminal, a column that may ``fold`` shares the width the others leave, and
    its long values fold onto more lines; the others are as wide as their widest value."""

    name: str
    fold: bool = False
    justify: Literal["left", "right"] = "left"


@dataclass(slots=True)
class Listing:
    """What a command prints: rows of cells under columns, and the JSON that stands for
    them (the API's own fields). ``record``: one row, shown as name/value lines."""

    columns: Sequence[Column]
    rows: list[list[Cell]]
    data: Any
    title: str | None = None
    record: bool = False
    csv: list[list[str]] | None = None
    """CSV of other columns than the table's, header first (what scripts already read)."""


def cell(value: Any, short: str | None = None) -> Cell:
    if isinstance(value, bool):
        return Cell("yes" if value else "no")
    return Cell("" if value is None else str(value), short)


def stdout_console() -> Console:
    return Console(highlight=False)


def emit(listing: Listing, fmt: Format | str) -> None:
    if fmt == Format.json:
        sys.stdout.write(dumps(listing.data) + "\n")
    elif fmt == Format.csv:
        writer = csv.writer(sys.stdout)
        if listing.csv is not None:
            writer.writerows([printable(v) for v in row] for row in listing.csv)
        else:
            writer.writerow([c.name for c in listing.columns])
            writer.writerows([printable(c.text) for c in row] for row in listing.rows)
    else:
        console = stdout_console()
        if console.is_terminal:
            console.print(_table(listing, console.width))
        else:
            sys.stdout.write(plain(listing))


def dumps(data: Any) -> str:
    return json_printable(json.dumps(data, indent=2, ensure_ascii=False))


def plain(listing: Listing) -> str:
    """Aligned plain text, every value whole and on one line."""
    names = [c.name for c in listing.columns]
    if listing.record:
        width = max(map(cell_len, names))
        values = [printable(c.text) or EMPTY for c in listing.rows[0]]
        return "".join(f"{_pad(n, width)}  {v}\n" for n, v in zip(names, values, strict=True))
    table = [names] + [[printable(c.text) or EMPTY for c in row] for row in listing.rows]
    widths = [max(cell_len(line[i]) for line in table) for i in range(len(names))]
    lines = []
    for line in table:
        padded = [_pad(v, w) for v, w in zip(line[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, line[-1]]) + "\n")
    return "".join(lines)


def plain_line(row: Sequence[Cell]) -> str:
    """One row as plain text, without alignment (for rows printed as they come)."""
    return "  ".join(printable(c.text) or EMPTY for c in row)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - cell_len(text))


def _table(listing: Listing, width: int) -> Table:
    if listing.record:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for column, value in zip(listing.columns, listing.rows[0], strict=True):
            grid.add_row(column.name, _text(value))
        return grid
    title = Text(printable(listing.title), style="italic") if listing.title else None
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    shown = [[_shown(c) for c in row] for row in listing.rows]
    widest = [
        max([cell_len(c.name), *(cell_len(row[i]) for row in shown)])
        for i, c in enumerate(listing.columns)
    ]
    fixed = sum(w for w, c in zip(widest, listing.columns, strict=True) if not c.fold)
    room = width - fixed - COLUMN_GAP * (len(listing.columns) - 1)
    widths = share(room, [w for w, c in zip(widest, listing.columns, strict=True) if c.fold])
    for column, wide in zip(listing.columns, widest, strict=True):
        table.add_column(
            column.name,
            justify=column.justify,
            overflow="fold",
            no_wrap=not column.fold,
            width=widths.pop(0) if column.fold else wide,
        )
    for row in listing.rows:
        table.add_row(*(_text(c) for c in row))
    return table


COLUMN_GAP = 3
"""Between two columns of the terminal's table: padding, rule, padding."""
MIN_FOLDED = 6


def share(room: int, wanted: list[int]) -> list[int]:
    """Widths for the folding columns: each gets what it wants if that is at most an
    equal share of what is left, and the widest split the rest equally."""
    widths = [0] * len(wanted)
    left = len(wanted)
    for i in sorted(range(len(wanted)), key=wanted.__getitem__):
        fair = max(MIN_FOLDED, room // left)
        widths[i] = min(wanted[i], fair)
        room -= widths[i]
        left -= 1
    return widths


def _shown(value: Cell) -> str:
    return printable(value.short if value.short is not None else value.text)


def _text(value: Cell) -> Text:
    """A cell as rich text: taken literally (no markup), escaped, coloured by its value."""
    return Text(_shown(value), style=value.style or "")


# -- times ----------------------------------------------------------------------------------------


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def duration(ms: float | None) -> str:
    """A duration as people say it: ``250 ms``, ``1.6 s``, ``41 s``, ``3 min``, ``2 h 5 min``."""
    if ms is None or ms < 0:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        rest = int(seconds % 60)
        return f"{minutes} min {rest} s" if minutes < 10 and rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def ago(iso: str | None, now: datetime | None = None) -> str:
    """How long ago ``iso`` was: ``41 s ago``; ``in 3 min`` for a time ahead of the clock."""
    moment = parse_time(iso)
    if moment is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    said = duration(abs(seconds) * 1000)
    return f"{said} ago" if seconds > 0 else f"in {said}"


def clock(moment: datetime, with_day: bool) -> str:
    """The time of day in UTC (``10:00:07``), with the date (``11-20 10:00:07``) when the
    times shown fall on different days."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%m-%d %H:%M:%S" if with_day else "%H:%M:%S")
