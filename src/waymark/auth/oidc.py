"""OpenID Connect: a bearer token verified against its issuer's published keys.

:class:`OidcAuthenticator` takes the issuer's URL; ``{issuer}/.well-known/openid-configuration``
names the ``jwks_uri``, whose keys (JWKS) verify the tokens' signatures. What it checks,
in order, and what it answers:

- a credential that is not a JWT (three base64url parts, a JSON header with ``alg``):
  None, for another authenticator (API keys) to try;
- ``alg`` must be asymmetric (RSA, RSA-PSS, ECDSA, EdDSA). ``none`` and HMAC are refused
  before any key is looked at, so an HS256 token "signed" with the issuer's public key
  (a classic confusion attack) never reaches a verifier;
- the key named by ``kid`` (or, without a ``kid``, the issuer's keys of the algorithm's
  type): an unknown ``kid`` fetches the JWKS again (the issuer rotated its keys), at most
  once per ``refetch_interval_s`` whatever the number of tokens asking, and concurrent
  misses share one fetch, so a flood of forged tokens cannot hammer the issuer;
- signature, ``iss`` (exactly the configured issuer), ``aud`` (must contain the
  configured audience, if one is), ``exp`` (required) and ``nbf``, with ``leeway_s``
  for clocks that differ;
- the roles claim, a dotted path into the claims (``realm_access.roles`` for Keycloak's
  realm roles): each value ``TENANT:ROLE[:DATASET]`` is a grant, other values (roles meant
  for other applications) are ignored. The principal's name is ``azp``, else
  ``client_id``, else ``sub``.

A token refused for what it is raises :class:`~waymark.errors.Unauthenticated` (401);
an issuer that cannot be reached, when its keys are needed, raises
:class:`~waymark.errors.Unavailable` (503): the token may be fine.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from waymark.auth.grants import Principal, parse_grants
from waymark.errors import Unauthenticated, Unavailable

log = logging.getLogger("waymark.auth")

#: Signature algorithms accepted, by the JWK key type that verifies them.
ALGORITHMS: Mapping[str, str] = {
    **{alg: "RSA" for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    **{alg: "EC" for alg in ("ES256", "ES384", "ES512")},
    "EdDSA": "OKP",
}

DISCOVERY_PATH = "/.well-known/openid-configuration"
DEFAULT_ROLES_CLAIM = "waymark_roles"


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any  # the public key, as PyJWT reads it from the JWK
    kty: str
    alg: str | None  # the algorithm the JWK is declared for, if it says

    def fits(self, alg: str) -> bool:
        return self.kty == ALGORITHMS[alg] and self.alg in (None, alg)


@dataclass(frozen=True, slots=True)
class _Keys:
    """One fetch of the issuer's JWKS: the usable keys by ``kid`` (None for a key without)."""

    by_kid: Mapping[str | None, _Key]
    fetched_at: float  # time.monotonic()


class OidcAuthenticator:
    """Verifies OpenID Connect bearer tokens (JWTs) of one issuer; see the module docstring.

    ``refetch_interval_s`` is the least time between two JWKS fetches prompted by unknown
    ``kid`` values (and the pause after a failed fetch); ``keys_max_age_s`` how long a
    fetched JWKS is used before it is fetched again on the next token, so that a key the
    issuer withdrew stops working. ``transport`` is for tests of the HTTP edge.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | None = None,
        roles_claim: str = DEFAULT_ROLES_CLAIM,
        *,
        leeway_s: float = 30.0,
        refetch_interval_s: float = 10.0,
        keys_max_age_s: float = 3600.0,
        http_timeout_s: float = 5.0,
        cache_size: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not issuer.startswith(("https://", "http://")):
            raise ValueError(f"OpenID Connect issuer {issuer!r} is not an http(s) URL")
        if not roles_claim or any(not part for part in roles_claim.split(".")):
            raise ValueError(f"OpenID Connect roles claim {roles_claim!r} is not a dotted path")
        self.issuer = issuer
        self.audience = audience or None
        self.roles_claim = roles_claim
        self.leeway_s = leeway_s
        self.refetch_interval_s = refetch_interval_s
        self.keys_max_age_s = keys_max_age_s
        self._roles_path = roles_claim.split(".")
        self._timeout = httpx.Timeout(http_timeout_s)
        self._transport = transport
        self._keys: _Keys | None = None
        self._failed_at: float | None = None
        self._failure = ""
        # One lock per event loop (uvicorn runs one per worker; tests may run several in
        # turn): whoever holds it fetches, the others wait and use what it fetched.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        # Verified tokens until their exp. A client sends the same token with every
        # request until it expires, and checking an RS256/ES256 signature with the claims
        # costs far more than a request's own work on the hot path; a token string that
        # verified once verifies again until its exp, so the answer is kept, though no
        # longer than the keys are (keys_max_age_s), so that a token of a key the issuer
        # withdrew stops passing. Bounded: the oldest entries go first.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    # -- the Authenticator protocol ---------------------------------------------------------

    async def authenticate(self, credential: str) -> Principal | None:
        cached = self._verified.get(credential)
        if cached is not None:
            principal, expires = cached
            if time.time() < expires:
                return principal
            del self._verified[credential]
        try:
            header = jwt.get_unverified_header(credential)
        except jwt.PyJWTError:
            return None  # not a JWT: perhaps an API key
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise Unauthenticated(
                f"token algorithm {alg!r} is not accepted; only asymmetric signatures "
                f"({', '.join(ALGORITHMS)}) are"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("token header kid is not a string")
        key = await self._key(kid, alg)
        claims = self._verify(credential, key, alg)
        principal = Principal(name=self._name(claims), grants=self._grants(claims))
        keep_until = min(float(claims["exp"]), time.time() + self.keys_max_age_s)
        self._remember(credential, principal, keep_until)
        return principal

    # -- keys -------------------------------------------------------------------------------

    async def _key(self, kid: str | None, alg: str) -> _Key:
        keys = self._keys
        now = time.monotonic()
        if keys is None or now - keys.fetched_at >= self.keys_max_age_s:
            keys = await self._refresh(stale=keys)
        key = _pick(keys, kid, alg)
        if key is None and time.monotonic() - keys.fetched_at >= self.refetch_interval_s:
            keys = await self._refresh(stale=keys)  # perhaps the issuer rotated its keys
            key = _pick(keys, kid, alg)
        if key is None:
            raise Unauthenticated(
                f"token key {kid!r} is not one of the issuer's keys for {alg}"
                if kid is not None
                else f"token names no key (kid), and the issuer has no single key for {alg}"
            )
        return key

    async def _refresh(self, stale: _Keys | None) -> _Keys:
        """The JWKS fetched anew, unless another request did that while this one waited
        for the lock (concurrent misses share one fetch), or a fetch failed less than
        ``refetch_interval_s`` ago (then :class:`Unavailable` at once, or the stale keys
        if there are any: an issuer's outage must not refuse tokens it signed before)."""
        async with self._lock():
            if self._keys is not stale and self._keys is not None:
                return self._keys
            if (
                self._failed_at is not None
                and time.monotonic() - self._failed_at < self.refetch_interval_s
            ):
                if stale is not None:
                    return stale
                raise Unavailable(self._failure, retry_after=int(self.refetch_interval_s) or 1)
            try:
                keys = await self._fetch()
            except Unavailable as exc:
                self._failed_at, self._failure = time.monotonic(), exc.detail
                log.warning("OpenID Connect keys not fetched: %s", exc.detail)
                if stale is not None:
                    return stale
                raise
            self._failed_at = None
            self._keys = keys
            return keys

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def _fetch(self) -> _Keys:
        discovery_url = self.issuer.rstrip("/") + DISCOVERY_PATH
        async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as http:
            discovery = await _get_json(http, discovery_url)
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise Unavailable(f"{discovery_url} names no jwks_uri", retry_after=5)
            jwks = await _get_json(http, jwks_uri)
        return _Keys(_usable_keys(jwks.get("keys"), jwks_uri), time.monotonic())

    # -- claims -----------------------------------------------------------------------------

    def _verify(self, token: str, key: _Key, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"token was not issued by {self.issuer}") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"token audience does not include {self.audience!r}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token has no {exc.claim} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"token is not valid: {exc}") from None
        if not isinstance(claims.get("exp"), int | float):
            raise Unauthenticated("token exp is not a number")
        return claims

    def _name(self, claims: Mapping[str, Any]) -> str:
        for claim in ("azp", "client_id", "sub"):
            value = claims.get(claim)
            if isinstance(value, str) and value:
                return value
        raise Unauthenticated("token names no one: it has no azp, client_id or sub")

    def _grants(self, claims: Mapping[str, Any]) -> frozenset[Any]:
        value: Any = claims
        for part in self._roles_path:
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            values: Iterable[Any] = value.split()
        elif isinstance(value, list):
            values = value
        else:
            values = ()
        grants, _ignored = parse_grants(v for v in values if isinstance(v, str))
        return grants

    def _remember(self, token: str, principal: Principal, expires: float) -> None:
        verified = self._verified
        verified[token] = (principal, expires)
        while len(verified) > self._cache_size:
            verified.popitem(last=False)


def _pick(keys: _Keys, kid: str | None, alg: str) -> _Key | None:
    """The key that verifies a token of ``alg`` with ``kid``: the one of that ``kid`` if its
    type fits the algorithm; without a ``kid``, the only key whose type fits."""
    if kid is not None:
        key = keys.by_kid.get(kid)
        return key if key is not None and key.fits(alg) else None
    fitting = [k for k in keys.by_kid.values() if k.fits(alg)]
    return fitting[0] if len(fitting) == 1 else None


def _usable_keys(raw: Any, where: str) -> dict[str | None, _Key]:
    """The JWKS's signature keys of an accepted type; others (symmetric ``oct`` keys,
    encryption keys, ones PyJWT cannot read) are skipped."""
    if not isinstance(raw, list):
        raise Unavailable(f"{where} is not a JWKS (no keys list)", retry_after=5)
    keys: dict[str | None, _Key] = {}
    accepted_types = set(ALGORITHMS.values())
    for item in raw:
        if not isinstance(item, dict) or item.get("kty") not in accepted_types:
            continue
        if item.get("use", "sig") != "sig":
            continue
        declared = item.get("alg")
        try:
            key = _Key(
                jwt.PyJWK(item).key, item["kty"], declared if isinstance(declared, str) else None
            )
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("OpenID Connect key %r skipped: %s", item.get("kid"), exc)
            continue
        kid = item.get("kid")
        keys[kid if isinstance(kid, str) else None] = key
    return keys


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise Unavailable(f"{url} cannot be reached: {type(exc).__name__}", retry_after=5) from exc
    if response.status_code != 200:
        raise Unavailable(f"{url} answered {response.status_code}", retry_after=5)
    try:
        body = response.json()
    except ValueError:
        raise Unavailable(f"{url} did not answer JSON", retry_after=5) from None
    if not isinstance(body, dict):
        raise Unavailable(f"{url} did not answer a JSON object", retry_after=5)
    return body
