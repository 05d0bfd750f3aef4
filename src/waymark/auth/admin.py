"""``waymark keys``: make, list and revoke API keys in a store.

Keys are written to the store directly (by whoever may open it), never through the API,
so that the first admin key can be made before any credential exists.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import orjson
from rich.console import Console
from rich.table import Table

from waymark.auth.grants import ANY_TENANT, Grant, parse_grant
from waymark.auth.keys import make_key, parse_duration
from waymark.model import TRACE_ID_MAX, is_token, iso, now_us
from waymark.store import open_store
from waymark.store.base import ApiKey


def grants_of(tenant: str, roles: Sequence[str], datasets: Sequence[str]) -> list[Grant]:
    """Each role in the tenant, for each dataset (or for all of them when none is given);
    ValueError naming a bad role or tenant."""
    if not roles:
        raise ValueError("give at least one --role (reader, writer, admin or metrics)")
    if tenant != ANY_TENANT and (len(tenant) > TRACE_ID_MAX or not is_token(tenant)):
        raise ValueError(f"--tenant {tenant!r}: must be 1-200 printable characters, no spaces")
    scopes: Sequence[str | None] = list(datasets) or [None]
    grants = []
    for role in roles:
        for dataset in scopes:
            text = f"{tenant}:{role}" if dataset is None else f"{tenant}:{role}:{dataset}"
            grants.append(parse_grant(text))
    return grants


def create(
    store_url: str,
    grants: Sequence[Grant],
    *,
    name: str | None = None,
    expires_in: str | None = None,
) -> str:
    """Store a new key; return its secret (shown once: the store keeps only its hash)."""
    made = make_key(
        grants, name=name, expires_in=None if expires_in is None else parse_duration(expires_in)
    )
    store = open_store(store_url)
    try:
        store.add_api_key(made.key)
    finally:
        store.close()
    return made.secret


def key_json(key: ApiKey) -> dict[str, object]:
    """A key as ``waymark keys list --format json`` shows it: everything but its hash."""
    now = now_us()
    state = "active"
    if key.revoked_us is not None:
        state = "revoked"
    elif key.expires_us is not None and key.expires_us <= now:
        state = "expired"
    return {
        "id": key.id,
        "name": key.name,
        "grants": list(key.grants),
        "state": state,
        "created_at": iso(key.created_us),
        "expires_at": iso(key.expires_us),
        "revoked_at": iso(key.revoked_us),
    }


def show(store_url: str, *, limit: int, as_json: bool) -> None:
    store = open_store(store_url)
    try:
        keys = [key_json(k) for k in store.api_keys(limit=limit)]
    finally:
        store.close()
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(keys) + b"\n")
        return
    table = Table(title=f"API keys ({len(keys)})")
    columns = ("id", "name", "grants", "state", "created_at", "expires_at", "revoked_at")
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for key in keys:
        cells = [key[c] for c in columns]
        table.add_row(
            *(" ".join(map(str, c)) if isinstance(c, list) else str(c or "") for c in cells)
        )
    Console().print(table)


def _cell(value: object) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


def revoke(store_url: str, key_id: str) -> ApiKey:
    """Revoke a key (it stops working within seconds on every API server); ValueError if
    there is no such key."""
    store = open_store(store_url)
    try:
        found = store.revoke_api_key(key_id, now_us())
    finally:
        store.close()
    if found is None:
        raise ValueError(f"no API key with id {key_id!r}")
    return found
