"""Webhook messages as the Standard Webhooks specification has them, and the targets they
may go to.

A message is signed with the subscription's secret, ``whsec_<base64 key>``: the header
``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.
<body>">`` under the key, so any Standard Webhooks library verifies it.

Targets: only ``http`` and ``https`` URLs, and (unless the operator allows private
targets) only a host whose every address is a public one: no loopback, link-local,
private, shared, reserved, multicast or unspecified address. The check is made when a
subscription is made and again on each delivery, which then connects to the very address
it checked, so that a name re-pointed at a private address after the first check
(DNS rebinding) is refused too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


class BadTarget(ValueError):
    """A URL webhooks may not call; the message says why."""


def new_secret() -> str:
    """A new signing secret, ``whsec_<base64 of 24 random bytes>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of a message."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: its host and port, and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> tuple[str, str, int]:
    """The scheme, host and port of a URL webhooks may take (before any address check);
    :class:`BadTarget` if it is not one."""
    if len(url) > 2000:
        raise BadTarget("must be at most 2000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadTarget(f"is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise BadTarget("must be an http or https URL")
    if not parts.hostname:
        raise BadTarget("must name a host")
    if parts.username is not None or parts.password is not None:
        raise BadTarget("must not carry a user name or password")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(url: str, *, allow_private: bool) -> Target:
    """Check ``url`` and resolve its host (blocking: DNS); :class:`BadTarget` if it may not
    be called. The first address is the one to connect to; every address must pass."""
    scheme, host, port = check_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BadTarget(f"host {host!r} does not resolve: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise BadTarget(f"host {host!r} has no address")
    if not allow_private:
        for address in addresses:
            if not _public(address):
                raise BadTarget(
                    f"host {host!r} has the address {address}, which is not public"
                    " (loopback, link-local or private); the server does not allow those"
                )
    return Target(url, scheme, host, port, addresses[0])
