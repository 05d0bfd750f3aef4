"""``waymark dead-letters``: the messages the collector parked, with the reason."""

from __future__ import annotations

import base64
import sys

import orjson
from rich.console import Console
from rich.table import Table

from waymark.model import iso
from waymark.store import open_store
from waymark.store.base import DeadLetter

PREVIEW = 120  # characters of the raw message shown in the table


def letter_json(letter: DeadLetter) -> dict[str, object]:
    """One letter as JSON: the raw bytes as text when they are UTF-8, else base64."""
    try:
        raw: dict[str, str] = {"raw": letter.raw.decode()}
    except UnicodeDecodeError:
        raw = {"raw_base64": base64.b64encode(letter.raw).decode()}
    return {
        "id": letter.id,
        "received_at": iso(letter.received_us),
        "subject": letter.subject,
        "reason": letter.reason,
        **raw,
    }


def show(store_url: str, *, limit: int, as_json: bool) -> None:
    store = open_store(store_url)
    try:
        letters = store.dead_letters(limit=limit)
    finally:
        store.close()
    if as_json:
        sys.stdout.buffer.write(orjson.dumps([letter_json(x) for x in letters]) + b"\n")
        return
    table = Table(title=f"Dead letters ({len(letters)})")
    for column in ("id", "received at", "subject", "reason", "message"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        text = letter.raw.decode(errors="replace")
        preview = text if len(text) <= PREVIEW else text[:PREVIEW] + "…"
        table.add_row(
            str(letter.id), iso(letter.received_us), letter.subject, letter.reason, preview
        )
    Console().print(table)
