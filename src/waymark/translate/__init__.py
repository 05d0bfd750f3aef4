"""Translators: the pure mappings between foreign messages and native events.

One module per anchor (:mod:`~waymark.translate.okdata`, :mod:`~waymark.translate.gsm`,
:mod:`~waymark.translate.openlineage`). They hold no state and do no I/O, so the API's
front doors and the collector share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

TEXT_MAX = 10_000


def clip(text: str | None, limit: int = TEXT_MAX) -> str | None:
    """Free text (exception texts, stack traces) cut to what an event holds, so a long
    traceback never costs the event itself."""
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def field_errors(
    exc: ValidationError, prefix: Sequence[Any], names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"loc", "msg"}``, under ``prefix``; ``names`` renames the first
    part of each location (a native field back to the anchor's name for it)."""
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        if loc and names and isinstance(loc[0], str):
            loc[0] = names.get(loc[0], loc[0])
        out.append({"loc": [*prefix, *loc], "msg": err["msg"]})
    return out
