"""Configuration, resolved in one place: explicit argument, then environment, then default.

| setting                       | environment                  | default                     |
| ----------------------------- | ---------------------------- | --------------------------- |
| store URL                     | ``WAYMARK_STORE``            | ``sqlite:///./waymark.db``  |
| bus URL                       | ``WAYMARK_BUS``              | empty: direct, no bus       |
| pipelines file                | ``WAYMARK_PIPELINES``        | none: built-in default rule |
| request head timeout (serve)  | ``WAYMARK_HEADER_TIMEOUT``   | 10 seconds                  |
| body stall timeout (serve)    | ``WAYMARK_BODY_TIMEOUT``     | 10 seconds                  |
| keep-alive idle time (serve)  | ``WAYMARK_KEEP_ALIVE``       | 5 seconds                   |
| connections a worker holds    | ``WAYMARK_MAX_CONNECTIONS``  | 1,000                       |
| server URL (CLI, SDK)         | ``WAYMARK_URL``              | ``http://127.0.0.1:8000``   |
| tenant (CLI, SDK)             | ``WAYMARK_TENANT``           | ``default``                 |
| SDK transport kind            | ``WAYMARK_TRANSPORT``        | from ``WAYMARK_URL``        |

:data:`KNOWN` is the registry of every ``WAYMARK_*`` variable (those of the tests and
benchmarks too): the server commands refuse to start while the environment holds a
``WAYMARK_*`` variable not in it (:func:`unknown_settings`), since a misspelt setting
would otherwise be ignored without a word.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

DEFAULT_STORE = "sqlite:///./waymark.db"
DEFAULT_URL = "http://127.0.0.1:8000"

#: every ``WAYMARK_*`` environment variable Waymark reads, with what it is
KNOWN: dict[str, str] = {
    "WAYMARK_STORE": "store URL",
    "WAYMARK_BUS": "bus URL",
    "WAYMARK_PIPELINES": "pipelines file",
    "WAYMARK_HEADER_TIMEOUT": "seconds a client has to send a request's head",
    "WAYMARK_BODY_TIMEOUT": "seconds a request's body may stall",
    "WAYMARK_KEEP_ALIVE": "seconds an idle keep-alive connection is kept",
    "WAYMARK_MAX_CONNECTIONS": "connections one server worker holds",
    "WAYMARK_URL": "server URL of the CLI and the SDK",
    "WAYMARK_TENANT": "tenant of the CLI and the SDK",
    "WAYMARK_TRANSPORT": "the SDK's transport kind",
    "WAYMARK_TEST_POSTGRES": "the PostgreSQL server of the test suite",
    "WAYMARK_BENCH_READ_EVENTS": "events the read benchmark stores",
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


@dataclass(frozen=True, slots=True)
class Settings:
    store: str = DEFAULT_STORE
    bus: str = ""
    pipelines: str = ""

    @classmethod
    def resolve(
        cls, store: str | None = None, bus: str | None = None, pipelines: str | None = None
    ) -> Settings:
        return cls(
            store=_pick(store, "WAYMARK_STORE", DEFAULT_STORE),
            bus=_pick(bus, "WAYMARK_BUS", ""),
            pipelines=_pick(pipelines, "WAYMARK_PIPELINES", ""),
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
