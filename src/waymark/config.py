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
| webhooks to private   | ``WAYMARK_WEBHOOK_ALLOW_PRIVATE`` | off: public addresses only |
| webhook give-up after | ``WAYMARK_WEBHOOK_GIVE_UP_S`` | ``86400`` seconds (24 h)    |
| stall sweep interval  | ``WAYMARK_STALL_SWEEP_S``    | ``5`` seconds                |
| server URL (CLI)      | ``WAYMARK_URL``              | ``http://127.0.0.1:8000``    |
| tenant (CLI)          | ``WAYMARK_TENANT``           | ``default``                  |

``WAYMARK_AUTH`` is empty or ``none`` (no checks), or a comma list of ``keys`` (API keys
kept in the store) and ``oidc`` (OpenID Connect tokens of ``WAYMARK_OIDC_ISSUER``); a
request's bearer credential is tried against each, in that order.

``WAYMARK_WEBHOOK_ALLOW_PRIVATE`` (``1``/``true``/``yes``; ``waymark serve
--webhook-allow-private``) lets webhooks call loopback, link-local and private addresses;
off, a subscription to one is refused and a delivery to a name that resolves to one is
not made. A message not delivered within ``WAYMARK_WEBHOOK_GIVE_UP_S`` seconds of its
change is given up on. The stall sweep runs every ``WAYMARK_STALL_SWEEP_S`` seconds, so a
trace is notified as stalled at most that late.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_STORE = "sqlite:///./waymark.db"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_ROLES_CLAIM = "waymark_roles"

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
    webhook_allow_private: bool = False
    webhook_give_up_s: float = 86400.0
    stall_sweep_s: float = 5.0

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
        webhook_allow_private: bool | None = None,
    ) -> Settings:
        """Every setting, from the arguments given, else the environment, else defaults;
        ValueError naming the setting when one is not valid."""
        modes = parse_auth(_pick(auth, "WAYMARK_AUTH", ""))
        issuer = _pick(oidc_issuer, "WAYMARK_OIDC_ISSUER", "")
        if "oidc" in modes and not issuer:
            raise ValueError("WAYMARK_AUTH names oidc, but WAYMARK_OIDC_ISSUER is not set")
        return cls(
            store=_pick(store, "WAYMARK_STORE", DEFAULT_STORE),
            bus=_pick(bus, "WAYMARK_BUS", ""),
            pipelines=_pick(pipelines, "WAYMARK_PIPELINES", ""),
            auth=modes,
            oidc_issuer=issuer,
            oidc_audience=_pick(oidc_audience, "WAYMARK_OIDC_AUDIENCE", ""),
            oidc_roles_claim=_pick(oidc_roles_claim, "WAYMARK_OIDC_ROLES_CLAIM", "")
            or DEFAULT_ROLES_CLAIM,
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
        )


def server_url(explicit: str | None = None) -> str:
    return _pick(explicit, "WAYMARK_URL", DEFAULT_URL).rstrip("/")
