"""``console``: one JSON line per event on standard error (or any text stream)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

import orjson

from waymark.sdk.transports.base import EventDoc, Transport


class ConsoleTransport(Transport):
    kind = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, tenant: str, events: Sequence[EventDoc]) -> None:
        stream = self._stream or sys.stderr
        lines = (orjson.dumps({"tenant": tenant, **e}).decode() for e in events)
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()
