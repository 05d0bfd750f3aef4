"""``GET /v1/stream`` against a live ``waymark serve`` in direct mode: one message per
change, resumption by ``Last-Event-ID`` without gap or duplicate, resets, filters, the
tenant, the cap on open streams, slow clients, and a graceful shutdown."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, pg_schema
from tests.sse import Stream
from waymark.auth import admin
from waymark.auth.admin import grants_of
from waymark.store import changefeed, migrate

#: keep-alives every 0.3 s: the tests' reads return at least that often
FAST = {"WAYMARK_STREAM_KEEP_ALIVE": "0.3"}


def serve(tmp_path: Path, **env: str) -> LiveServer:
    return LiveServer(f"sqlite:///{tmp_path / 'stream.db'}", env={**FAST, **env})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = serve(tmp_path)
    try:
        yield live
    finally:
        live.stop()


def send(url: str, *events: dict[str, object], tenant: str = "default") -> None:
    answer = httpx.post(f"{url}/v1/events", json=list(events), headers={"Waymark-Tenant": tenant})
    assert answer.status_code == 202, answer.text


def test_each_change_is_a_message_with_the_summary_a_read_gives(server: LiveServer) -> None:
    with Stream(server.url) as stream:
        ready = stream.next()
        assert ready is not None and ready.event == "ready"
        send(server.url, {"trace_id": "a", "component": "router"})
        send(server.url, {"trace_id": "b", "trace_status": "FINISHED"})
        got = stream.summaries(2)
    assert [s["trace_id"] for s in got] == ["a", "b"]
    for summary in got:
        read = httpx.get(f"{server.url}/v1/traces/{summary['trace_id']}").json()
        assert summary == read
    assert got[1]["state"] == "SUCCEEDED"


def test_last_event_id_resumes_without_gap_or_duplicate(server: LiveServer) -> None:
    with Stream(server.url) as stream:
        assert stream.next() is not None  # ready
        send(server.url, {"trace_id": "t1"})
        send(server.url, {"trace_id": "t2"})
        assert len(stream.summaries(2)) == 2
        last = stream.parser.last_event_id
    # changes while no stream is open
    for name in ("t3", "t4", "t5"):
        send(server.url, {"trace_id": name})
    with Stream(server.url, headers={"Last-Event-ID": str(last)}) as resumed:
        replayed = resumed.summaries(3)
        send(server.url, {"trace_id": "t6"})
        live = resumed.summaries(1)
        extra = resumed.quiet_for(1)
    assert [s["trace_id"] for s in replayed] == ["t3", "t4", "t5"]
    assert [s["trace_id"] for s in live] == ["t6"]
    assert extra == []
    events = [m.event for m in resumed.seen]
    assert "reset" not in events and "ready" not in events


def test_a_trace_changed_twice_while_away_is_sent_once_as_it_stands(server: LiveServer) -> None:
    with Stream(server.url) as stream:
        assert stream.next() is not None
        last = stream.parser.last_event_id
    send(server.url, {"trace_id": "x", "trace_status": "STARTED"})
    send(server.url, {"trace_id": "y"})
    send(server.url, {"trace_id": "x", "trace_status": "FINISHED"})
    with Stream(server.url, headers={"Last-Event-ID": str(last)}) as resumed:
        got = resumed.summaries(3, timeout_s=2)
    assert [(s["trace_id"], s["event_count"]) for s in got] == [("y", 1), ("x", 2)]


def test_an_id_of_another_process_gets_a_reset_then_goes_live(server: LiveServer) -> None:
    with Stream(server.url, headers={"Last-Event-ID": "0123456789ab-5"}) as stream:
        reset = stream.next()
        assert reset is not None and reset.event == "reset"
        assert "another replica" in reset.data["reason"]
        send(server.url, {"trace_id": "after"})
        assert [s["trace_id"] for s in stream.summaries(1)] == ["after"]


def test_an_id_older_than_the_window_gets_a_reset(tmp_path: Path) -> None:
    live = serve(tmp_path, WAYMARK_STREAM_WINDOW="3")
    try:
        with Stream(live.url) as stream:
            assert stream.next() is not None
            old = stream.parser.last_event_id
        for i in range(5):
            send(live.url, {"trace_id": f"w{i}"})
        with Stream(live.url, headers={"Last-Event-ID": str(old)}) as resumed:
            reset = resumed.next()
            assert reset is not None and reset.event == "reset", resumed.seen
            assert "older than" in reset.data["reason"]
            assert resumed.quiet_for(0.7) == []  # nothing replayed: the client lists again
            send(live.url, {"trace_id": "w5"})
            assert [s["trace_id"] for s in resumed.summaries(1)] == ["w5"]
    finally:
        live.stop()


def test_filters_and_the_tenant_keep_to_what_was_asked(server: LiveServer) -> None:
    params = {"state": ["FAILED", "SUCCEEDED"], "dataset": "sales", "component": "writer"}
    with Stream(server.url, params=params) as stream:
        assert stream.next() is not None
        send(server.url, {"trace_id": "run", "domain_id": "sales/1", "component": "writer"})
        send(
            server.url,
            {"trace_id": "other", "domain_id": "hr/1", "component": "writer"},
            {"trace_id": "other", "trace_status": "FINISHED", "component": "writer"},
        )
        send(
            server.url,
            {"trace_id": "elsewhere", "domain_id": "sales/1", "trace_status": "FINISHED"},
            tenant="acme",
        )
        send(
            server.url,
            {"trace_id": "ok", "domain_id": "sales/2", "component": "reader"},
            {"trace_id": "ok", "trace_status": "FINISHED", "component": "writer"},
        )
        got = stream.summaries(2, timeout_s=2)
    assert [(s["trace_id"], s["state"]) for s in got] == [("ok", "SUCCEEDED")]


def test_an_unknown_state_is_refused_naming_the_field(server: LiveServer) -> None:
    answer = httpx.get(f"{server.url}/v1/stream", params={"state": "DONE"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["loc"][:2] == ["query", "state"]


def test_streams_beyond_the_cap_are_answered_503(tmp_path: Path) -> None:
    live = serve(tmp_path, WAYMARK_MAX_STREAMS="1")
    try:
        with Stream(live.url) as first:
            assert first.next() is not None
            refused = httpx.get(f"{live.url}/v1/stream", timeout=5)
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) > 0
        # the first one closed: its place is free again
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with Stream(live.url) as again:
                if again.response.status_code == 200:
                    break
            time.sleep(0.1)
        assert again.response.status_code == 200
    finally:
        live.stop()


def _erring(trace_id: str) -> dict[str, object]:
    """An event whose summary is about 10 KB: ten distinct errors of 1,000 characters."""
    errors = [{"message": {"en": f"{i} " + "x" * 1000}} for i in range(10)]
    return {"trace_id": trace_id, "errors": errors}


def test_a_client_that_does_not_read_is_dropped(tmp_path: Path) -> None:
    live = serve(tmp_path, WAYMARK_STREAM_SEND_TIMEOUT="1", WAYMARK_MAX_STREAMS="1")
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", live.port))
        sock.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.5)
        # Some 8 MB of summaries (800 traces of ten long errors) fill the socket's buffers
        # (a few MB on loopback) and the server's write buffer; the stream then waits on a
        # client that takes nothing, and is dropped after the send timeout.
        for batch in range(10):
            send(live.url, *(_erring(f"slow-{batch}-{i}") for i in range(80)))
        time.sleep(3)
        # A stream still open would keep sending keep-alives: recv would time out.
        sock.settimeout(5)
        received = 0
        try:
            while chunk := sock.recv(65536):
                received += len(chunk)
        except ConnectionResetError:
            pass
        sock.close()
        assert received > 0  # the connection ended (recv returned b"" or was reset)
        # the server still serves, and the dropped stream's place is free
        with Stream(live.url) as stream:
            assert stream.response.status_code == 200
    finally:
        live.stop()


def test_a_graceful_shutdown_ends_open_streams(tmp_path: Path) -> None:
    live = serve(tmp_path)
    stream = Stream(live.url)
    try:
        assert stream.next() is not None
        started = time.monotonic()
        live.proc.send_signal(signal.SIGTERM)
        assert stream.quiet_for(10) == []
        assert stream.ended  # the answer ended, as an answer ends: no error
        # uvicorn waits for every open answer before it stops (without end, were a stream
        # not to end), then raises the signal again to exit by it
        assert live.proc.wait(10) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 8
    finally:
        stream.close()
        live.stop()


def test_a_credential_limited_to_datasets_sees_only_their_traces(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'auth.db'}"
    migrate.upgrade(store)
    writer = admin.create(store, grants_of("alpha", ["writer"], []))
    sales = admin.create(store, grants_of("alpha", ["reader"], ["sales"]))
    live = LiveServer(store, env={**FAST, "WAYMARK_AUTH": "keys"})
    try:
        refused = httpx.get(f"{live.url}/v1/stream", headers={"Waymark-Tenant": "alpha"})
        assert refused.status_code == 401
        headers = {"Waymark-Tenant": "alpha", "Authorization": f"Bearer {sales}"}
        with Stream(live.url, headers=headers) as stream:
            assert stream.next() is not None
            answer = httpx.post(
                f"{live.url}/v1/events",
                json=[
                    {"trace_id": "hidden", "domain_id": "hr/1"},
                    {"trace_id": "shown", "domain_id": "sales/1"},
                ],
                headers={"Waymark-Tenant": "alpha", "Authorization": f"Bearer {writer}"},
            )
            assert answer.status_code == 202, answer.text
            got = stream.summaries(2, timeout_s=2)
        assert [s["trace_id"] for s in got] == ["shown"]
    finally:
        live.stop()


def test_replicas_on_one_postgresql_stream_each_others_commits(pg_url: str) -> None:
    """Direct mode, two replicas on one database: a change stored through one is streamed
    by the other (the store's change feed), once; a replica on another schema of the same
    database hears nothing of it."""
    with pg_schema() as elsewhere_url:
        one = LiveServer(pg_url, env=FAST)
        two = LiveServer(pg_url, env=FAST)
        elsewhere = LiveServer(elsewhere_url, env=FAST)
        try:
            with (
                Stream(two.url) as stream,
                Stream(one.url) as own,
                Stream(elsewhere.url) as other,
            ):
                for opened in (stream, own, other):
                    assert opened.next() is not None
                send(one.url, {"trace_id": "pg-1"}, {"trace_id": "pg-2"})
                got = stream.summaries(2, timeout_s=5)
                assert sorted(s["trace_id"] for s in got) == ["pg-1", "pg-2"]
                assert stream.quiet_for(0.7) == []
                assert sorted(s["trace_id"] for s in own.summaries(2)) == ["pg-1", "pg-2"]
                assert own.quiet_for(0.7) == []  # its own commit, not again from the feed
                assert other.quiet_for(0.7) == []
        finally:
            for live in (one, two, elsewhere):
                live.stop()


def _stalling(tmp_path: Path) -> dict[str, str]:
    """A server's settings where every trace stalls after 1 s, swept every 0.2 s."""
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text("[default]\nstall_timeout_s = 1\n")
    return {**FAST, "WAYMARK_STALL_SWEEP_S": "0.2", "WAYMARK_PIPELINES": str(pipelines)}


def test_a_stall_is_streamed_once_without_any_webhook(tmp_path: Path) -> None:
    live = LiveServer(f"sqlite:///{tmp_path / 'stream.db'}", env=_stalling(tmp_path))
    try:
        with Stream(live.url, params={"state": "STALLED"}) as stream:
            assert stream.next() is not None  # ready
            send(live.url, {"trace_id": "quiet", "component": "router"})
            got = stream.summaries(1, timeout_s=10)
            assert [(s["trace_id"], s["state"]) for s in got] == [("quiet", "STALLED")]
            # Five more sweeps do not send it again. The event's own change, read after the
            # trace stalled (a slow machine), would be a STALLED message too: one at most.
            assert len(stream.quiet_for(1.0)) <= 1
    finally:
        live.stop()


def test_replicas_on_one_postgresql_stream_a_stall_one_of_them_noticed(
    pg_url: str, tmp_path: Path
) -> None:
    env = _stalling(tmp_path)
    one, two = LiveServer(pg_url, env=env), LiveServer(pg_url, env=env)
    try:
        with (
            Stream(one.url, params={"state": "STALLED"}) as first,
            Stream(two.url, params={"state": "STALLED"}) as second,
        ):
            for opened in (first, second):
                assert opened.next() is not None
            send(one.url, {"trace_id": "quiet"})
            for stream in (first, second):
                got = stream.summaries(1, timeout_s=10)
                assert [(s["trace_id"], s["state"]) for s in got] == [("quiet", "STALLED")]
            for stream in (first, second):  # not again (one late read of the event at most)
                assert len(stream.quiet_for(1.0)) <= 1
    finally:
        one.stop()
        two.stop()


def test_a_large_append_is_announced_in_notices_postgresql_takes() -> None:
    keys = [("t", f"trace-{i:05}-" + "x" * 150) for i in range(500)] + [("u", "last")]
    notices = list(changefeed.payloads("s", "o", keys))
    assert len(notices) > 2
    assert all(len(n.encode()) < 8000 for n in notices)
    heard = [k for n in notices for k in changefeed.changed_keys(n, "s", "other")]
    assert heard == keys
    assert changefeed.changed_keys(notices[0], "s", "o") == []  # its own
    assert changefeed.changed_keys(notices[0], "another schema", "x") == []


def test_open_streams_count_against_a_workers_connections(tmp_path: Path) -> None:
    """A stream is a connection like any other: past the worker's bound, requests are
    refused, streams or not; and no timer of the server cuts a stream that outlives them."""
    live = serve(
        tmp_path, WAYMARK_MAX_CONNECTIONS="3", WAYMARK_HEADER_TIMEOUT="1", WAYMARK_BODY_TIMEOUT="1"
    )
    try:
        with Stream(live.url) as first, Stream(live.url) as second:
            with Stream(live.url) as third:
                for stream in (first, second, third):
                    assert stream.next() is not None
                refused = httpx.get(f"{live.url}/v1/stream", timeout=5)
                assert refused.status_code == 503
            time.sleep(2.5)  # longer than the head and body timeouts
            send(live.url, {"trace_id": "still"})
            assert [s["trace_id"] for s in first.summaries(1)] == ["still"]
            assert [s["trace_id"] for s in second.summaries(1)] == ["still"]
    finally:
        live.stop()
