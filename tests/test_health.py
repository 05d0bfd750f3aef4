"""``/healthz`` and ``/readyz``, and the store's durability warnings: a PostgreSQL whose
``synchronous_commit`` is off for Waymark's connections is named in the server's log at
start and in ``/readyz``, on a real ``waymark serve`` and a real PostgreSQL."""

from __future__ import annotations

import subprocess

import httpx
from fastapi.testclient import TestClient

from tests.conftest import LiveServer
from waymark.store import open_store
from waymark.store.postgres import durability_warnings_of


def with_options(url: str, *options: str) -> str:
    """The store URL with more ``-c name=value`` connection options for libpq."""
    extra = "".join(f"%20-c{option.replace('=', '%3D')}" for option in options)
    assert "?options=" in url
    return url + extra


def test_readyz_answers_ready_without_warnings_for_sqlite(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "warnings": []}
    assert client.get("/healthz").json() == {"status": "ok"}


def test_postgresql_as_configured_by_default_gives_no_warning(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        assert store.durability_warnings() == []
    finally:
        store.close()


def test_synchronous_commit_off_is_warned_of_in_the_log_and_in_readyz(pg_url: str) -> None:
    url = with_options(pg_url, "synchronous_commit=off")
    server = LiveServer(url, stderr=subprocess.PIPE)
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        # the setting is Waymark's connections' own: writes still answer as before
        posted = httpx.post(f"{server.url}/v1/events", json={"trace_id": "t"}, timeout=10)
    finally:
        server.stop()
        assert server.proc.stderr is not None
        log = server.proc.stderr.read().decode()
        server.proc.stderr.close()
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    [warning] = body["warnings"]
    assert "synchronous_commit is off" in warning
    assert "power loss can lose events already answered 202" in warning
    assert f"store durability: {warning}" in log
    assert posted.status_code == 202


def test_local_or_remote_synchronous_commit_is_durable_on_this_server(pg_url: str) -> None:
    # Every value but off waits for the local WAL flush before a commit returns.
    for value in ("local", "remote_write", "remote_apply", "on"):
        store = open_store(with_options(pg_url, f"synchronous_commit={value}"))
        try:
            assert store.durability_warnings() == [], value
        finally:
            store.close()


def test_each_unsafe_server_setting_is_named() -> None:
    # fsync and full_page_writes are server-wide (postgresql.conf): not settable per test.
    warnings = durability_warnings_of(
        {"synchronous_commit": "on", "fsync": "off", "full_page_writes": "off"}, "PostgreSQL x"
    )
    assert [w.split(" is off")[0] for w in warnings] == [
        "PostgreSQL x: fsync",
        "PostgreSQL x: full_page_writes",
    ]
    assert (
        durability_warnings_of(
            {"synchronous_commit": "on", "fsync": "on", "full_page_writes": "on"}, "PostgreSQL x"
        )
        == []
    )
