"""The bus path on a three-node JetStream cluster under fault, with real processes.

A cluster of three ``nats-server`` processes on loopback (``tests.jetstream``), streams
with three replicas, ``waymark serve`` in bus mode and two ``waymark collect`` on a
PostgreSQL schema of the test's own. Clients post a steady load and record every event id
answered 202; the events stream's leader (not the member the API publishes through), or
in a second run the member the API publishes through (not the leader), is killed with
SIGKILL mid-load and later started again on its old data. What must hold:

- every event answered 202 is stored, exactly once, and nothing is stored that was never
  sent; every summary equals the summary rule applied to the trace's stored events;
- while the cluster elects a new leader, a publish gets 503 with ``Retry-After`` or
  succeeds: never another status, never a 202 for an event that is then not stored, and
  no 503 for one that is (one client sends a batch answered 503 again, with the same
  ids; the others give it up); no answer takes longer than a publish may wait
  (``publish_timeout_s`` + ``publish_settle_s``);
- the two remaining members keep accepting while the third is down, and the restarted
  member catches up.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.bus.conftest import (
    assert_summaries_match,
    bus_url_for,
    make_events,
    records_of,
    start_collector,
    stored_ids,
)
from tests.conftest import LiveServer, pg_schema, wait_for
from tests.jetstream import JetStreamCluster, JetStreamServer
from tests.load import Load
from waymark.bus.base import BusSettings
from waymark.bus.nats import delete_streams
from waymark.store import open_store

PUBLISH_TIMEOUT_S = BusSettings().publish_timeout_s
# the documented bound on a publish's wait (a timeout, then settling), and some slack
LONGEST_ANSWER_S = PUBLISH_TIMEOUT_S + BusSettings().publish_settle_s + 2
CLIENTS = 6  # posting at once, without pause; all but one give up a batch answered 503
PHASE_EVENTS = 300  # acknowledged events each phase must see before the next starts
PHASE_TIMEOUT_S = 30.0  # how long a phase may take: fail-over and catch-up included


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JetStreamCluster]:
    the_cluster = JetStreamCluster(tmp_path_factory.mktemp("cluster"))
    the_cluster.start()
    try:
        yield the_cluster
    finally:
        the_cluster.stop()


def choose_victim(cluster: JetStreamCluster, stream: str, victim: str) -> JetStreamServer:
    """The member to kill. ``"leader"``: the stream's leader, made one the API does not
    publish through, so that publishes are in flight from a member that lives on to the
    one that dies (stored by the followers, perhaps, but not acknowledged). ``"follower"``:
    the member the API publishes through, made a follower, so that publishes are in
    flight on a connection that dies."""
    info = cluster.stream(stream)
    assert info["config"]["num_replicas"] == 3, "the bus URL's replicas=3 did not apply"
    api_on = cluster.connected("waymark-api")
    if cluster.leader(stream) is api_on:
        cluster.move_leader(stream, next(s for s in cluster.servers if s is not api_on))
    return cluster.leader(stream) if victim == "leader" else api_on


@pytest.mark.parametrize("victim", ["leader", "follower"])
def test_a_member_killed_mid_load_loses_no_acknowledged_event(
    cluster: JetStreamCluster,
    victim: str,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    cluster.wait_healthy(30)  # a member killed by the test before is current again
    bus_url = bus_url_for(cluster.url, uuid.uuid4().hex[:10], replicas=3)
    settings = BusSettings.from_url(bus_url)
    docs = make_events(400, 60, seed=3, prefix=f"{victim}-")
    random.Random(3).shuffle(docs)
    logs: list[IO[bytes]] = []
    try:
        with pg_schema() as store_url:
            server = LiveServer(store_url, env={"WAYMARK_BUS": bus_url})
            try:
                for n in range(2):
                    logs.append((tmp_path / f"collector-{n}.log").open("wb"))
                    procs.append(start_collector(store_url, bus_url, stderr=logs[-1]))
                load = Load(server.url, docs, clients=CLIENTS, abandoning=CLIENTS - 1, pause_s=0)
                load.start()
                try:
                    load.wait(PHASE_EVENTS, "before the kill", PHASE_TIMEOUT_S)
                    killed = choose_victim(cluster, settings.stream, victim)
                    killed_at = time.monotonic()
                    killed.kill()
                    load.wait(PHASE_EVENTS, f"with {killed.name} ({victim}) down", PHASE_TIMEOUT_S)
                    if victim == "leader":  # the election came mid-load: publishes were
                        # refused while it ran, or waited for it (those in flight at the kill)
                        met = [
                            (status, waited)
                            for at, status, waited in list(load.answers)
                            if at > killed_at and (status == 503 or waited > PUBLISH_TIMEOUT_S)
                        ]
                        assert met, "no publish met the election"
                    killed.start()
                    cluster.wait_healthy(PHASE_TIMEOUT_S)
                    load.wait(
                        PHASE_EVENTS, f"after {killed.name} ({victim}) came back", PHASE_TIMEOUT_S
                    )
                finally:
                    load.stop()
            finally:
                server.stop()
            assert not load.wrong and not load.unknown, (load.wrong[:5], len(load.unknown))
            longest = max(waited for _, _, waited in load.answers)
            assert longest < LONGEST_ANSWER_S, f"a POST took {longest:.1f} s"
            assert wait_for(lambda: set(stored_ids(store_url)) >= set(load.accepted), 60), (
                f"{len(set(load.accepted) - set(stored_ids(store_url)))} acknowledged events"
                " were never stored"
            )
            stored = stored_ids(store_url)
            assert len(stored) == len(set(stored)), "an event was stored twice"
            assert set(stored) <= load.sent, "stored events that were never sent"
            stored_anyway = load.abandoned & set(stored)
            assert not stored_anyway, f"{len(stored_anyway)} events answered 503 were stored"
            by_id = {d["event_id"]: d for d in docs}
            store = open_store(store_url)
            try:
                assert_summaries_match(store, records_of([by_id[i] for i in stored]))
            finally:
                store.close()
    finally:
        for log in logs:
            log.close()
        asyncio.run(delete_streams(settings))
