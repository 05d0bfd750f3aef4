"""A live stream (``GET /v1/stream``) read in the test's own thread, message by message,
with the SDK's parser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from waymark.sdk.stream import Messages, StreamMessage


class Stream:
    """An open stream; the server must write at least every second or so (a short
    ``WAYMARK_STREAM_KEEP_ALIVE``), so that reads return and deadlines are kept."""

    def __init__(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._client = httpx.Client(base_url=url, timeout=10)
        self._opened = self._client.stream("GET", "/v1/stream", params=params, headers=headers)
        self.response = self._opened.__enter__()
        self.parser = Messages()
        self._lines: Iterator[str] = self.response.iter_lines()
        #: every message read so far, in order
        self.seen: list[StreamMessage] = []
        #: whether the server ended the answer
        self.ended = False

    def next(self, timeout_s: float = 10) -> StreamMessage | None:
        """The next message, or None if none came within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        for line in self._lines:
            message = self.parser.feed(line)
            if message is not None:
                self.seen.append(message)
                return message
            if time.monotonic() > deadline:
                return None
        self.ended = True
        return None

    def summaries(self, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
        """The next ``count`` summaries (fewer if they do not come within ``timeout_s``);
        other messages are only kept in :attr:`seen`."""
        deadline = time.monotonic() + timeout_s
        found: list[dict[str, Any]] = []
        while len(found) < count and time.monotonic() < deadline and not self.ended:
            message = self.next(deadline - time.monotonic())
            if message is not None and message.event == "summary":
                found.append(message.data)
        return found

    def quiet_for(self, seconds: float) -> list[StreamMessage]:
        """The messages that come within ``seconds`` (keep-alives are not messages)."""
        came: list[StreamMessage] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.ended:
            message = self.next(deadline - time.monotonic())
            if message is not None:
                came.append(message)
        return came

    def close(self) -> None:
        self._opened.__exit__(None, None, None)
        self._client.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
