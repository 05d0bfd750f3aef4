"""Configuration, resolved in one place: explicit argument, then environment, then default.

| setting                       | environment                  | default                     |
| ----------------------------- | ---------------------------- | --------------------------- |
| store URL                     | ``WAYMARK_STORE``            | ``sqlite:///./waymark.db``  |
| bus URL                       | ``WAYMARK_BUS``              | empty: direct, no bus       |
| pipelines file                | ``WAYMARK_PIPELINES``        | none: built-in default rule |
| authentication                | ``WAYMARK_AUTH``             | empty (``none``): no checks |
| OIDC issuer URL               | ``WAYMARK_OIDC_ISSUER``      | none                        |
| OIDC audience                 | ``WAYMARK_OIDC_AUDIENCE``    | none: ``aud`` not checked   |
| OIDC roles claim              | ``WAYMARK_OIDC_ROLES_CLAIM`` | ``waymark_roles``           |
| allowed hosts                 | ``WAYMARK_ALLOWED_HOSTS``    | none: loopback names only   |
| webhooks to private         | ``WAYMARK_WEBHOOK_ALLOW_PRIVATE`` | off: public addresses only |
| webhook give-up after         | ``WAYMARK_WEBHOOK_GIVE_UP_S`` | ``86400`` seconds (24 h)  |
| stall sweep interval          | ``WAYMARK_STALL_SWEEP_S``    | ``5`` seconds               |
| prune interval (serve)        | ``WAYMARK_PRUNE_INTERVAL``   | 3600 s; 0: no background prune |
| request head timeout (serve)  | ``WAYMARK_HEADER_TIMEOUT``   | 10 seconds                  |
| body stall timeout (serve)    | ``WAYMARK_BODY_TIMEOUT``     | 10 seconds                  |
| keep-alive idle time (serve)  | ``WAYMARK_KEEP_ALIVE``       | 5 seconds                   |
| connections a worker holds    | ``WAYMARK_MAX_CONNECTIONS``  | 1,000                       |
| changes a stream resumes in  | ``WAYMARK_STREAM_WINDOW``    | 10,000 changes              |
| and seconds it resumes in     | ``WAYMARK_STREAM_WINDOW_S``  | 300 seconds                 |
| open streams per process      | ``WAYMARK_MAX_STREAMS``      | 200                         |
| stream keep-alive             | ``WAYMARK_STREAM_KEEP_ALIVE`` | 15 seconds                 |
| stream send timeout           | ``WAYMARK_STREAM_SEND_TIMEOUT`` | 30 seconds               |
| server URL (CLI, SDK)         | ``WAYMARK_URL``              | ``http://127.0.0.1:8000``   |
| tenant (CLI, SDK)             | ``WAYMARK_TENANT``           | ``default``                 |
| key or token (CLI, SDK)       | ``WAYMARK_TOKEN``            | none                        |
| SDK transport kind            | ``WAYMARK_TRANSPORT``        | from ``WAYMARK_URL``        |

``WAYMARK_AUTH`` is empty or ``none`` (no checks), or a comma list of ``keys`` (API keys
kept in the store) and ``oidc`` (OpenID Connect tokens of ``WAYMARK_OIDC_ISSUER``); a
request's bearer credential is tried against each, in that order.

``WAYMARK_WEBHOOK_ALLOW_PRIVATE`` (``1``/``true``/``yes``; ``waymark serve
--webhook-allow-private``) lets webhooks call loopback, link-local and private addresses;
off, a subscription to one is refused and a delivery to a name that resolves to one is
not made. A message not delivered within ``WAYMARK_WEBHOOK_GIVE_UP_S`` seconds of its
change is given up on. The stall sweep runs every ``WAYMARK_STALL_SWEEP_S`` seconds, so a
trace is notified as stalled at most that late.

``WAYMARK_ALLOWED_HOSTS`` (a comma list of host names, ``*`` for any) matters only with
authentication off: the served app then answers only requests whose ``Host`` is a
loopback name or one of these (:mod:`waymark.api.hosts`).

:data:`KNOWN` is the registry of every ``WAYMARK_*`` variable (those of the tests and
benchmarks too): the server commands refuse to start while the environment holds a
``WAYMARK_*`` variable not in it (:func:`unknown_settings`), since a misspelt setting
would otherwise be ignored without a word.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

DEFAULT_STORE = "sqlite:///./waymark.db"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_ROLES_CLAIM = "waymark_roles"
DEFAULT_PRUNE_INTERVAL_S = 3600.0

#: the ways in ``WAYMARK_AUTH`` may name, in the order a credential is tried
AUTH_MODES = ("keys", "oidc")

#: every ``WAYMARK_*`` environment variable Waymark reads, with what it is
KNOWN: dict[str, str] = {
    "WAYMARK_STORE": "store URL",
    "WAYMARK_BUS": "bus URL",
    "WAYMARK_PIPELINES": "pipelines file",
    "WAYMARK_AUTH": "authentication: none, or keys and oidc",
    "WAYMARK_OIDC_ISSUER": "OpenID Connect issuer URL",
    "WAYMARK_OIDC_AUDIENCE": "audience OpenID Connect tokens must name",
    "WAYMARK_OIDC_ROLES_CLAIM": "dotted path of the tokens' roles claim",
    "WAYMARK_ALLOWED_HOSTS": "Host names an open server answers besides loopback",
    "WAYMARK_TOKEN": "API key or token of the CLI and the SDK",
    "WAYMARK_WEBHOOK_ALLOW_PRIVATE": "whether webhooks may call private addresses",
    "WAYMARK_WEBHOOK_GIVE_UP_S": "seconds after which a webhook message is given up on",
    "WAYMARK_STALL_SWEEP_S": "seconds between stall sweeps",
    "WAYMARK_PRUNE_INTERVAL": "seconds between background prunes (0: none)",
    "WAYMARK_HEADER_TIMEOUT": "seconds a client has to send a request's head",
    "WAYMARK_BODY_TIMEOUT": "seconds a request's body may stall",
    "WAYMARK_KEEP_ALIVE": "seconds an idle keep-alive connection is kept",
    "WAYMARK_MAX_CONNECTIONS": "connections one server worker holds",
    "WAYMARK_LOG_FORMAT": "log lines of the server commands: text or json",
    "WAYMARK_STREAM_WINDOW": "changes a live stream can resume in",
    "WAYMARK_STREAM_WINDOW_S": "seconds of changes a live stream can resume in",
    "WAYMARK_MAX_STREAMS": "live streams one server process holds open",
    "WAYMARK_STREAM_KEEP_ALIVE": "seconds between a live stream's keep-alive comments",
    "WAYMARK_STREAM_SEND_TIMEOUT": "seconds a live stream's client may take to read a message",
    "WAYMARK_URL": "server URL of the CLI and the SDK",
    "WAYMARK_TENANT": "tenant of the CLI and the SDK",
    "WAYMARK_TRANSPORT": "the SDK's transport kind",
    "WAYMARK_TEST_POSTGRES": "the PostgreSQL server of the test suite",
    "WAYMARK_BENCH_READ_EVENTS": "events the read benchmark stores",
    "WAYMARK_BENCH_AUTHORIZATION": "the Authorization header of the auth benchmark's load",
    "WAYMARK_ARTEFACTS": "where the web page's tests put their screenshots",
}

PREFIX = "WAYMARK_"


def unknown_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``WAYMARK_*`` variables of the environment that are not in :data:`KNOWN`."""
    env = os.environ if environ is None else environ
    return sorted(name for name in env if name.startswith(PREFIX) and name not in KNOWN)


def _pick(explicit: str | None, env: str, default: str) -> str:
    if explicit is not None:
        return explicit
    return os.environ.get(env, default)


def parse_auth(text: str) -> tuple[str, ...]:
    """``WAYMARK_AUTH`` as the modes it names, in :data:`AUTH_MODES` order; () for empty or
    ``none``. ValueError naming the setting and the value for anything else."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if names in ([], ["none"]):
        return ()
    unknown = [n for n in names if n not in AUTH_MODES]
    if unknown:
        raise ValueError(
            f"WAYMARK_AUTH has {unknown[0]!r}: use none, or a comma list of "
            + " and ".join(AUTH_MODES)
        )
    return tuple(mode for mode in AUTH_MODES if mode in names)


def parse_flag(name: str, text: str) -> bool:
    """A yes/no setting; ValueError naming it for anything but 1/0, true/false, yes/no, on/off."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} has {text!r}: use true or false")


def parse_seconds(name: str, text: str) -> float:
    """A positive number of seconds; ValueError naming the setting otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} has {text!r}: use a positive number of seconds")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    store: str = DEFAULT_STORE
    bus: str = ""
    pipelines: str = ""
    auth: tuple[str, ...] = ()  # the modes of WAYMARK_AUTH (parse_auth); () is none
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_roles_claim: str = DEFAULT_ROLES_CLAIM
    allowed_hosts: tuple[str, ...] = ()  # besides loopback names, with auth off
    webhook_allow_private: bool = False
    webhook_give_up_s: float = 86400.0
    stall_sweep_s: float = 5.0
    prune_interval_s: float = DEFAULT_PRUNE_INTERVAL_S  # 0: no background prune
    streams: StreamLimits = field(default_factory=lambda: StreamLimits())

    @classmethod
    def resolve(
        cls,
        store: str | None = None,
        bus: str | None = None,
        pipelines: str | None = None,
        *,
        auth: str | None = None,
        oidc_issuer: str | None = None,
        oidc_audience: str | None = None,
        oidc_roles_claim: str | None = None,
        allowed_hosts: str | None = None,
        webhook_allow_private: bool | None = None,
        prune_interval: str | None = None,
    ) -> Settings:
        """Every setting, from the arguments given, else the environment, else defaults;
        ValueError naming the setting when one is not valid."""
        modes = parse_auth(_pick(auth, "WAYMARK_AUTH", ""))
        issuer = _pick(oidc_issuer, "WAYMARK_OIDC_ISSUER", "")
        if "oidc" in modes and not issuer:
            raise ValueError("WAYMARK_AUTH names oidc, but WAYMARK_OIDC_ISSUER is not set")
        oidc = "oidc" in modes
        if oidc and not issuer.startswith(("https://", "http://")):
            raise ValueError(f"WAYMARK_OIDC_ISSUER {issuer!r} is not an http(s) URL")
        roles_claim = _pick(oidc_roles_claim, "WAYMARK_OIDC_ROLES_CLAIM", "") or DEFAULT_ROLES_CLAIM
        if oidc and any(not part for part in roles_claim.split(".")):
            raise ValueError(
                f"WAYMARK_OIDC_ROLES_CLAIM {roles_claim!r} is not a dotted path"
                " (e.g. realm_access.roles)"
            )
        interval = _pick(prune_interval, "WAYMARK_PRUNE_INTERVAL", str(DEFAULT_PRUNE_INTERVAL_S))
        try:
            prune_interval_s = float(interval)
        except ValueError:
            prune_interval_s = -1.0
        if not 0 <= prune_interval_s < float("inf"):
            raise ValueError(f"WAYMARK_PRUNE_INTERVAL {interval!r} is not a number of seconds >= 0")
        return cls(
            store=_pick(store, "WAYMARK_STORE", DEFAULT_STORE),
            bus=_pick(bus, "WAYMARK_BUS", ""),
            pipelines=_pick(pipelines, "WAYMARK_PIPELINES", ""),
            auth=modes,
            oidc_issuer=issuer,
            oidc_audience=_pick(oidc_audience, "WAYMARK_OIDC_AUDIENCE", ""),
            oidc_roles_claim=roles_claim,
            allowed_hosts=tuple(
                name.strip()
                for name in _pick(allowed_hosts, "WAYMARK_ALLOWED_HOSTS", "").split(",")
                if name.strip()
            ),
            webhook_allow_private=(
                webhook_allow_private
                if webhook_allow_private is not None
                else parse_flag(
                    "WAYMARK_WEBHOOK_ALLOW_PRIVATE",
                    os.environ.get("WAYMARK_WEBHOOK_ALLOW_PRIVATE", ""),
                )
            ),
            webhook_give_up_s=parse_seconds(
                "WAYMARK_WEBHOOK_GIVE_UP_S", os.environ.get("WAYMARK_WEBHOOK_GIVE_UP_S", "86400")
            ),
            stall_sweep_s=parse_seconds(
                "WAYMARK_STALL_SWEEP_S", os.environ.get("WAYMARK_STALL_SWEEP_S", "5")
            ),
            prune_interval_s=prune_interval_s,
            streams=StreamLimits.resolve(),
        )


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What ``waymark serve`` allows a client (see :mod:`waymark.server`).

    ``header_timeout_s``: from connecting, or from a request's first byte, to the end of
    its head; ``body_timeout_s``: the longest a request's body may stall between two
    chunks; ``keep_alive_s``: how long an idle keep-alive connection is kept;
    ``max_connections``: connections one worker holds before it answers 503.
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 1000

    @classmethod
    def resolve(
        cls,
        header_timeout_s: float | None = None,
        body_timeout_s: float | None = None,
        keep_alive_s: float | None = None,
        max_connections: int | None = None,
    ) -> ClientLimits:
        """Each limit from its argument, else its variable, else the default;
        :class:`ValueError` naming the variable if one is not a positive number."""
        d = cls()
        return cls(
            header_timeout_s=_positive(
                header_timeout_s, "WAYMARK_HEADER_TIMEOUT", float, d.header_timeout_s
            ),
            body_timeout_s=_positive(
                body_timeout_s, "WAYMARK_BODY_TIMEOUT", float, d.body_timeout_s
            ),
            keep_alive_s=_positive(keep_alive_s, "WAYMARK_KEEP_ALIVE", float, d.keep_alive_s),
            max_connections=_positive(
                max_connections, "WAYMARK_MAX_CONNECTIONS", int, d.max_connections
            ),
        )


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What live streams (``GET /v1/stream``) may hold, per server process.

    ``window`` and ``window_s``: a stream resumes (``Last-Event-ID``) without a gap within
    the last ``window`` changes and ``window_s`` seconds; ``max_streams``: streams open at
    once before new ones are answered 503; ``keep_alive_s``: the most time between two
    writes to a stream (a comment when nothing changed); ``send_timeout_s``: a client that
    has not taken a write within this time (its connection's buffers are full) is dropped.
    """

    window: int = 10_000
    window_s: float = 300.0
    max_streams: int = 200
    keep_alive_s: float = 15.0
    send_timeout_s: float = 30.0

    @classmethod
    def resolve(cls) -> StreamLimits:
        """Each limit from its variable, else the default; :class:`ValueError` naming the
        variable if one is not a positive number."""
        d = cls()
        return cls(
            window=_positive(None, "WAYMARK_STREAM_WINDOW", int, d.window),
            window_s=_positive(None, "WAYMARK_STREAM_WINDOW_S", float, d.window_s),
            max_streams=_positive(None, "WAYMARK_MAX_STREAMS", int, d.max_streams),
            keep_alive_s=_positive(None, "WAYMARK_STREAM_KEEP_ALIVE", float, d.keep_alive_s),
            send_timeout_s=_positive(None, "WAYMARK_STREAM_SEND_TIMEOUT", float, d.send_timeout_s),
        )


N = TypeVar("N", int, float)


def _positive(explicit: N | None, env: str, kind: type[N], default: N) -> N:
    if explicit is not None:
        value = explicit
        where = "the flag of " + env
    else:
        text = os.environ.get(env)
        if text is None or text == "":
            return default
        where = env
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{env}={text!r} is not a {kind.__name__}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{where} must be a positive number, not {value}")
    return value


def server_url(explicit: str | None = None) -> str:
    return _pick(explicit, "WAYMARK_URL", DEFAULT_URL).rstrip("/")
