"""The server's ways in, built from its settings: :func:`build_authenticators`."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from waymark.auth.grants import Authenticator
from waymark.auth.keys import KeyAuthenticator
from waymark.config import Settings
from waymark.store.base import ApiKey

#: reads one API key by id without holding the event loop (the API runs the store's
#: :meth:`~waymark.store.base.Store.api_key` in a store thread)
KeyLookup = Callable[[str], Awaitable[ApiKey | None]]


def build_authenticators(settings: Settings, lookup_key: KeyLookup) -> list[Authenticator]:
    """One authenticator per mode of ``settings.auth``, in the order a credential is
    tried; empty when authentication is off."""
    found: list[Authenticator] = []
    for mode in settings.auth:
        if mode == "keys":
            found.append(KeyAuthenticator(lookup_key))
        elif mode == "oidc":
            # Imported only when named: it needs the JOSE library and reaches the issuer.
            oidc = importlib.import_module("waymark.auth.oidc")
            found.append(
                oidc.OidcAuthenticator(
                    issuer=settings.oidc_issuer,
                    audience=settings.oidc_audience or None,
                    roles_claim=settings.oidc_roles_claim,
                )
            )
    return found
