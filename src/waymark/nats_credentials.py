"""NATS credentials carried by a bus URL, for the API, the collectors and the SDK's
``nats`` transport alike (this module imports nothing of the server, and nats-py only
when it connects).

========================================  ============================================
bus URL                                   what the client sends
========================================  ============================================
``nats://alice:s3cret@host:4222``         user and password
``nats://s3cret-token@host:4222``         a token
``nats://host:4222?creds=/etc/w.creds``   the JWT and NKey seed of a ``.creds`` file
                                          (NATS decentralized auth, ``nsc``)
========================================  ============================================

Credentials given on one host of a list (``nats://alice:pw@a:4222,b:4222``) apply to all.
Servers are named without them in every message, and a server that refuses them ends the
connect at once with :class:`CredentialsRefused` (nats-py alone retries a refused first
connect forever, as if the server were down), whose message names the user, never the
password or token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from nats.aio.client import Client

CREDS_SETTING = "creds"
_REFUSALS = ("authorization violation", "authentication expired", "user authentication")


class CredentialsRefused(ValueError):
    """The NATS server refused the bus URL's credentials: a setting to fix, not an outage."""


@dataclass(frozen=True, slots=True)
class NatsCredentials:
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | None = None

    def __bool__(self) -> bool:
        return any((self.user, self.password, self.token, self.creds_file))

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of ``nats.connect`` for these credentials."""
        options: dict[str, Any] = {}
        if self.user is not None:
            options["user"], options["password"] = self.user, self.password or ""
        if self.token is not None:
            options["token"] = self.token
        if self.creds_file is not None:
            options["user_credentials"] = self.creds_file
        return options

    def describe(self) -> str:
        """Which credentials these are, without their secrets."""
        if self.user is not None:
            return f"user {self.user!r}"
        if self.token is not None:
            return "a token"
        if self.creds_file is not None:
            return f"the credentials file {self.creds_file}"
        return "no credentials"


@dataclass(frozen=True, slots=True)
class NatsUrl:
    servers: tuple[str, ...]  # without credentials
    credentials: NatsCredentials
    settings: list[tuple[str, str]]  # the query's other name=value pairs, in order

    def redacted(self) -> str:
        """The URL as it may be shown: servers without credentials (``***`` for them)."""
        hosts = ",".join(urlsplit(s).netloc for s in self.servers)
        secret = "***@" if self.credentials.user or self.credentials.token else ""
        scheme = urlsplit(self.servers[0]).scheme if self.servers else "nats"
        return f"{scheme}://{secret}{hosts}"


_SCHEMES = ("nats", "tls")
_FORMS = "nats://host:4222, several as nats://a:4222,b:4222 or nats://a:4222,nats://b:4222"


def parse_servers(url: str) -> tuple[tuple[str, ...], str]:
    """The servers of a bus URL (each ``scheme://[user:password@]host[:port]``) and its
    query string. Hosts are separated by commas, each with or without the scheme:
    ``nats://a:4222,b:4222`` and ``nats://a:4222,nats://b:4222`` are the same two servers.
    :class:`ValueError` naming the part that cannot be read: a scheme other than
    ``nats``/``tls`` or one that changes between hosts, an empty host, a port that is not
    a number from 1 to 65535, a path, a blank; never a guess."""
    head, _, query = url.partition("?")
    scheme, sep, rest = head.partition("://")
    if not sep or scheme not in _SCHEMES:
        shown = repr(scheme) if sep else "(none)"
        raise ValueError(f"unsupported bus URL scheme {shown}; use {_FORMS}")
    servers = []
    for n, part in enumerate(rest.split(","), 1):
        own, sep, hostport = part.partition("://")
        if sep:
            if own != scheme:
                raise ValueError(
                    f"bus URL: server {n} has scheme {own!r}, the first {scheme!r}: one bus URL"
                    " names servers of one scheme"
                )
            part = hostport
        server = _server(scheme, part, n)
        servers.append(server)
    return tuple(servers), query


def _server(scheme: str, part: str, n: int) -> str:
    where = f"bus URL: server {n} ({part.rpartition('@')[2]!r})"  # never its password
    if not part:
        raise ValueError(f"{where} is empty; use {_FORMS}")
    if any(c.isspace() for c in part) or any(c in part for c in "/#"):
        raise ValueError(f"{where} is not host:port; use {_FORMS}")
    parsed = urlsplit(f"{scheme}://{part}")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"{where}: the port must be a number from 1 to 65535") from None
    if not parsed.hostname:
        raise ValueError(f"{where} names no host; use {_FORMS}")
    if port == 0:
        raise ValueError(f"{where}: the port must be a number from 1 to 65535")
    return f"{scheme}://{part}"


def parse(url: str) -> NatsUrl:
    """Split a ``nats://`` or ``tls://`` URL into servers, credentials and other settings.
    A ValueError names what is wrong, never a secret."""
    checked, query = parse_servers(url)
    scheme = checked[0].partition("://")[0]
    hosts = [server.partition("://")[2] for server in checked]
    userinfo: str | None = None
    servers = []
    for host in hosts:
        info, at, address = host.rpartition("@")
        if at:
            if userinfo is not None and info != userinfo:
                raise ValueError("bus URL: give the credentials once, on the first server")
            userinfo = info
        if not address:
            raise ValueError("bus URL: a server has no address")
        servers.append(f"{scheme}://{address}")
    if not servers:
        raise ValueError("bus URL names no server")
    user = password = token = creds_file = None
    if userinfo is not None:
        name, colon, secret = userinfo.partition(":")
        if colon:
            user, password = unquote(name), unquote(secret)
        else:
            token = unquote(name)
    settings = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == CREDS_SETTING:
            if not Path(value).is_file():
                raise ValueError(f"bus URL: creds={value!r} is not a readable file")
            creds_file = value
        else:
            settings.append((name, value))
    return NatsUrl(tuple(servers), NatsCredentials(user, password, token, creds_file), settings)


def refused(exc: BaseException) -> bool:
    """Whether a nats-py error says the server refused the credentials."""
    from nats.errors import AuthorizationError

    return isinstance(exc, AuthorizationError) or any(
        text in str(exc).lower() for text in _REFUSALS
    )


async def connect(
    servers: tuple[str, ...],
    credentials: NatsCredentials,
    error_cb: Callable[[Exception], Awaitable[None]] | None = None,
    **options: Any,
) -> Client:
    """``nats.connect`` with ``credentials``; :class:`CredentialsRefused` as soon as the
    server refuses them, whatever the reconnect settings."""
    from nats.aio.client import Client as Connection

    where = ",".join(servers)
    refusal: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        if refused(exc) and not refusal.done():
            refusal.set_result(exc)
        if error_cb is not None:
            await error_cb(exc)

    nc = Connection()
    connecting: asyncio.Future[None] = asyncio.ensure_future(
        nc.connect(list(servers), error_cb=on_error, **credentials.connect_options(), **options)
    )
    waiting: set[asyncio.Future[Any]] = {connecting, refusal}
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        connecting.cancel()
        raise
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        with contextlib.suppress(Exception):
            await nc.close()
    else:
        refusal.cancel()
        exc = connecting.exception()
        if exc is None:
            return nc
        if not refused(exc):
            raise exc
    raise CredentialsRefused(
        f"NATS at {where} refused the bus URL's credentials ({credentials.describe()})"
    )
