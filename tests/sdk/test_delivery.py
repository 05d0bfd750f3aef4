"""The tracker against real servers: a live Waymark, and a tiny HTTP server that is slow or
answers 500. The instrumented function never notices; events arrive once the server does."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port
from waymark.sdk import Backoff, Client, Tracker

FAST = Backoff(base=0.05, cap=0.2)


def test_events_arrive_with_their_fields_and_lineage(live_server: LiveServer) -> None:
    tracker = Tracker(url=live_server.url, component="csv-to-parquet", tenant="live")

    @tracker.step(stage="TRANSFORM", trace_id=lambda event: event["execution_name"])
    def transform(event: dict[str, str]) -> str:
        with tracker.step(stage="WRITE", operation="write_parquet") as step:
            step.add(inputs=[event["path"]], outputs=["processed/fees.parquet"])
            step.add(domain="dataset", domain_id="parking-fees/1")
        return "written"

    assert transform({"execution_name": "trace-live", "path": "raw/fees.csv"}) == "written"
    with tracker.step(stage="END", trace_id="trace-live", trace_status="FINISHED"):
        pass
    assert tracker.flush(10)
    tracker.close()

    with Client(live_server.url, tenant="live") as client:
        summary = client.summary("trace-live")
        events = {e["stage"]: e for e in client.events("trace-live")}
        lineage = client.lineage("trace-live")
    assert (summary.done, summary.state, summary.event_count) == (True, "SUCCEEDED", 3)
    assert summary.domain_id == "parking-fees/1"
    write = events["WRITE"]
    assert write["component"] == "csv-to-parquet"
    assert write["operation"] == "write_parquet"
    assert write["status"] == "SUCCESS"
    assert write["trace_status"] == "CONTINUE"
    assert write["inputs"] == ["raw/fees.csv"]
    assert write["start_time"] <= write["end_time"] <= events["TRANSFORM"]["end_time"]
    assert events["TRANSFORM"]["operation"] == "transform"
    step = f"step:{write['event_id']}"
    assert [(e.from_, e.to) for e in lineage.edges] == [
        ("path:raw/fees.csv", step),
        (step, "path:processed/fees.parquet"),
    ]


def test_a_failed_step_reaches_the_server_as_failed(live_server: LiveServer) -> None:
    with Tracker(url=live_server.url) as tracker:

        @tracker.step(stage="PARSE", trace_id="trace-failed")
        def parse() -> None:
            raise ValueError("line 3: bad date")

        with pytest.raises(ValueError):
            parse()
        assert tracker.flush(10)
    with Client(live_server.url) as client:
        summary = client.summary("trace-failed")
    assert (summary.done, summary.state, summary.outcome) == (True, "FAILED", "FAILED")
    assert summary.current.stage == "PARSE"


def test_server_down_then_back(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    tracker = Tracker(url=f"http://127.0.0.1:{port}", backoff=FAST, flush_interval=0.05)

    @tracker.step(stage="S", trace_id="trace-down")
    def step(i: int) -> int:
        return i * i

    assert [step(i) for i in range(20)] == [i * i for i in range(20)]
    assert tracker.flush(0.5) is False  # nowhere to deliver yet
    assert tracker.stats().retries >= 1
    server = LiveServer(f"sqlite:///{tmp_path / 'back.db'}", port=port)
    try:
        assert tracker.flush(30)
        tracker.close()
        with Client(server.url) as client:
            assert client.summary("trace-down").event_count == 20
    finally:
        server.stop()
    assert tracker.stats().sent == 20


def test_server_down_past_the_bound_drops_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(
        url=f"http://127.0.0.1:{free_port()}", max_queue=5, backoff=FAST, flush_interval=0.01
    )
    step = tracker.step(stage="S", trace_id="trace-bound")
    with step:
        pass
    deadline = time.monotonic() + 20
    while tracker.stats().retries < 1:  # the first event is now in flight, being retried
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with caplog.at_level(logging.WARNING, "waymark.sdk"):
        for _ in range(10):
            with step:
                pass
        assert tracker.dropped == 5
        assert tracker.close(0) is False
    stats = tracker.stats()
    assert (stats.sent, stats.dropped, stats.lost) == (0, 5, 6)
    assert "5 events dropped so far" in caplog.text
    assert "6 events undelivered at close" in caplog.text


class FakeWaymark:
    """A real HTTP server on loopback that answers ``POST /v1/events`` as told: ``fail``
    (500), ``hold`` (the handler blocks until :attr:`release` is set), or ``ok``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.release = threading.Event()
        self.holding = threading.Event()
        self.stored: dict[str, dict[str, Any]] = {}
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests += 1
                if fake.mode == "fail":
                    self._answer(500, {"status": 500, "detail": "internal error"})
                    return
                if fake.mode == "hold":
                    fake.holding.set()
                    fake.release.wait(30)
                events = json.loads(body)
                for event in events:
                    fake.stored[event["event_id"]] = event
                ids = [e["event_id"] for e in events]
                self._answer(202, {"accepted": len(ids), "event_ids": ids})

            def _answer(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeWaymark]:
    server = FakeWaymark()
    yield server
    server.stop()


def test_server_answering_500_then_recovering(fake: FakeWaymark) -> None:
    fake.mode = "fail"
    tracker = Tracker(url=fake.url, backoff=FAST, flush_interval=0.05)

    @tracker.step(stage="S", trace_id="trace-500")
    def step(i: int) -> int:
        return -i

    assert [step(i) for i in range(10)] == [-i for i in range(10)]
    assert tracker.flush(0.5) is False
    assert fake.requests >= 2  # retried
    assert fake.stored == {}
    fake.mode = "ok"
    assert tracker.flush(30)
    tracker.close()
    assert len(fake.stored) == 10
    assert {e["trace_id"] for e in fake.stored.values()} == {"trace-500"}
    assert tracker.stats().sent == 10


def test_a_slow_server_never_holds_up_the_step(fake: FakeWaymark) -> None:
    fake.mode = "hold"
    tracker = Tracker(url=fake.url, flush_interval=0.01)

    @tracker.step(stage="S", trace_id="trace-slow")
    def step(i: int) -> int:
        return i + 100

    assert step(0) == 100
    assert fake.holding.wait(10)  # the server now holds the first delivery
    results = [step(i) for i in range(1, 50)]  # ... and the steps run on regardless
    assert results == list(range(101, 150))
    assert not fake.release.is_set()
    assert fake.stored == {}
    fake.release.set()
    assert tracker.flush(30)
    tracker.close()
    assert len(fake.stored) == 50


def test_the_exit_flush_delivers_a_last_step(live_server: LiveServer) -> None:
    script = textwrap.dedent(
        """
        import sys
        from waymark.sdk import Tracker

        # No batch fills and no timer fires before exit: only the exit flush can deliver.
        tracker = Tracker(url=sys.argv[1], flush_interval=3600, batch_size=1000)

        @tracker.step(stage="LAST", trace_id="trace-exit")
        def last():
            return "done"

        print(last())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, live_server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    answer = httpx.get(f"{live_server.url}/v1/traces/trace-exit/events")
    assert answer.status_code == 200
    [event] = answer.json()["items"]
    assert (event["stage"], event["operation"], event["status"]) == ("LAST", "last", "SUCCESS")
