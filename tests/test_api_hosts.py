"""With authentication off, `waymark serve` listens only on loopback unless told
--insecure, and answers only requests whose Host is a loopback name or an allowed one
(against DNS rebinding). Real servers, real HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, free_port
from waymark.api.hosts import host_name, is_loopback


def serve_exits(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "waymark.cli", "serve", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_serve_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    done = serve_exits("--host", "0.0.0.0", "--store", f"sqlite:///{tmp_path / 'w.db'}")
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 with authentication off" in done.stderr
    assert "--insecure" in done.stderr and "--auth" in done.stderr


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        f"sqlite:///{tmp_path_factory.mktemp('hosts') / 'w.db'}",
        args=["--host", "0.0.0.0", "--insecure"],
        env={"WAYMARK_ALLOWED_HOSTS": "waymark.internal, status.example.org"},
    )
    try:
        yield server
    finally:
        server.stop()


def get(server: LiveServer, path: str, host: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={"Host": host})


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "LOCALHOST:8000", "app.localhost", "[::1]:8000", "127.9.9.9"],
)
def test_loopback_names_are_answered(open_server: LiveServer, host: str) -> None:
    assert get(open_server, "/healthz", host).status_code == 200


@pytest.mark.parametrize("host", ["waymark.internal", "status.example.org:443"])
def test_allowed_names_are_answered(open_server: LiveServer, host: str) -> None:
    assert get(open_server, "/healthz", host).status_code == 200


@pytest.mark.parametrize("host", ["rebound.attacker.example", "waymark.internal.evil", "10.0.0.5"])
def test_other_names_are_refused_with_the_reason(open_server: LiveServer, host: str) -> None:
    answer = get(open_server, "/v1/traces", host)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["errors"][0]["loc"] == ["header", "host"]
    assert "WAYMARK_ALLOWED_HOSTS" in problem["detail"]
    assert host_name(host) in problem["detail"]


def test_a_refused_request_stores_nothing(open_server: LiveServer) -> None:
    posted = httpx.post(
        f"{open_server.url}/v1/events",
        json={"trace_id": "rebound", "trace_status": "FINISHED"},
        headers={"Host": "rebound.attacker.example"},
    )
    assert posted.status_code == 400
    assert get(open_server, "/v1/traces/rebound", "localhost").status_code == 404


def test_with_auth_on_a_public_address_needs_no_insecure_and_any_host_is_asked_to_sign_in(
    tmp_path: Path,
) -> None:
    server = LiveServer(
        f"sqlite:///{tmp_path / 'w.db'}", args=["--host", "0.0.0.0", "--auth", "keys"]
    )
    try:
        answer = get(server, "/v1/traces", "status.example.org")
        assert answer.status_code == 401  # the credential decides, not the Host
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("header", "name", "loopback"),
    [
        ("[::1]:80", "::1", True),
        ("::1", "::1", True),
        ("Localhost:1", "localhost", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("localhost.attacker.example", "localhost.attacker.example", False),
        ("0.0.0.0", "0.0.0.0", False),
        ("", "", False),
    ],
)
def test_host_names(header: str, name: str, loopback: bool) -> None:
    assert host_name(header) == name
    assert is_loopback(name) is loopback
