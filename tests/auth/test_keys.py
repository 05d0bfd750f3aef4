"""API keys: the secret's form, its hash, the authenticator's answers and its cache."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from waymark.auth import keys
from waymark.auth.grants import Grant, Role, parse_grant
from waymark.auth.keys import KeyAuthenticator, make_key, parse_duration
from waymark.errors import Unauthenticated
from waymark.model import now_us
from waymark.store.base import ApiKey

GRANTS = [parse_grant("alpha:writer"), parse_grant("alpha:reader:sales")]


def test_a_secret_names_its_key_and_only_its_hash_is_kept() -> None:
    made = make_key(GRANTS, name="ingest")
    assert made.secret.startswith(f"wmk_{made.key.id}_")
    assert keys.key_id_of(made.secret) == made.key.id
    assert made.secret not in repr(made.key)
    assert made.key.secret_hash == keys.hash_secret(made.secret) != made.secret
    assert made.key.grants == ("alpha:reader:sales", "alpha:writer")
    assert make_key(GRANTS).secret != make_key(GRANTS).secret
    assert make_key(GRANTS).key.name.startswith("key-")


def test_expiry_and_durations() -> None:
    made = make_key(GRANTS, expires_in=timedelta(days=90))
    assert made.key.expires_us is not None
    assert made.key.expires_us - made.key.created_us == 90 * 86_400 * 1_000_000
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("", "90", "d", "0d", "1y", "-1d", "1.5h"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="grant"):
        make_key([])


class Lookups:
    """The store's side of the authenticator: keys by id, counting reads."""

    def __init__(self, *found: ApiKey) -> None:
        self.keys = {k.id: k for k in found}
        self.reads = 0

    async def __call__(self, key_id: str) -> ApiKey | None:
        self.reads += 1
        await asyncio.sleep(0.01)
        return self.keys.get(key_id)


def _refused(auth: KeyAuthenticator, credential: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        asyncio.run(auth.authenticate(credential))
    assert credential not in caught.value.detail
    return caught.value.detail


def test_the_authenticator_answers_each_kind_of_credential() -> None:
    good = make_key(GRANTS, name="ingest")
    expired = make_key(GRANTS, expires_in=timedelta(seconds=1))
    old = ApiKey(**{**_fields(expired.key), "expires_us": now_us() - 1})
    revoked = make_key(GRANTS)
    gone = ApiKey(**{**_fields(revoked.key), "revoked_us": now_us()})
    auth = KeyAuthenticator(Lookups(good.key, old, gone))

    principal = asyncio.run(auth.authenticate(good.secret))
    assert principal is not None and principal.name == "ingest"
    assert principal.allows("alpha", Role.WRITER) and not principal.allows("beta", Role.READER)
    assert principal.grants == frozenset(GRANTS)

    assert asyncio.run(auth.authenticate("eyJhbGciOi.a.b")) is None  # someone else's token
    assert "malformed" in _refused(auth, "wmk_short")
    assert "not known" in _refused(
        auth, good.secret[:-1] + ("A" if good.secret[-1] != "A" else "B")
    )
    assert "not known" in _refused(auth, make_key(GRANTS).secret)
    assert "expired" in _refused(auth, expired.secret)
    assert "revoked" in _refused(auth, revoked.secret)


def _fields(key: ApiKey) -> dict[str, object]:
    return {name: getattr(key, name) for name in ApiKey.__slots__}


def test_lookups_are_remembered_briefly_and_shared_by_concurrent_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = make_key(GRANTS)
    lookups = Lookups(made.key)
    auth = KeyAuthenticator(lookups)

    async def many() -> None:
        await asyncio.gather(*(auth.authenticate(made.secret) for _ in range(50)))

    asyncio.run(many())
    assert lookups.reads == 1
    asyncio.run(many())
    assert lookups.reads == 1  # within CACHE_S
    lookups.keys[made.key.id] = ApiKey(**{**_fields(made.key), "revoked_us": now_us()})
    monkeypatch.setattr(keys, "CACHE_S", 0.0)  # as if CACHE_S passed
    _refused(auth, made.secret)
    assert lookups.reads == 2


def test_grant_texts_of_a_key_round_trip() -> None:
    assert str(Grant("alpha", Role.READER, "sales")) == "alpha:reader:sales"
    assert keys.principal_of(make_key(GRANTS).key).grants == frozenset(GRANTS)
