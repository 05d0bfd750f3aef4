"""``http``: batched ``POST /v1/events`` to a Waymark server."""

from __future__ import annotations

import os
from collections.abc import Sequence

from waymark.sdk.client import Client
from waymark.sdk.transports.base import EventDoc, Transport


class HttpTransport(Transport):
    """Each batch goes out as one request (or several, within the API's limits). It does not
    retry on its own: the tracker's sender retries with backoff."""

    kind = "http"

    def __init__(self, url: str, timeout: float = 10.0, token: str | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.token = token  # None: WAYMARK_TOKEN, if set
        self._pid = os.getpid()
        self._client = Client(url, timeout=timeout, token=token, retries=0)

    def send(self, tenant: str, events: Sequence[EventDoc]) -> None:
        if self._pid != os.getpid():  # a forked child must not share its parent's sockets
            self._pid = os.getpid()
            self._client = Client(self.url, timeout=self.timeout, token=self.token, retries=0)
        self._client.send(events, tenant=tenant)

    def close(self) -> None:
        self._client.close()
