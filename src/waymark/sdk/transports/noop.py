"""``noop``: events go nowhere. The fallback when nothing is configured."""

from __future__ import annotations

from collections.abc import Sequence

from waymark.sdk.transports.base import EventDoc, Transport


class NoopTransport(Transport):
    kind = "noop"

    def send(self, tenant: str, events: Sequence[EventDoc]) -> None:
        return None
