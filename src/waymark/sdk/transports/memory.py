"""``memory``: events kept in a list, for users' own tests.

>>> transport = MemoryTransport()
>>> tracker = Tracker(transport=transport)           # doctest: +SKIP
>>> ...; tracker.flush(); transport.events           # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from waymark.sdk.transports.base import EventDoc, Transport


class MemoryTransport(Transport):
    kind = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[EventDoc] = []
        self._tenants: list[str] = []

    def send(self, tenant: str, events: Sequence[EventDoc]) -> None:
        with self._lock:
            self._events.extend(events)
            self._tenants.extend(tenant for _ in events)

    @property
    def events(self) -> list[EventDoc]:
        """A copy of every event delivered so far, in delivery order."""
        with self._lock:
            return list(self._events)

    @property
    def tenants(self) -> list[str]:
        """The tenant of each event in :attr:`events`."""
        with self._lock:
            return list(self._tenants)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._tenants.clear()
