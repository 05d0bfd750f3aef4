"""Translators: the pure mappings between foreign messages and native events.

One module per anchor (:mod:`~waymark.translate.okdata`, :mod:`~waymark.translate.gsm`,
:mod:`~waymark.translate.openlineage`). They hold no state and do no I/O, so the API's
front doors and the collector share them.
"""

from __future__ import annotations

TEXT_MAX = 10_000


def clip(text: str | None, limit: int = TEXT_MAX) -> str | None:
    """Free text (exception texts, stack traces) cut to what an event holds, so a long
    traceback never costs the event itself."""
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"
