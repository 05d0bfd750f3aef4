"""The transport interface: how the tracker's events leave the process.

A transport delivers batches of events. The tracker calls it from exactly one thread (its
sender), so a transport need not be thread-safe, and never from user code, so a slow or
failing transport never slows or breaks a step.

- :meth:`Transport.send` delivers one batch for one tenant and returns once the events
  are durable (stored by the server, acknowledged by JetStream, written out). Each event
  is a JSON-ready dict in the native ``POST /v1/events`` shape, already validated, with
  ``event_id`` set: sending the same batch twice stores nothing twice.
- To refuse a batch for good (retrying cannot help) raise
  :class:`~waymark.sdk.errors.InvalidRequest`: the tracker drops it and counts it as
  rejected. Any other exception means "not delivered, try again": the tracker retries the
  same batch with backoff.
- :meth:`Transport.close` releases connections; the tracker calls it once, at the end.

Transports are chosen by ``kind`` (see :func:`waymark.sdk.transports.resolve`): ``http``,
``nats``, ``console``, ``noop``, ``memory``. Any object with these two methods will do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

EventDoc = dict[str, Any]


class Transport(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def send(self, tenant: str, events: Sequence[EventDoc]) -> None:
        """Deliver ``events`` (one batch, one tenant); raise to have the batch retried."""

    def close(self) -> None:  # noqa: B027 - most transports hold nothing
        """Release whatever the transport holds."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.kind!r}>"
