"""Slow and idle clients against a real ``waymark serve``, over raw sockets: a stalled body,
a request head that never ends, idle connections, keep-alive, and more connections than a
worker holds."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HALF_BODY = (
    b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n" + b'{"trace_id": '
)


def connect(server: LiveServer, timeout: float = 30) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module's tests (each leaves it as it found it), with short limits."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('server') / 'waymark.db'}"
    limits = {
        "WAYMARK_HEADER_TIMEOUT": "2",
        "WAYMARK_BODY_TIMEOUT": "1",
        "WAYMARK_KEEP_ALIVE": "1",
        "WAYMARK_MAX_CONNECTIONS": "200",
    }
    live = LiveServer(db_url, env=limits)
    try:
        yield live
    finally:
        live.stop()


def test_a_stalled_body_is_cut_off_with_408(server: LiveServer) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(HALF_BODY)
        answer = read_all(sock)
        took = time.monotonic() - started
    status, body = status_and_body(answer)
    assert status == 408 and "stalled" in str(body["detail"])
    assert 0.9 < took < 5


def test_a_body_that_keeps_coming_is_not_cut_off(server: LiveServer) -> None:
    event = b'{"trace_id": "slow-but-steady"}'
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(event)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(head)
        for i in range(0, len(event), 8):  # 2 s in all, each pause under the 1 s limit
            time.sleep(0.5)
            sock.sendall(event[i : i + 8])
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 202"), answer


def test_a_head_that_never_ends_and_a_silent_connection_are_closed(server: LiveServer) -> None:
    with connect(server) as half, connect(server) as silent:
        started = time.monotonic()
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answers = [read_all(half), read_all(silent)]
        took = time.monotonic() - started
    for answer in answers:
        assert status_and_body(answer)[0] == 408
    assert 1.9 < took < 6


def test_an_idle_keep_alive_connection_is_closed(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEALTHZ)
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        started = time.monotonic()
        assert read_all(sock) == b""  # closed, without another word
        assert 0.9 < time.monotonic() - started < 4


#: idle connections the test opens at once (the machine's open-file limit allows it)
IDLE = 2000


def test_idle_connections_past_the_limit_get_503_and_are_let_go(server: LiveServer) -> None:
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(connect(server)) for _ in range(IDLE)]
        with connect(server) as sock:
            sock.sendall(HEALTHZ)
            status, body = status_and_body(read_all(sock))
        assert status == 503 and "200 connections" in str(body["detail"])
        started = time.monotonic()
        for sock in idle:  # each closed by the server once its head timeout passes
            assert status_and_body(read_all(sock))[0] == 408
        assert time.monotonic() - started < 15
    with connect(server) as sock:
        sock.sendall(HEALTHZ)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # the head comes first


def test_the_default_body_timeout_is_ten_seconds(live_server: LiveServer) -> None:
    with connect(live_server) as sock:
        started = time.monotonic()
        sock.sendall(HALF_BODY)
        status, _ = status_and_body(read_all(sock))
        took = time.monotonic() - started
    assert status == 408 and 9.9 < took < 13
