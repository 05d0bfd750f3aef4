"""The live stream's messages (``GET /v1/stream``, Server-Sent Events) as the SDK reads them.

:class:`Messages` turns the stream's lines into :class:`StreamMessage` values, as the
HTML standard's event-stream parsing does: fields ``event``, ``id`` and ``data`` (data
lines joined with newlines), a blank line ends a message, lines starting with ``:`` are
comments. An ``id`` without data (the server's keep-alive) moves the position a client
resumes from without being a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from waymark.model import Summary

#: what a stream's reads may take at most: the server writes at least every 15 s
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One message: ``event`` is ``summary`` (``data`` is the trace's summary), ``reset``
    (changes may have been missed: list the traces again; ``data["reason"]`` says why) or
    ``ready`` (the stream has started); ``id`` is where to resume after it."""

    event: str
    id: str
    data: Any

    @property
    def summary(self) -> Summary | None:
        """The trace's summary of a ``summary`` message, else None."""
        return Summary.model_validate(self.data) if self.event == "summary" else None


class Messages:
    """A parser fed one line at a time (without its line ending)."""

    def __init__(self, last_event_id: str | None = None) -> None:
        #: the id to resume from: that of the last message or keep-alive seen
        self.last_event_id = last_event_id
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> StreamMessage | None:
        """The message that ``line`` completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self.last_event_id = value
        return None

    def _dispatch(self) -> StreamMessage | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return StreamMessage(event, self.last_event_id or "", orjson.loads("\n".join(data)))
