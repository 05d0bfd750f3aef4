"""Sinks: where accepted events go before the producer is told "accepted".

:class:`DirectSink` appends to the store and returns once committed (the
embedded default). The bus sink (:mod:`waymark.bus`) publishes to JetStream and
returns once the server has acknowledged. Either way, returning means durable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from waymark.model import Record
from waymark.store.base import Store
from waymark.watch import Watcher


class Sink(ABC):
    @abstractmethod
    async def submit(self, records: Sequence[Record]) -> None:
        """Make the records durable; raise :class:`waymark.errors.Unavailable` if that cannot
        be done now."""

    async def start(self) -> None:  # noqa: B027  (optional hook)
        """Connect; called once when the API starts."""

    async def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections; called once when the API stops."""


class DirectSink(Sink):
    def __init__(self, store: Store, watcher: Watcher) -> None:
        self.store = store
        self.watcher = watcher

    async def submit(self, records: Sequence[Record]) -> None:
        result = await run_in_threadpool(self.store.append, records)
        if result.traces:
            self.watcher.notify(result.traces)
