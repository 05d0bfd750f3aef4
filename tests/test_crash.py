"""Crash durability of the embedded default (SQLite, direct mode), with a real server.

Clients post a steady load to ``waymark serve`` and record every event id answered 202;
the server is killed with SIGKILL mid-stream (no shutdown of any kind: the process group,
workers included), and started again on the same file, three times. After each restart:

- every event answered 202 is stored, exactly once, and nothing is stored that was never
  sent;
- every summary the restarted server answers equals the summary rule
  (:func:`waymark.summary.summarize`) applied to the trace's stored events;
- the requests whose answer never came (in flight at the kill) can be sent again with the
  same event ids, and are answered 202 whether or not they had been stored.

The last round runs two worker processes on the file, which share its writers' lock.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.bus.conftest import DEFAULT_STALL_US, make_events, records_of, stored_ids
from tests.conftest import LiveServer
from tests.load import Load
from waymark.model import now_us
from waymark.summary import summarize

#: the arguments of ``waymark serve`` in each round; one kill per round.
ROUNDS: list[tuple[str, ...]] = [(), (), ("--workers", "2")]
ROUND_EVENTS = 500  # acknowledged events each round sees before its kill


@dataclass
class Told:
    """What the clients sent, and what they were told was accepted, over every round."""

    docs: dict[str, dict[str, Any]]  # every event the clients may send, by id
    accepted: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)


def check_store(server: LiveServer, store_url: str, told: Told) -> None:
    """What the restarted server holds against what the clients were told."""
    accepted, sent, docs = told.accepted, told.sent, told.docs
    stored = stored_ids(store_url)
    assert accepted <= set(stored), f"{len(accepted - set(stored))} acknowledged events lost"
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(stored) <= sent, "stored events that were never sent"
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event_id in stored:
        by_trace[docs[event_id]["trace_id"]].append(docs[event_id])
    now = now_us()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for trace_id, trace_docs in by_trace.items():
            expected = summarize(
                records_of(trace_docs), now_us=now, stall_timeout_us=DEFAULT_STALL_US
            )
            assert expected is not None
            answer = http.get(f"/v1/traces/{trace_id}")
            assert answer.status_code == 200, answer.text
            assert answer.json() == json.loads(expected.model_dump_json()), trace_id


def test_a_server_killed_mid_stream_three_times_keeps_every_acknowledged_event(
    tmp_path: Path,
) -> None:
    store_url = f"sqlite:///{tmp_path / 'waymark.db'}"
    docs = make_events(300, 40, seed=5, prefix="crash-")
    random.Random(5).shuffle(docs)
    told = Told({d["event_id"]: d for d in docs})
    unanswered: list[list[dict[str, Any]]] = []
    rnd = random.Random(5)
    taken = 0
    for n, args in enumerate(ROUNDS):
        server = LiveServer(store_url, args=args)
        try:
            if n:
                check_store(server, store_url, told)
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for batch in unanswered:  # in flight at the kill: stored or not, the same ids
                    answer = http.post("/v1/events", json=batch)
                    assert answer.status_code == 202, answer.text
                    told.accepted.update(d["event_id"] for d in batch)
            load = Load(server.url, docs[taken:], pause_s=0)  # always some in flight
            load.start()
            try:
                load.wait(ROUND_EVENTS, f"round {n + 1}")
                time.sleep(rnd.uniform(0, 0.2))  # a moment that no answer decides
            finally:
                server.kill()
                load.stop()
        finally:
            if server.proc.poll() is None:
                server.stop()
        assert not load.wrong, load.wrong[:5]
        assert load.cut_off, "no request was in flight at the kill: it tested nothing"
        told.accepted.update(load.accepted)
        told.sent.update(load.sent)
        unanswered = load.unknown
        taken += load.taken
    server = LiveServer(store_url)
    try:
        check_store(server, store_url, told)
    finally:
        server.stop()
