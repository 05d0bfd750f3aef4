"""API keys: secrets made here, kept in the store as a hash, checked on every request.

A secret reads ``wmk_<id>_<random>``: the prefix makes a leaked key recognisable (secret
scanners, logs), the id finds its row with one primary-key lookup, and the random part
(32 bytes from :mod:`secrets`) is what proves possession. The store keeps the SHA-256 of
the whole secret. A fast hash is the right one here: the secret is 256 random bits, so
there is nothing for a slow, salted password hash to protect against (no dictionary to
try), while every request pays for the hash. The stored and presented hashes are
compared in constant time (:func:`hmac.compare_digest`).

:class:`KeyAuthenticator` remembers each lookup for :data:`CACHE_S` seconds, so a key
revoked or expired stops working on every API replica within that time, and a flood of
requests with one key costs the store one read per replica per interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from waymark.auth.grants import Grant, Principal, parse_grant
from waymark.errors import Unauthenticated
from waymark.model import now_us
from waymark.store.base import ApiKey

PREFIX = "wmk_"
#: how long a lookup is remembered: a revoked or expired key works at most this long after
CACHE_S = 5.0
#: most remembered lookups; beyond it the oldest half is forgotten
CACHE_SIZE = 10_000

_SECRET = re.compile(r"wmk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: the row to store, and the secret to show once."""

    key: ApiKey
    secret: str


def make_key(
    grants: Sequence[Grant], *, name: str | None = None, expires_in: timedelta | None = None
) -> NewKey:
    """A new key with these grants; ``name`` defaults to ``key-<id>``."""
    if not grants:
        raise ValueError("a key needs at least one grant (TENANT:ROLE[:DATASET])")
    key_id = secrets.token_hex(8)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    created = now_us()
    expires = None if expires_in is None else created + expires_in // timedelta(microseconds=1)
    key = ApiKey(
        id=key_id,
        name=name or f"key-{key_id}",
        grants=tuple(sorted(str(g) for g in grants)),
        secret_hash=hash_secret(secret),
        created_us=created,
        expires_us=expires,
    )
    return NewKey(key, secret)


_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w``: ValueError naming the value otherwise."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 90d, 12h, 30m or 2w")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def key_id_of(credential: str) -> str | None:
    """The key id of a credential shaped like one of these secrets, else None (a token
    of another authenticator, or garbage)."""
    found = _SECRET.fullmatch(credential)
    return found.group(1) if found else None


def principal_of(key: ApiKey) -> Principal:
    return Principal(key.name, frozenset(parse_grant(g) for g in key.grants))


class KeyAuthenticator:
    """API keys of the store: an :class:`~waymark.auth.grants.Authenticator`.

    ``lookup`` reads one key by id (off the event loop: the API passes the store's read
    run in a store thread)."""

    def __init__(self, lookup: Callable[[str], Awaitable[ApiKey | None]]) -> None:
        self.lookup = lookup
        self._cache: dict[str, tuple[float, ApiKey | None, Principal | None]] = {}
        self._reading: dict[str, asyncio.Future[ApiKey | None]] = {}

    async def authenticate(self, credential: str) -> Principal | None:
        if not credential.startswith(PREFIX):
            return None
        key_id = key_id_of(credential)
        if key_id is None:
            raise Unauthenticated("the API key is malformed")
        cached = self._cache.get(key_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            key, principal = cached[1], cached[2]
        else:
            key, principal = await self._read(key_id)
        if key is None or not hmac.compare_digest(key.secret_hash, hash_secret(credential)):
            raise Unauthenticated("the API key is not known")
        if key.revoked_us is not None:
            raise Unauthenticated(f"the API key {key.id} is revoked")
        if key.expires_us is not None and key.expires_us <= now_us():
            raise Unauthenticated(f"the API key {key.id} has expired")
        assert principal is not None
        return principal

    async def _read(self, key_id: str) -> tuple[ApiKey | None, Principal | None]:
        """The key of this id and its principal, read from the store and remembered for
        :data:`CACHE_S` seconds; one read per key at a time, whoever else waits for it."""
        reading = self._reading.get(key_id)
        if reading is not None:
            key = await asyncio.shield(reading)
            return key, None if key is None else principal_of(key)
        now = time.monotonic()
        reading = asyncio.ensure_future(self.lookup(key_id))
        self._reading[key_id] = reading
        try:
            key = await reading
        finally:
            del self._reading[key_id]
        principal = None if key is None else principal_of(key)
        if len(self._cache) >= CACHE_SIZE:
            for old in list(self._cache)[: CACHE_SIZE // 2]:
                del self._cache[old]
        self._cache[key_id] = (now, key, principal)
        return key, principal
