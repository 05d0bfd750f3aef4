"""Which ``Host`` a server without authentication answers: :class:`HostGuard`.

With authentication off (``WAYMARK_AUTH=none``), anything that reaches the server may
read and write every tenant. ``waymark serve`` therefore listens only on loopback unless
told ``--insecure``; and since a web page on another site can still reach a laptop's
loopback server through DNS rebinding (its own name, re-pointed at 127.0.0.1), the server
also answers only requests whose ``Host`` is a loopback name (``localhost``, a name under
``.localhost``, 127.0.0.0/8, ``::1``) or one of ``WAYMARK_ALLOWED_HOSTS`` (``*``: any).
Other requests get 400 with a problem that names the ``host`` header and says why.

A browser cannot send a bearer credential on such a page's behalf, so with
authentication on the guard is not installed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from waymark.errors import BadRequest

ANY_HOST = "*"
HOSTS_KEPT = 256  # distinct Host values whose answer is remembered


def host_name(header: str) -> str:
    """The name of a ``Host`` header, without its port, lower case (``[::1]:80`` -> ``::1``)."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        return text.partition(":")[0]
    return text


def is_loopback(name: str) -> bool:
    """Whether a host name or address always means this machine."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostGuard:
    """Pure ASGI middleware, inside :class:`~waymark.api.problems.RequestGuard` (which
    answers its refusal in the door's shape)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(name) for name in allowed if name.strip())
        self.any = ANY_HOST in self.allowed
        # Clients send a handful of Host values: each is judged once. Bounded, so that a
        # stream of made-up names cannot grow it.
        self._answered: dict[bytes, bool] = {}

    def answers(self, host: bytes) -> bool:
        known = self._answered.get(host)
        if known is None:
            name = host_name(host.decode("latin-1"))
            known = self.any or is_loopback(name) or name in self.allowed
            if len(self._answered) < HOSTS_KEPT:
                self._answered[host] = known
        return known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((v for n, v in scope["headers"] if n == b"host"), b"")
            if not self.answers(given):
                shown = host_name(given.decode("latin-1")) or "(none)"
                detail = (
                    f"Host {shown!r} is not one this server answers: with authentication off"
                    " it answers only loopback names (localhost, 127.0.0.1, [::1]) and those"
                    " in WAYMARK_ALLOWED_HOSTS"
                )
                raise BadRequest(detail, [{"loc": ["header", "host"], "msg": detail}])
        await self.app(scope, receive, send)
