"""``waymark dead-letters``: the messages the collector parked, with the reason; replay
them onto the bus once what made them fail is fixed, or discard them."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Sequence

import orjson

from waymark import wire
from waymark.bus import open_bus
from waymark.display import Column, Format, Listing, cell, emit
from waymark.model import iso
from waymark.printable import json_printable
from waymark.store import open_store
from waymark.store.base import DeadLetter, Store

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
    if as_json:  # producers' bytes: control characters as JSON escapes, the same value
        sys.stdout.write(json_printable(orjson.dumps([letter_json(x) for x in letters]).decode()))
        sys.stdout.write("\n")
        return
    columns = [Column("ID"), Column("Received at"), Column("Subject", fold=True),
               Column("Reason", fold=True), Column("Message", fold=True)]  # fmt: skip
    rows = [
        [cell(x.id), cell(iso(x.received_us)), cell(x.subject), cell(x.reason), cell(preview(x))]
        for x in letters
    ]
    emit(Listing(columns, rows, None, title=f"Dead letters ({len(letters)})"), Format.table)


def preview(letter: DeadLetter) -> str:
    """The start of the raw message (``--format json`` has all of it)."""
    text = letter.raw.decode(errors="replace")
    return text if len(text) <= PREVIEW else text[:PREVIEW] + "…"


def _letters(store: Store, ids: Sequence[int]) -> list[DeadLetter]:
    """The letters of ``ids``, oldest first; ValueError naming any that is not parked."""
    found = store.dead_letters(limit=len(ids), ids=ids)
    missing = sorted(set(ids) - {x.id for x in found})
    if missing:
        raise ValueError(f"no dead letter with id {', '.join(map(str, missing))}")
    return sorted(found, key=lambda x: x.id)


def replay(store_url: str, bus_url: str, ids: Sequence[int]) -> list[int]:
    """Publish each letter's raw bytes again to its subject, then remove it; return the ids
    replayed. A letter leaves the table only once the bus has stored it again, so an
    interrupted replay loses nothing; one replayed twice stores nothing twice (events
    carry their ids). A message that still cannot be used is parked again."""
    store = open_store(store_url)
    try:
        letters = _letters(store, ids)
        bus = open_bus(bus_url)

        async def publish_each() -> list[int]:
            done: list[int] = []
            try:
                await bus.connect()
                for letter in letters:
                    # No Nats-Msg-Id: the stream's duplicate window must not drop it.
                    await bus.publish([wire.Message(letter.subject, {}, letter.raw)])
                    await asyncio.to_thread(store.discard_dead_letters, [letter.id])
                    done.append(letter.id)
            finally:
                await bus.close()
            return done

        return asyncio.run(publish_each())
    finally:
        store.close()


def discard(store_url: str, ids: Sequence[int]) -> int:
    """Remove letters given up on; ValueError naming any that is not parked."""
    store = open_store(store_url)
    try:
        _letters(store, ids)
        return store.discard_dead_letters(ids)
    finally:
        store.close()
