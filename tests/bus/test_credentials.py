"""NATS credentials in the bus URL: a NATS server of the test's own that requires a user
and password (or a token, or a user of its operator's account with a .creds file), and
the API, a collector and the SDK's nats transport going through it; a wrong password ends
`waymark collect` and `waymark serve` at start, with a message that does not show it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, terminate
from tests.jetstream import JetStreamServer
from waymark import nats_credentials
from waymark.bus.base import BusSettings
from waymark.nats_credentials import NatsCredentials
from waymark.sdk import Tracker
from waymark.sdk.transports.nats import NatsTransport

PASSWORD = "pw-with@and:"  # percent-encoded in the URL
QUOTED = "pw-with%40and%3A"
TOKEN = "t0ken-of-the-bus"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JetStreamServer]:
    server = JetStreamServer(
        tmp_path_factory.mktemp("nats-auth"),
        authorization=f'user: alice, password: "{PASSWORD}"',
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def with_login(server: JetStreamServer, userinfo: str) -> str:
    return server.url.replace("nats://", f"nats://{userinfo}@")


def collector(bus: str, store: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "waymark.cli", "collect", "--bus", bus, "--store", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for_summary(url: str, trace_id: str) -> dict[str, object]:
    answer = httpx.get(f"{url}/v1/traces/{trace_id}?wait=20", timeout=30)
    assert answer.status_code == 200, answer.text
    summary: dict[str, object] = answer.json()
    return summary


@contextlib.contextmanager
def api_and_collector(bus: str, store: str) -> Iterator[tuple[LiveServer, list[str]]]:
    """`waymark serve` and `waymark collect` on ``bus``; the collector's output is added
    to the list once the block ends."""
    api = LiveServer(store, env={"WAYMARK_BUS": bus})
    collecting = collector(bus, store)
    output: list[str] = []
    try:
        yield api, output
    finally:
        api.stop()
        terminate(collecting)
        output.append(collecting.communicate()[0].decode())


def post_and_collect(api: LiveServer, trace_id: str) -> None:
    """A finishing event through the API, stored once a collector has it."""
    posted = httpx.post(
        f"{api.url}/v1/events", json={"trace_id": trace_id, "trace_status": "FINISHED"}
    )
    assert posted.status_code == 202, posted.text
    assert wait_for_summary(api.url, trace_id)["done"] is True


def test_api_collector_and_sdk_through_a_server_with_a_password(
    guarded: JetStreamServer, store_url: str
) -> None:
    """Both stores (``store_url``: SQLite, then PostgreSQL)."""
    bus = with_login(guarded, f"alice:{QUOTED}")
    with api_and_collector(bus, store_url) as (api, output):
        post_and_collect(api, "via-api")
        tracker = Tracker(transport=NatsTransport(bus), component="nats-sdk")
        with tracker.step(stage="LOAD", trace_id="via-sdk", trace_status="FINISHED"):
            pass
        assert tracker.flush(20)
        tracker.close()
        assert tracker.stats().sent == 1
        assert wait_for_summary(api.url, "via-sdk")["state"] == "SUCCEEDED"
    assert "collector started" in output[0]
    assert PASSWORD not in output[0] and QUOTED not in output[0]


@pytest.mark.parametrize("command", ["collect", "serve"])
def test_a_wrong_password_ends_the_command_at_start(
    guarded: JetStreamServer, tmp_path: Path, command: str
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "waymark.cli", command, "--store", f"sqlite:///{tmp_path / 'w.db'}"]
        + ["--bus", with_login(guarded, "alice:Wrong-Secret")]
        + (["--port", "0"] if command == "serve" else []),
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert "refused the bus URL's credentials (user 'alice')" in text
    assert "Wrong-Secret" not in text
    assert time.monotonic() - started < 30  # not retried as if the server were down


def test_no_credentials_where_the_server_wants_them(guarded: JetStreamServer) -> None:
    import asyncio

    with pytest.raises(nats_credentials.CredentialsRefused, match="no credentials"):
        asyncio.run(nats_credentials.connect((guarded.url,), NatsCredentials(), connect_timeout=2))


def test_a_token(tmp_path: Path) -> None:
    import asyncio

    server = JetStreamServer(tmp_path, authorization=f'token: "{TOKEN}"')
    server.start()
    try:
        good = BusSettings.from_url(with_login(server, TOKEN))
        bad = BusSettings.from_url(with_login(server, "not-the-token"))

        async def login(settings: BusSettings) -> None:
            nc = await nats_credentials.connect(
                settings.servers, settings.credentials, connect_timeout=2
            )
            await nc.close()

        asyncio.run(login(good))
        with pytest.raises(nats_credentials.CredentialsRefused, match=r"\(a token\)") as caught:
            asyncio.run(login(bad))
        assert "not-the-token" not in str(caught.value)
    finally:
        server.stop()


def test_the_url_keeps_secrets_out_of_what_it_shows(tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n")
    settings = BusSettings.from_url(f"nats://alice:{QUOTED}@a:4222,b:4222?stream=S&creds={creds}")
    assert settings.servers == ("nats://a:4222", "nats://b:4222")
    assert settings.stream == "S"
    assert settings.credentials.connect_options() == {
        "user": "alice",
        "password": PASSWORD,
        "user_credentials": str(creds),
    }
    assert PASSWORD not in repr(settings) and QUOTED not in repr(settings)
    assert nats_credentials.parse("nats://tok@a:1").redacted() == "nats://***@a:1"
    with pytest.raises(ValueError, match="not a readable file") as caught:
        BusSettings.from_url(f"nats://alice:{QUOTED}@a:4222?creds=/nowhere.creds")
    assert QUOTED not in str(caught.value)
    with pytest.raises(ValueError, match="once") as caught:
        BusSettings.from_url("nats://alice:one@a:4222,alice:two@b:4222")
    assert "one" not in str(caught.value)


def test_a_creds_file(tmp_path: Path) -> None:
    """NATS decentralized authentication: the API and a collector log in with a user's
    .creds file (JWT and NKey seed) named by the bus URL."""
    from tests.nats_operator import operator_setup

    settings, creds = operator_setup(tmp_path)
    server = JetStreamServer(tmp_path, settings=settings)
    server.start()
    try:
        bus, store = f"{server.url}?creds={creds}", f"sqlite:///{tmp_path / 'w.db'}"
        with api_and_collector(bus, store) as (api, _):
            post_and_collect(api, "via-creds")
        with pytest.raises(nats_credentials.CredentialsRefused, match="no credentials"):
            asyncio.run(
                nats_credentials.connect((server.url,), NatsCredentials(), connect_timeout=2)
            )
    finally:
        server.stop()
