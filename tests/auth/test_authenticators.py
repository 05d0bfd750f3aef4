"""The authentication settings and the authenticators built from them."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from waymark.auth.authenticators import build_authenticators
from waymark.auth.keys import KeyAuthenticator
from waymark.config import Settings, parse_auth
from waymark.store.base import ApiKey


async def no_key(key_id: str) -> ApiKey | None:
    return None


def test_auth_modes_are_parsed_and_bad_ones_named() -> None:
    assert parse_auth("") == parse_auth("none") == parse_auth(" None ") == ()
    assert parse_auth("keys") == ("keys",)
    assert parse_auth("oidc, keys") == ("keys", "oidc")  # keys are tried first
    with pytest.raises(ValueError, match="WAYMARK_AUTH has 'ldap'"):
        parse_auth("keys,ldap")
    with pytest.raises(ValueError, match="WAYMARK_AUTH has 'none'"):
        parse_auth("none,keys")


def test_settings_come_from_flags_then_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("WAYMARK_AUTH", "WAYMARK_OIDC_ISSUER", "WAYMARK_OIDC_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("WAYMARK_OIDC_ROLES_CLAIM", raising=False)
    plain = Settings.resolve()
    assert plain.auth == () and plain.oidc_roles_claim == "waymark_roles"
    monkeypatch.setenv("WAYMARK_AUTH", "keys")
    monkeypatch.setenv("WAYMARK_OIDC_ROLES_CLAIM", "realm_access.roles")
    from_env = Settings.resolve()
    assert from_env.auth == ("keys",) and from_env.oidc_roles_claim == "realm_access.roles"
    assert Settings.resolve(auth="none").auth == ()  # the flag wins
    with pytest.raises(ValueError, match="WAYMARK_OIDC_ISSUER is not set"):
        Settings.resolve(auth="oidc")
    with_issuer = Settings.resolve(
        auth="keys,oidc", oidc_issuer="https://id.example", oidc_audience="waymark"
    )
    assert with_issuer.auth == ("keys", "oidc")
    assert (with_issuer.oidc_issuer, with_issuer.oidc_audience) == ("https://id.example", "waymark")


def test_authenticators_are_built_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_authenticators(Settings(), no_key) == []
    [keys] = build_authenticators(Settings(auth=("keys",)), no_key)
    assert isinstance(keys, KeyAuthenticator) and keys.lookup is no_key

    made: list[dict[str, Any]] = []

    class OidcAuthenticator:  # stands in for waymark.auth.oidc's, to see what it is given
        def __init__(self, **settings: Any) -> None:
            made.append(settings)

    module = types.ModuleType("waymark.auth.oidc")
    module.OidcAuthenticator = OidcAuthenticator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "waymark.auth.oidc", module)
    settings = Settings(
        auth=("keys", "oidc"), oidc_issuer="https://id.example", oidc_roles_claim="a.b"
    )
    found = build_authenticators(settings, no_key)
    assert isinstance(found[0], KeyAuthenticator) and isinstance(found[1], OidcAuthenticator)
    assert made == [{"issuer": "https://id.example", "audience": None, "roles_claim": "a.b"}]
