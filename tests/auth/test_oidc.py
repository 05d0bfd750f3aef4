"""The OpenID Connect verifier over real HTTP against the tests' own issuer
(:mod:`tests.oidc_issuer`): every refusal, key rotation, and how often it asks the issuer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.oidc_issuer import Issuer
from waymark.auth.grants import Grant, Principal, Role
from waymark.auth.oidc import OidcAuthenticator
from waymark.errors import Unauthenticated, Unavailable

AUDIENCE = "waymark"


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with Issuer() as running:
        yield running


def verifier(issuer: Issuer, **kwargs: object) -> OidcAuthenticator:
    return OidcAuthenticator(issuer.url, **{"audience": AUDIENCE, **kwargs})  # type: ignore[arg-type]


def check(auth: OidcAuthenticator, *tokens: str) -> list[Principal | None]:
    async def run() -> list[Principal | None]:
        return [await auth.authenticate(token) for token in tokens]

    return asyncio.run(run())


def refused(auth: OidcAuthenticator, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        check(auth, token)
    assert token not in caught.value.detail
    return caught.value.detail


def jwks_fetches(issuer: Issuer) -> int:
    return issuer.hits[f"/realms/{issuer.realm}/protocol/openid-connect/certs"]


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_valid_token_gives_its_grants_and_name(issuer: Issuer, alg: str) -> None:
    token = issuer.token(
        alg=alg,
        aud=[AUDIENCE, "account"],
        azp="pipeline-bot",
        waymark_roles=["alpha:writer", "beta:reader:parking-fees", "other-app-role", "*:reader"],
    )
    (principal,) = check(verifier(issuer), token)
    assert principal == Principal(
        "pipeline-bot",
        frozenset(
            {
                Grant("alpha", Role.WRITER),
                Grant("beta", Role.READER, "parking-fees"),
                Grant("*", Role.READER),
            }
        ),
    )


def test_keycloak_realm_roles_by_a_dotted_path(issuer: Issuer) -> None:
    token = issuer.token(
        aud=AUDIENCE,
        azp=None,
        client_id="okdata-uploader",
        realm_access={"roles": ["offline_access", "opendes:admin"]},
        waymark_roles=["ignored:admin"],
    )
    (principal,) = check(verifier(issuer, roles_claim="realm_access.roles"), token)
    assert principal is not None
    assert principal.name == "okdata-uploader"
    assert principal.grants == frozenset({Grant("opendes", Role.ADMIN)})


def test_a_space_separated_claim_and_the_subject_as_name(issuer: Issuer) -> None:
    token = issuer.token(aud=AUDIENCE, sub="user-7", roles="alpha:reader  beta:writer")
    (principal,) = check(verifier(issuer, roles_claim="roles"), token)
    assert principal is not None and principal.name == "user-7"
    assert principal.grants == frozenset({Grant("alpha", Role.READER), Grant("beta", Role.WRITER)})


def test_no_audience_configured_accepts_any(issuer: Issuer) -> None:
    (principal,) = check(verifier(issuer, audience=None), issuer.token(aud="elsewhere"))
    assert principal is not None and principal.grants == frozenset()


@pytest.mark.parametrize("credential", ["", "garbage", "wmk_0123456789abcdef", "a.b.c", "x" * 5000])
def test_a_credential_that_is_not_a_jwt_is_left_to_others(issuer: Issuer, credential: str) -> None:
    assert check(verifier(issuer), credential) == [None]
    assert jwks_fetches(issuer) == 0  # nothing to ask the issuer about


def test_expired(issuer: Issuer) -> None:
    now = int(time.time())
    detail = refused(verifier(issuer), issuer.token(aud=AUDIENCE, iat=now - 600, exp=now - 60))
    assert "expired" in detail


def test_expired_within_the_leeway_passes(issuer: Issuer) -> None:
    now = int(time.time())
    token = issuer.token(aud=AUDIENCE, iat=now - 600, exp=now - 5)
    assert check(verifier(issuer, leeway_s=30), token)[0] is not None


def test_not_yet_valid(issuer: Issuer) -> None:
    now = int(time.time())
    detail = refused(verifier(issuer), issuer.token(aud=AUDIENCE, nbf=now + 600))
    assert "not valid yet" in detail


def test_without_exp(issuer: Issuer) -> None:
    assert "exp" in refused(verifier(issuer), issuer.token(aud=AUDIENCE, exp=None))


def test_wrong_issuer(issuer: Issuer) -> None:
    token = issuer.token(aud=AUDIENCE, iss="http://127.0.0.1:1/realms/evil")
    assert issuer.url in refused(verifier(issuer), token)


def test_wrong_audience(issuer: Issuer) -> None:
    detail = refused(verifier(issuer), issuer.token(aud=["account", "other-api"]))
    assert "audience" in detail and AUDIENCE in detail


def test_missing_audience(issuer: Issuer) -> None:
    assert "aud" in refused(verifier(issuer), issuer.token())


def test_alg_none(issuer: Issuer) -> None:
    assert "'none'" in refused(verifier(issuer), issuer.unsigned_token(aud=AUDIENCE))


def test_hmac_signed_with_the_public_key(issuer: Issuer) -> None:
    token = issuer.hmac_with_public_key(aud=AUDIENCE)
    assert "HS256" in refused(verifier(issuer), token)
    assert jwks_fetches(issuer) == 0  # refused before any key was looked at


def test_a_signature_of_another_key(issuer: Issuer) -> None:
    from tests.oidc_issuer import SigningKey

    stranger = SigningKey.generate("RS256")
    stranger.kid = issuer.key("RS256").kid  # claims to be the issuer's key
    assert "signature" in refused(verifier(issuer), issuer.token(aud=AUDIENCE, key=stranger))


def test_a_tampered_payload(issuer: Issuer) -> None:
    header, _, signature = issuer.token(aud=AUDIENCE, waymark_roles=["a:reader"]).split(".")
    forged = issuer.token(aud=AUDIENCE, waymark_roles=["*:admin"]).split(".")[1]
    assert "signature" in refused(verifier(issuer), f"{header}.{forged}.{signature}")


def test_an_rsa_kid_with_an_ec_algorithm(issuer: Issuer) -> None:
    token = issuer.token(aud=AUDIENCE, alg="ES256", kid=issuer.key("RS256").kid)
    assert "not one of the issuer's keys for ES256" in refused(verifier(issuer), token)


def test_without_kid_the_one_key_of_the_type_is_used(issuer: Issuer) -> None:
    assert check(verifier(issuer), issuer.token(aud=AUDIENCE, alg="ES256", kid=None))[0]


def test_unknown_kid_after_rotation_fetches_the_keys_again(issuer: Issuer) -> None:
    auth = verifier(issuer, refetch_interval_s=0.2)
    assert check(auth, issuer.token(aud=AUDIENCE))[0] is not None
    assert jwks_fetches(issuer) == 1
    time.sleep(0.25)
    issuer.rotate("RS256")
    principal = check(auth, issuer.token(aud=AUDIENCE, azp="after-rotation"))[0]
    assert principal is not None and principal.name == "after-rotation"
    assert jwks_fetches(issuer) == 2


def test_a_withdrawn_key_stops_working_when_the_keys_are_refreshed(issuer: Issuer) -> None:
    old_token = issuer.token(aud=AUDIENCE)
    auth = verifier(issuer, keys_max_age_s=0.2)  # the verified token is kept no longer
    assert check(auth, old_token)[0] is not None
    issuer.rotate("RS256")
    time.sleep(0.25)
    assert "not one of the issuer's keys" in refused(auth, old_token)


def test_a_flood_of_unknown_kids_fetches_at_most_once(issuer: Issuer) -> None:
    auth = verifier(issuer, refetch_interval_s=60)
    assert check(auth, issuer.token(aud=AUDIENCE))[0] is not None
    tokens = [issuer.token(aud=AUDIENCE, kid=f"forged-{i}") for i in range(200)]

    async def flood() -> list[BaseException | Principal | None]:
        return await asyncio.gather(*(auth.authenticate(t) for t in tokens), return_exceptions=True)

    results = asyncio.run(flood())
    assert all(isinstance(r, Unauthenticated) for r in results)
    assert jwks_fetches(issuer) == 1  # the first fetch only: the refetch interval holds


def test_concurrent_misses_share_one_fetch(issuer: Issuer) -> None:
    auth = verifier(issuer, refetch_interval_s=0.1)
    assert check(auth, issuer.token(aud=AUDIENCE))[0] is not None
    time.sleep(0.15)
    new = issuer.rotate("RS256")
    tokens = [issuer.token(aud=AUDIENCE, key=new, sub=f"s{i}") for i in range(50)]

    async def together() -> list[Principal | None]:
        return await asyncio.gather(*(auth.authenticate(t) for t in tokens))

    assert all(p is not None for p in asyncio.run(together()))
    assert jwks_fetches(issuer) == 2


def test_the_issuer_down_is_unavailable_not_unauthenticated(issuer: Issuer) -> None:
    issuer.up = False
    auth = verifier(issuer, refetch_interval_s=60)
    with pytest.raises(Unavailable) as caught:
        check(auth, issuer.token(aud=AUDIENCE))
    assert "503" in caught.value.detail
    with pytest.raises(Unavailable):  # again, from memory: the issuer is not asked
        check(auth, issuer.token(aud=AUDIENCE))
    discovery = f"/realms/{issuer.realm}/.well-known/openid-configuration"
    assert issuer.hits[discovery] == 1


def test_the_issuer_unreachable_is_unavailable() -> None:
    with Issuer() as gone:
        token = gone.token(aud=AUDIENCE)
        url = gone.url
    with pytest.raises(Unavailable):
        check(OidcAuthenticator(url, AUDIENCE, http_timeout_s=1), token)


def test_keys_already_fetched_outlive_an_outage(issuer: Issuer) -> None:
    auth = verifier(issuer, keys_max_age_s=0.1, cache_size=0)
    assert check(auth, issuer.token(aud=AUDIENCE))[0] is not None
    issuer.up = False
    time.sleep(0.15)
    assert check(auth, issuer.token(aud=AUDIENCE))[0] is not None


def test_a_verified_token_is_not_verified_again_until_it_expires(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = verifier(issuer)
    token = issuer.token(aud=AUDIENCE, exp=int(time.time()) + 2)
    first, second = check(auth, token, token)
    assert first is second  # the same object: the second answer came from the cache
    time.sleep(2.1)
    # Past its exp the cache lets go; the leeway still accepts it, verified anew.
    (third,) = check(auth, token)
    assert third == first and third is not first


def test_the_cache_is_bounded(issuer: Issuer) -> None:
    auth = verifier(issuer, cache_size=3)
    tokens = [issuer.token(aud=AUDIENCE, sub=f"s{i}") for i in range(10)]
    principals = check(auth, *tokens)
    assert check(auth, tokens[-1])[0] is principals[-1]  # among the last three: kept
    assert check(auth, tokens[0])[0] is not principals[0]  # pushed out: verified again


@pytest.mark.parametrize("bad", ["realm_access..roles", "", ".roles"])
def test_a_bad_roles_claim_is_refused_at_start(bad: str) -> None:
    with pytest.raises(ValueError, match="roles claim"):
        OidcAuthenticator("https://issuer.example", roles_claim=bad)


@pytest.mark.parametrize(
    ("issuer", "claim", "named"),
    [
        ("ftp://issuer.example", "roles", "WAYMARK_OIDC_ISSUER"),
        ("https://issuer.example", "realm_access..roles", "WAYMARK_OIDC_ROLES_CLAIM"),
    ],
)
def test_bad_oidc_settings_are_named_before_serving(issuer: str, claim: str, named: str) -> None:
    from waymark.config import Settings

    with pytest.raises(ValueError, match=named):
        Settings.resolve(auth="oidc", oidc_issuer=issuer, oidc_roles_claim=claim)
