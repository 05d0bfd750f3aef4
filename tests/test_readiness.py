"""``/readyz`` answers whether writes can succeed, on a real ``waymark serve`` whose SQLite
file lives on a small tmpfs of the test's own, filled up (disk full). ``/healthz``
answers all along: the process lives.

(A read-only file system could not be had here: the tests run as root, whom file modes do
not stop, and a tmpfs with files open for writing cannot be remounted read-only. A
database that takes no writes is tested on PostgreSQL, in ``tests/store``.)"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from waymark.api.health import READY_FOR_S

#: the tmpfs's size: the schema, a WAL and a few hundred small events
TMPFS_SIZE = "4m"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of :data:`TMPFS_SIZE`, mounted for the test (the tests run as root)."""
    where = tmp_path / "mnt"
    where.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)]
    subprocess.run(mount, check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture
def server(tmpfs: Path) -> Iterator[LiveServer]:
    live = LiveServer(f"sqlite:///{tmpfs / 'waymark.db'}")
    try:
        yield live
    finally:
        live.stop()


def readiness(server: LiveServer) -> httpx.Response:
    """``/readyz`` once the outcome of the last check has expired."""
    time.sleep(READY_FOR_S + 0.1)
    return httpx.get(f"{server.url}/readyz", timeout=10)


def post(server: LiveServer, event: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/events", json=event, timeout=30)


def test_a_full_disk_makes_the_server_not_ready(tmpfs: Path, server: LiveServer) -> None:
    assert readiness(server).status_code == 200
    filler = tmpfs / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:  # until the disk is full
        while True:
            out.write(b"\0" * 65536)
    padding = {"pad": "x" * 30_000}
    for n in range(500):  # until a write fails: pages the WAL reuses still take some
        answer = post(server, {"trace_id": f"t{n}", "body": padding})
        if answer.status_code == 503:
            break
        assert answer.status_code == 202
    else:
        pytest.fail("every write succeeded on a full disk")
    not_ready = readiness(server)
    assert not_ready.status_code == 503, not_ready.text
    assert "full" in not_ready.json()["detail"]
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    filler.unlink()
    assert readiness(server).status_code == 200
    assert post(server, {"trace_id": "after", "body": padding}).status_code == 202
