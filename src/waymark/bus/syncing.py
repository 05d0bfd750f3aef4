"""What a JetStream acknowledgement is worth: each NATS server's sync setting, read from
its monitoring endpoint (``/varz``), for ``waymark streams``.

In bus mode the API answers 202 once JetStream has acknowledged the publish. A server
acknowledges once it has written the message, and by default syncs written stream data
to disk only every two minutes (``sync_interval``): an OS crash or a power loss can then
lose messages it has acknowledged, and the producer was told they were accepted.
``sync_interval: always`` (NATS 2.10 or later) syncs before acknowledging; Waymark needs
it on every server, replicated streams or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from waymark.bus.base import BusSettings
from waymark.bus.streams import Found

#: where a NATS server serves monitoring when its configuration says ``http: 8222``.
DEFAULT_MONITOR_PORT = 8222


def default_monitors(settings: BusSettings) -> list[str]:
    """The usual monitoring address of each server of the bus URL: port 8222 on its host."""
    out = []
    for server in settings.servers:
        host = urlsplit(server).hostname or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        out.append(f"http://{host}:{DEFAULT_MONITOR_PORT}")
    return out


def judge(varz: dict[str, Any]) -> tuple[str | None, str | None]:
    """From a server's ``/varz``: its sync setting (``always``, an interval such as
    ``120 s``, ``none (before NATS 2.10)``; None if JetStream is off there), and a warning
    if it can lose messages it has acknowledged (None if it cannot)."""
    who = f"NATS server {varz.get('server_name') or varz.get('server_id') or '?'}"
    who += f" ({varz.get('version') or 'version unknown'})"
    config = (varz.get("jetstream") or {}).get("config")
    if not config:
        return None, None  # it stores no stream, so it acknowledges none
    if config.get("sync_always"):
        return "always", None
    interval = config.get("sync_interval")
    if not isinstance(interval, int | float):
        return "none (before NATS 2.10)", (
            f"{who} cannot sync before it acknowledges (sync_interval needs NATS 2.10 or"
            " later): an OS crash or a power loss can lose messages it acknowledged, which"
            " the API answered 202; upgrade it and set sync_interval: always"
        )
    every = f"{interval / 1e9:g} s"
    return every, (
        f"{who} acknowledges at once but syncs stream data every {every}: an OS crash or a"
        f" power loss can lose the messages of the last {every}, which the API answered 202;"
        " set sync_interval: always in its jetstream block"
    )


async def _read(client: httpx.AsyncClient, monitor: str) -> Found:
    url = f"{monitor.rstrip('/')}/varz"
    try:
        answer = await client.get(url)
        answer.raise_for_status()
        varz = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Found(
            "server",
            monitor,
            exists=False,
            warning=f"could not read {url} ({exc!r}): give the server's monitoring address"
            " (the http: of its configuration) with --monitor to check its sync setting",
        )
    if not isinstance(varz, dict):
        return Found("server", monitor, exists=False, warning=f"{url} is not a NATS /varz")
    sync, warning = judge(varz)
    return Found("server", monitor, exists=True, sync=sync, warning=warning)


async def inspect_servers(monitors: Sequence[str], timeout_s: float = 2.0) -> list[Found]:
    """Each server's sync setting, by its monitoring URL (``http://host:8222``)."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return list(await asyncio.gather(*(_read(client, m) for m in monitors)))
