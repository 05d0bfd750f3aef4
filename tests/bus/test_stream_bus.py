"""``GET /v1/stream`` in bus mode: API replicas follow the collectors' change feed, so a
stream on one replica carries what was sent through another; ``Last-Event-ID`` resumes
on the same replica and gets a reset on another."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.bus.conftest import start_collector
from tests.conftest import LiveServer
from tests.sse import Stream

FAST = {"WAYMARK_STREAM_KEEP_ALIVE": "0.3"}


def send(url: str, *events: dict[str, object]) -> None:
    answer = httpx.post(f"{url}/v1/events", json=list(events))
    assert answer.status_code == 202, answer.text


def test_streams_follow_the_collectors_feed_and_resume(
    store_url: str, bus_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    env = {**FAST, "WAYMARK_BUS": bus_url}
    writer, reader = LiveServer(store_url, env=env), LiveServer(store_url, env=env)
    try:
        procs.append(start_collector(store_url, bus_url))
        with Stream(reader.url) as stream:
            ready = stream.next()
            assert ready is not None and ready.event == "ready"
            send(writer.url, {"trace_id": "b1", "component": "router"})
            send(writer.url, {"trace_id": "b2", "trace_status": "FINISHED"})
            got = stream.summaries(2, timeout_s=20)
            last = stream.parser.last_event_id
        assert [s["trace_id"] for s in got] == ["b1", "b2"]
        assert got == [httpx.get(f"{reader.url}/v1/traces/{s['trace_id']}").json() for s in got]

        send(writer.url, {"trace_id": "b3"})
        send(writer.url, {"trace_id": "b4", "trace_status": "FINISHED"})
        # the collector stores them while no stream is open; the reader hears of them
        stored = httpx.get(f"{reader.url}/v1/traces/b4", params={"wait": 15}, timeout=20)
        assert stored.status_code == 200 and stored.json()["done"]
        with Stream(reader.url, headers={"Last-Event-ID": str(last)}) as resumed:
            replayed = resumed.summaries(2, timeout_s=10)
            assert resumed.quiet_for(1) == []
        assert [s["trace_id"] for s in replayed] == ["b3", "b4"]
        assert [m.event for m in resumed.seen] == ["summary", "summary"]

        # the writer replica heard the feed too, but its ids are its own
        with Stream(writer.url, headers={"Last-Event-ID": str(last)}) as elsewhere:
            reset = elsewhere.next()
            assert reset is not None and reset.event == "reset"
            send(writer.url, {"trace_id": "b5"})
            assert [s["trace_id"] for s in elsewhere.summaries(1, timeout_s=20)] == ["b5"]
    finally:
        writer.stop()
        reader.stop()


def test_a_stall_reaches_the_streams_of_every_replica(
    store_url: str, bus_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Whichever replica's sweep notices a stall, it announces it on the change feed."""
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text("[default]\nstall_timeout_s = 1\n")
    env = {
        **FAST,
        "WAYMARK_BUS": bus_url,
        "WAYMARK_STALL_SWEEP_S": "0.2",
        "WAYMARK_PIPELINES": str(pipelines),
    }
    one, two = LiveServer(store_url, env=env), LiveServer(store_url, env=env)
    try:
        procs.append(start_collector(store_url, bus_url))
        with (
            Stream(one.url, params={"state": "STALLED"}) as first,
            Stream(two.url, params={"state": "STALLED"}) as second,
        ):
            for opened in (first, second):
                assert opened.next() is not None  # ready
            send(one.url, {"trace_id": "quiet"})
            for stream in (first, second):
                got = stream.summaries(1, timeout_s=20)
                assert [(s["trace_id"], s["state"]) for s in got] == [("quiet", "STALLED")]
            # Later sweeps (seven in 1.5 s) do not announce it again. The event's own change
            # may come from the collectors' feed after the trace stalled, and then it is
            # read as STALLED too: one more message at most.
            for stream in (first, second):
                assert len(stream.quiet_for(1.5)) <= 1
    finally:
        one.stop()
        two.stop()
