"""Translators: the pure mappings between foreign messages and native events.

One module per anchor (:mod:`~waymark.translate.okdata`, :mod:`~waymark.translate.gsm`,
:mod:`~waymark.translate.openlineage`). They hold no state and do no I/O, so the API's
front doors and the collector share them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from waymark.errors import TooLarge
from waymark.ingest import field_errors, invalid, malformed
from waymark.model import MAX_BATCH, Event

TEXT_MAX = 10_000


def clip(text: str | None, limit: int = TEXT_MAX) -> str | None:
    """Free text (exception texts, stack traces) cut to what an event holds, so a long
    traceback never costs the event itself."""
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def one_or_many(
    data: Any,
    noun: str,
    convert: Callable[[dict[str, Any]], Event],
    *,
    where: Sequence[Any] = (),
    names: Mapping[str, str] | None = None,
) -> list[Event]:
    """One foreign message (a JSON object) or a list of 1 to 1,000 of them, each made a
    native event by ``convert``; all or nothing. :class:`~waymark.errors.BadRequest` names
    every bad field, under ``where`` and, in a list, the message's index; ``names`` renames
    a native field in an error back to the anchor's name for it."""
    if not isinstance(data, list | dict):
        raise malformed([*where], f"must be {noun} object or a list of them")
    items = data if isinstance(data, list) else [data]
    if not items:
        raise invalid([{"loc": [*where], "msg": f"must hold 1 to {MAX_BATCH}, not none"}])
    if len(items) > MAX_BATCH:
        raise TooLarge(f"batch of {len(items)}; at most {MAX_BATCH} are accepted")
    events: list[Event] = []
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        at = [*where, i] if isinstance(data, list) else [*where]
        if not isinstance(item, dict):
            errors.append({"loc": at, "msg": f"must be {noun} object"})
            continue
        try:
            events.append(convert(item))
        except ValidationError as exc:
            errors += field_errors(exc, at, names)
    if errors:
        raise invalid(errors)
    return events
