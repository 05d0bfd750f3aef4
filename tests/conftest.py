"""Shared fixtures: the app in-process (``client``), a live server (``live_server``), a
fresh, migrated PostgreSQL schema (``pg_url``, dropped after the test), and the tests' own
NATS JetStream server (``jetstream``, one for the session)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from waymark.api.app import create_app
from waymark.config import Settings
from waymark.store import Store, migrate, open_store

if TYPE_CHECKING:
    from tests.jetstream import JetStreamServer

#: the PostgreSQL server tests use; each test gets its own schema in it.
PG_URL = os.environ.get("WAYMARK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


#: the loggers a command's logging set-up changes (:func:`waymark.logs.log_config`)
CONFIGURED_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Put back the loggers' handlers and levels after each test: a command run in-process
    (``waymark collect`` through the CLI runner) configures logging for the whole process."""
    loggers = [logging.getLogger(name) for name in CONFIGURED_LOGGERS]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'waymark.db'}"


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    """The whole app in-process over a fresh SQLite file."""
    with TestClient(create_app(Settings(store=db_url))) as test_client:
        yield test_client


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server process: SIGTERM, then SIGKILL if it is not gone within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate: Callable[[], object], timeout_s: float) -> bool:
    """Poll ``predicate`` every 50 ms until it is true (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """``waymark serve`` in a subprocess on a free loopback port, in a process group of its
    own (with its workers, if ``args`` asks for them), so that :meth:`kill` takes down all
    of it at once."""

    def __init__(
        self,
        store: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        stderr: int | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "waymark.cli",
                "serve",
                "--port",
                str(self.port),
                "--store",
                store,
                "--log-level",
                "warning",
                *args,
            ],
            env={**os.environ, **(env or {})},
            stderr=stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"waymark serve did not come up on {self.url}")

    def stop(self) -> None:
        terminate(self.proc)

    def kill(self) -> None:
        """SIGKILL to the server and its workers at once: a crash, no shutdown of any kind."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def live_server(db_url: str) -> Iterator[LiveServer]:
    server = LiveServer(db_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def jetstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JetStreamServer]:
    """The tests' own NATS server with JetStream, syncing before it acknowledges
    (``sync_interval: always``, as Waymark requires), for the whole session."""
    from tests.jetstream import JetStreamServer

    server = JetStreamServer(tmp_path_factory.mktemp("jetstream"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def pg_schema(migrated: bool = True) -> Iterator[str]:
    """A new schema on the test server, as a store URL; dropped with everything in it after."""
    name = f"wm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{name}"
    try:
        if migrated:
            migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each backend in turn: a fresh SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'waymark.db'}"
    else:
        with pg_schema() as url:
            yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store at ``store_url``, open for the test."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def app_client(store_url: str, store: Store) -> Iterator[TestClient]:
    """The whole app with API keys on, over ``store`` (where the test adds its keys)."""
    with TestClient(create_app(Settings(store=store_url, auth=("keys",)))) as client:
        yield client


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema at the current revision, as a store URL."""
    with pg_schema() as url:
        yield url


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
"""Sample messages in each shape Waymark takes (native, okdata, GSM, OpenLineage)."""
