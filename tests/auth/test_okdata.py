"""okdata-sdk, unchanged, gets its token from an OpenID Connect issuer by its own
client-credentials code (python-keycloak's ``KeycloakOpenID.token``, which posts to
``{keycloakServerUrl}/realms/{keycloakRealm}/protocol/openid-connect/token``), and Waymark's
verifier accepts that token with the realm roles Keycloak puts in ``realm_access.roles``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from okdata.sdk.config import Config
from okdata.sdk.status import Status

from tests.oidc_issuer import ClientApp, Issuer
from waymark.auth.grants import Grant, Role
from waymark.auth.oidc import OidcAuthenticator


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with Issuer() as running:
        running.clients["parking-fees-uploader"] = ClientApp(
            secret="s3cret",
            claims={
                "aud": ["waymark", "account"],
                "realm_access": {"roles": ["default-roles-waymark", "oslo:writer:parking-fees"]},
            },
        )
        yield running


def okdata_config(issuer: Issuer, secret: str = "s3cret") -> Config:
    return Config(
        config={
            "client_id": "parking-fees-uploader",
            "client_secret": secret,
            "keycloakServerUrl": issuer.base_url,
            "keycloakRealm": issuer.realm,
            "statusApiUrl": "http://127.0.0.1:9/status",
            "cacheCredentials": False,
            "env": "dev",
        }
    )


def test_okdata_sdk_gets_a_token_waymark_accepts(issuer: Issuer) -> None:
    sdk = Status(config=okdata_config(issuer))
    header = sdk.headers()["Authorization"]
    assert header.startswith("Bearer ")
    token_path = f"/realms/{issuer.realm}/protocol/openid-connect/token"
    assert issuer.hits[token_path] == 1

    auth = OidcAuthenticator(issuer.url, "waymark", roles_claim="realm_access.roles")
    principal = asyncio.run(auth.authenticate(header.removeprefix("Bearer ")))
    assert principal is not None
    assert principal.name == "parking-fees-uploader"
    assert principal.grants == frozenset({Grant("oslo", Role.WRITER, "parking-fees")})


def test_a_wrong_client_secret_gets_no_token(issuer: Issuer) -> None:
    from keycloak.exceptions import KeycloakAuthenticationError

    sdk = Status(config=okdata_config(issuer, secret="wrong"))
    with pytest.raises(KeycloakAuthenticationError):
        sdk.headers()
