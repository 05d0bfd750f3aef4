"""``waymark keys``: create prints the secret alone, list shows everything but secrets and
hashes, revoke names what it revoked; bad input is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from waymark.cli import app
from waymark.store import open_store

runner = CliRunner()


def keys(store_url: str, *args: str) -> tuple[int, str, str]:
    out = runner.invoke(app, ["keys", *args, "--store", store_url])
    return out.exit_code, out.stdout, out.stderr


def test_create_list_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    code, secret, _ = keys(
        url, "create", "--tenant", "alpha", "--role", "writer", "--role", "reader",
        "--dataset", "sales", "--name", "ingest", "--expires-in", "90d",
    )  # fmt: skip
    assert code == 0
    assert secret.count("\n") == 1 and secret.startswith("wmk_")  # the secret alone
    code, _, _ = keys(url, "create", "--tenant", "*", "--role", "admin")
    assert code == 0
    code, listed, _ = keys(url, "list", "--format", "json")
    assert code == 0
    found = json.loads(listed)
    assert [k["name"] for k in found][1] == "ingest"
    ingest = found[1]
    assert ingest["grants"] == ["alpha:reader:sales", "alpha:writer:sales"]
    assert ingest["state"] == "active" and ingest["expires_at"] and not ingest["revoked_at"]
    assert found[0]["grants"] == ["*:admin"] and found[0]["expires_at"] is None
    store = open_store(url)
    try:
        stored = store.api_key(ingest["id"])
        assert stored is not None
        assert stored.secret_hash not in listed and secret.strip() not in listed
    finally:
        store.close()
    code, table, _ = keys(url, "list")
    assert code == 0 and "ingest" in table and "active" in table
    code, said, _ = keys(url, "revoke", ingest["id"])
    assert code == 0 and said.strip() == f"revoked {ingest['id']} (ingest)"
    _, listed, _ = keys(url, "list", "--format", "json")
    assert json.loads(listed)[1]["state"] == "revoked"


def test_bad_input_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    for args, words in (
        (["create", "--tenant", "alpha", "--role", "boss"], "'boss'"),
        (["create", "--tenant", "alpha", "--role", "reader", "--expires-in", "soon"], "'soon'"),
        (["create", "--tenant", "a b", "--role", "reader"], "--tenant"),
        (["revoke", "0123456789abcdef"], "no API key with id '0123456789abcdef'"),
    ):
        code, out, err = keys(url, *args)
        assert code == 1 and out == "" and words in err, (args, err)
    assert keys(url, "list", "--format", "json")[1].strip() == "[]"  # nothing was made
