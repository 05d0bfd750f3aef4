"""Configuration, resolved in one place: explicit argument, then environment, then default.

| setting               | environment                  | default                      |
| --------------------- | ---------------------------- | ---------------------------- |
| store URL             | ``WAYMARK_STORE``            | ``sqlite:///./waymark.db``   |
| bus URL               | ``WAYMARK_BUS``              | empty: direct, no bus        |
| pipelines file        | ``WAYMARK_PIPELINES``        | none: built-in default rule  |
| authentication        | ``WAYMARK_AUTH``             | empty (``none``): no checks  |
| OIDC issuer URL       | ``WAYMARK_OIDC_ISSUER``      | none                         |
| OIDC audience         | ``WAYMARK_OIDC_AUDIENCE``    | none: ``aud`` not checked    |
| OIDC roles claim      | ``WAYMARK_OIDC_ROLES_CLAIM`` | ``waymark_roles``            |
| allowed hosts         | ``WAYMARK_ALLOWED_HOSTS``    | none: loopback names only    |
| prune interval (s)    | ``WAYMARK_PRUNE_INTERVAL``   | ``3600``; 0: no background prune |
| server URL (CLI)      | ``WAYMARK_URL``              | ``http://127.0.0.1:8000``    |
| tenant (CLI)          | ``WAYMARK_TENANT``           | ``default``                  |

``WAYMARK_AUTH`` is empty or ``none`` (no checks), or a comma list of ``keys`` (API keys
kept in the store) and ``oidc`` (OpenID Connect tokens of ``WAYMARK_OIDC_ISSUER``); a
request's bearer credential is tried against each, in that order.

``WAYMARK_ALLOWED_HOSTS`` (a comma list of host names, ``*`` for any) matters only with
authentication off: the served app then answers only requests whose ``Host`` is a
loopback name or one of these (:mod:`waymark.api.hosts`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_STORE = "sqlite:///./waymark.db"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_ROLES_CLAIM = "waymark_roles"
DEFAULT_PRUNE_INTERVAL_S = 3600.0

#: the ways in ``WAYMARK_AUTH`` may name, in the order a credential is tried
AUTH_MODES = ("keys", "oidc")


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
    prune_interval_s: float = DEFAULT_PRUNE_INTERVAL_S  # 0: no background prune

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
            prune_interval_s=prune_interval_s,
        )


def server_url(explicit: str | None = None) -> str:
    return _pick(explicit, "WAYMARK_URL", DEFAULT_URL).rstrip("/")
