"""The bus: JetStream between the API and the collectors (scaled mode). See :mod:`.base`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from waymark.bus.base import Bus, BusSettings, BusSink, InboundMessage, Source
from waymark.errors import Unavailable
from waymark.sink import DirectSink, Sink
from waymark.store.base import Store
from waymark.watch import Watcher

log = logging.getLogger("waymark.bus")


def open_bus(url: str, name: str = "waymark") -> Bus:
    """The bus a URL names (``nats://...``); nats-py is imported only when asked for.
    ``name`` tells the bus's servers who is connected (NATS shows it in ``/connz``):
    ``waymark-api``, ``waymark-collector``, or ``waymark`` for the CLI's commands."""
    if url.startswith(("nats://", "tls://")):
        from waymark.bus.nats import NatsBus

        return NatsBus.from_url(url, name)
    raise ValueError(f"unsupported bus URL {url!r}: use nats://host:4222")


class WatchingBusSink(BusSink):
    """The API's bus sink: also feeds the change feed into this replica's watcher."""

    def __init__(self, bus: Bus, watcher: Watcher) -> None:
        super().__init__(bus)
        self.watcher = watcher

    async def start(self) -> None:
        await self.bus.watch_changes(self._changed)
        try:
            await self.bus.connect()
        except Unavailable as exc:  # the API still starts; publishes answer 503 until it is back
            log.warning("bus not reachable at start, will retry on use: %s", exc.detail)

    async def announce(self, keys: Sequence[tuple[str, str]]) -> None:
        """On the change feed, which brings them back to this replica too; only here when
        the bus cannot be had (the feed is best effort, as the collectors' is)."""
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        for tenant, trace_id in keys:
            by_tenant.setdefault(tenant, []).append({"trace_id": trace_id, "tenant": tenant})
        try:
            for tenant, heads in by_tenant.items():
                await self.bus.publish_changes(tenant, heads)
        except Unavailable:
            self.watcher.notify(keys)

    def _changed(self, tenant: str, summaries: list[dict[str, Any]]) -> None:
        self.watcher.notify((tenant, s["trace_id"]) for s in summaries)


def sink_for(bus_url: str, store: Store, watcher: Watcher) -> Sink:
    """Direct to the store when no bus is configured, else through the bus."""
    if not bus_url:
        return DirectSink(store, watcher)
    return WatchingBusSink(open_bus(bus_url, "waymark-api"), watcher)


__all__ = ["Bus", "BusSettings", "BusSink", "InboundMessage", "Source", "open_bus", "sink_for"]
