"""Faults the bus path must survive, with real processes, a real NATS and a real store.

The NATS restart test stops and starts a NATS server of its own (configured as the
session's, ``tests.jetstream``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bus.conftest import (
    assert_summaries_match,
    bus_url_for,
    count_events,
    make_events,
    publish,
    records_of,
    start_collector,
    stored_ids,
)
from tests.conftest import LiveServer, pg_schema, wait_for
from tests.jetstream import JetStreamServer
from waymark.store import open_store


def test_two_collectors_one_killed_halfway_store_every_event_exactly_once(
    store_url: str, bus_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    records = records_of(make_events(2000, 10))
    publish(bus_url, records, per_message=20)  # 1,000 messages
    victim = start_collector(store_url, bus_url, "--batch-size", "50")
    survivor = start_collector(store_url, bus_url, "--batch-size", "50")
    procs += [victim, survivor]

    assert wait_for(lambda: count_events(store_url) >= len(records) // 2, 60), "stalled"
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    assert count_events(store_url) < len(records), "killed too late to test anything"

    assert wait_for(lambda: count_events(store_url) >= len(records), 60)
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(20) == 0
    assert survivor.stderr is not None
    log = survivor.stderr.read().decode()

    assert stored_ids(store_url) == sorted(r.event_id for r in records)
    store = open_store(store_url)
    try:
        assert_summaries_match(store, records)
    finally:
        store.close()
    assert "collector stopped batches=" in log
    assert " parked=0 " in log


def post(server: LiveServer, docs: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/events", json=docs, timeout=10)


@pytest.fixture
def own_jetstream(tmp_path: Path) -> Iterator[JetStreamServer]:
    """A NATS server for this test alone, which it may stop and start."""
    (tmp_path / "nats").mkdir()
    server = JetStreamServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_nats_restart_gives_503_with_retry_after_then_the_api_recovers(
    tmp_path: Path, own_jetstream: JetStreamServer, procs: list[subprocess.Popen[bytes]]
) -> None:
    bus_url = bus_url_for(own_jetstream.url, "restart")
    store_url = f"sqlite:///{tmp_path / 'w.db'}"
    open_store(store_url).close()
    server = LiveServer(store_url, env={"WAYMARK_BUS": bus_url})
    collector = start_collector(store_url, bus_url)  # lives through the restart too
    procs.append(collector)
    accepted: list[str] = []
    refused = 0
    batches = iter(
        [docs[i : i + 10] for docs in [make_events(100, 3, seed=7)] for i in range(0, 300, 10)]
    )
    try:
        first = post(server, next(batches))
        assert first.status_code == 202, first.text
        accepted += first.json()["event_ids"]
        assert wait_for(lambda: count_events(store_url) >= len(accepted), 30)
        try:
            own_jetstream.stop()
            for _ in range(3):
                during = post(server, next(batches))
                assert during.status_code == 503, during.text
                assert int(during.headers["Retry-After"]) >= 1
                assert during.headers["content-type"] == "application/problem+json"
                refused += 1
        finally:
            if not own_jetstream.running():
                own_jetstream.start()
        for batch in batches:  # the API recovers by itself: no restart
            deadline = time.monotonic() + 30
            while True:
                answer = post(server, batch)
                if answer.status_code == 202:
                    accepted += answer.json()["event_ids"]
                    break
                assert answer.status_code == 503, answer.text
                assert time.monotonic() < deadline, "the API did not recover"
                time.sleep(0.2)
    finally:
        server.stop()
    assert refused == 3

    assert wait_for(lambda: count_events(store_url) >= len(accepted), 30)
    collector.send_signal(signal.SIGTERM)
    assert collector.wait(20) == 0
    # no false 202, and no 503 whose events were stored anyway
    assert stored_ids(store_url) == sorted(accepted)


def test_collector_exits_0_on_sigterm_with_its_counters(
    tmp_path: Path, bus_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    store_url = f"sqlite:///{tmp_path / 'w.db'}"
    open_store(store_url).close()
    records = records_of(make_events(10, 2))
    publish(bus_url, records)
    collector = start_collector(store_url, bus_url)
    procs.append(collector)
    assert wait_for(lambda: count_events(store_url) >= len(records), 30)
    os.kill(collector.pid, signal.SIGTERM)
    assert collector.wait(20) == 0
    assert collector.stderr is not None
    log = collector.stderr.read().decode()
    assert f"collector stopped batches=1 messages=1 appended={len(records)} duplicates=0" in log


def pg_running() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0


def pg_cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True
    )


def test_postgresql_stopped_for_5s_while_events_flow_loses_nothing(
    bus_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    docs = make_events(200, 3, seed=11)
    batches = iter([docs[i : i + 10] for i in range(0, len(docs), 10)])
    accepted: list[str] = []
    with pg_schema() as store_url:
        server = LiveServer(store_url, env={"WAYMARK_BUS": bus_url})
        collector = start_collector(store_url, bus_url)
        procs.append(collector)
        try:
            for _ in range(5):
                answer = post(server, next(batches))
                assert answer.status_code == 202, answer.text
                accepted += answer.json()["event_ids"]
            assert wait_for(lambda: count_events(store_url) >= len(accepted), 30)
            during = 0
            try:
                pg_cluster("stop")
                stopped = time.monotonic()
                while time.monotonic() - stopped < 5:
                    answer = post(server, next(batches))
                    assert answer.status_code == 202, answer.text  # the API keeps accepting
                    accepted += answer.json()["event_ids"]
                    during += 1
                    time.sleep(0.2)
            finally:
                if not pg_running():
                    pg_cluster("start")
            for batch in batches:
                answer = post(server, batch)
                assert answer.status_code == 202, answer.text
                accepted += answer.json()["event_ids"]
        finally:
            server.stop()
        assert during >= 5
        assert wait_for(lambda: count_events(store_url) >= len(accepted), 60)
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(20) == 0
        assert collector.stderr is not None
        log = collector.stderr.read().decode()
        assert stored_ids(store_url) == sorted(accepted)
    assert "collector retry messages=" in log  # the outage did reach the collector
