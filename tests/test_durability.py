"""A 202 from the embedded default (SQLite, direct) means the events are on disk: the real
server's system calls, traced with strace, show the database's write-ahead log synced
after the commit wrote it and before the answer was written to the socket.

Needs ``strace`` on the PATH (``make test`` installs Debian's package when missing)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

#: the calls that write or sync a file, or send an answer (uvloop writes to sockets with
#: write/writev, asyncio's own loop with send/sendto/sendmsg).
TRACED = "fsync,fdatasync,pwrite64,write,writev,sendto,sendmsg"


def strace() -> str:
    found = shutil.which("strace")
    if found is None:
        pytest.fail("this test needs strace on the PATH: `make test` installs it (apt-get)")
    return found


class Traced:
    """strace attached to every thread of a running process, writing to ``log``."""

    def __init__(self, pid: int, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [strace(), "-f", "-y", "-s", "24", "-e", f"trace={TRACED}", "-o", str(log),
             "-p", str(pid)],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        attached = self.proc.stderr.readline()  # "strace: Process N attached [with M threads]"
        if "attached" not in attached:
            self.proc.kill()
            pytest.fail(f"strace could not attach to the server: {attached.strip()}")

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def stop(self) -> None:
        """Detach, leaving the server running."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            assert self.proc.stderr is not None
            self.proc.stderr.close()


@pytest.fixture
def traced_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Traced, Path]]:
    db = tmp_path / "waymark.db"
    server = LiveServer(f"sqlite:///{db}")
    try:
        traced = Traced(server.proc.pid, tmp_path / "strace.log")
        try:
            yield server, traced, db
        finally:
            traced.stop()
    finally:
        server.stop()


def answers(lines: list[str], status: str) -> list[int]:
    """Indexes of the lines that write an HTTP response with this status to a socket."""
    start = f'"HTTP/1.1 {status}'
    return [i for i, line in enumerate(lines) if "<socket:" in line and start in line]


def unsynced_before(lines: list[str], answer: int, wal: str) -> str | None:
    """None if the last call on ``wal`` before line ``answer`` is a sync that had returned
    by then (a sync covers every write before it); otherwise that call."""
    for i in range(answer - 1, -1, -1):
        line = lines[i]
        if f"<{wal}>" not in line:
            continue
        call = re.search(r"\b(fsync|fdatasync)\(", line)
        if call is None:
            return line  # a write, not synced before the answer
        if "<unfinished ...>" not in line:
            return None
        pid = line.split()[0]
        resumed = f"{pid} <... {call.group(1)} resumed>"
        if any(later.startswith(resumed) for later in lines[i + 1 : answer]):
            return None
        return line  # the sync had not returned when the answer went out
    return None


def test_a_202_is_written_only_after_the_commit_is_synced(
    traced_server: tuple[LiveServer, Traced, Path],
) -> None:
    server, traced, db = traced_server
    wal = f"{db}-wal"
    for n in range(3):  # the first commit creates the log; later ones append to it
        answer = httpx.post(
            f"{server.url}/v1/events", json={"trace_id": f"t-{n}", "status": "SUCCESS"}
        )
        assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 10
    while len(answers(traced.lines(), "202")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = traced.lines()
    accepted = answers(lines, "202")
    assert len(accepted) == 3, "\n".join(lines[-40:])
    for answer_at in accepted:
        before = lines[:answer_at]
        writes = [line for line in before if f"<{wal}>" in line and "write" in line]
        assert writes, "no commit wrote the write-ahead log before the answer"
        unsynced = unsynced_before(lines, answer_at, wal)
        context = "\n".join(lines[max(0, answer_at - 8) : answer_at + 1])
        assert unsynced is None, f"the 202 went out before the commit was synced:\n{context}"
