"""How the API's publish decides what to answer when JetStream's ack does not come.

A stream that answers with an error, or that no stream answers (no leader during an
election), did not store the message: 503 at once. An ack that does not come in time
leaves the outcome unknown, so the same message is published again under the same
``Nats-Msg-Id`` until the stream answers (a duplicate ack if the first was stored) or
``publish_settle_s`` has passed; only then a 503 that says the events may have been stored.

Unit tests of our edge with nats-py's JetStream context replaced by a script of outcomes;
the same behaviour against a real cluster whose stream leader is killed is in
``test_cluster.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import PubAck

from waymark import jetstream
from waymark.bus.base import BusSettings
from waymark.bus.nats import NatsBus
from waymark.errors import Unavailable

STORED = PubAck(stream="WAYMARK", seq=7)
STORED_BEFORE = PubAck(stream="WAYMARK", seq=7, duplicate=True)


class ScriptedJetStream:
    """Answers each publish with the next outcome: an ack, or an error to raise (the last
    outcome repeats)."""

    def __init__(self, *outcomes: PubAck | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.headers: list[dict[str, str] | None] = []

    async def publish(self, subject: str, payload: bytes, **options: Any) -> PubAck:
        self.headers.append(options.get("headers"))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class Connected:
    is_connected = True


def publish(js: ScriptedJetStream, *messages: jetstream.Message, **settings: Any) -> None:
    bus = NatsBus(BusSettings(**settings))
    bus._js, bus._nc = js, Connected()  # type: ignore[assignment]
    asyncio.run(bus.publish(messages))


EVENTS = jetstream.encode("acme", [{"event_id": "e-1", "trace_id": "t-1"}], 1)


def test_an_ack_that_did_not_come_is_settled_by_publishing_the_same_message_again() -> None:
    no_leader = nats.js.errors.NoStreamResponseError()
    js = ScriptedJetStream(nats.errors.TimeoutError(), no_leader, no_leader, STORED_BEFORE)
    publish(js, EVENTS)
    assert [h and h[jetstream.MSG_ID] for h in js.headers] == ["e-1"] * 4


@pytest.mark.parametrize(
    "refusal",
    [nats.js.errors.NoStreamResponseError(), nats.js.errors.ServiceUnavailableError()],
    ids=["no stream answered", "the stream answered an error"],
)
def test_a_publish_the_stream_did_not_store_is_refused_at_once(refusal: Exception) -> None:
    js = ScriptedJetStream(refusal, STORED)
    with pytest.raises(Unavailable, match="did not store") as refused:
        publish(js, EVENTS)
    assert len(js.headers) == 1
    assert refused.value.retry_after >= 1


def test_an_outcome_still_unknown_after_publish_settle_s_is_refused_saying_so() -> None:
    js = ScriptedJetStream(nats.errors.TimeoutError())
    started = time.monotonic()
    with pytest.raises(Unavailable, match="may have been stored") as refused:
        publish(js, EVENTS, publish_timeout_s=0.1, publish_settle_s=0.6)
    assert 0.6 <= time.monotonic() - started < 2
    assert 2 <= len(js.headers) <= 4  # one attempt per SETTLE_PAUSE_S, no faster
    assert "same event ids" in refused.value.detail


def test_a_request_is_answered_once_every_message_of_it_is_settled() -> None:
    other = jetstream.encode("acme", [{"event_id": "e-2", "trace_id": "t-2"}], 1)
    refused, unknown = nats.js.errors.NoStreamResponseError(), nats.errors.TimeoutError()
    js = ScriptedJetStream(refused, unknown, refused, STORED)  # e-1; e-2, settled the 2nd time
    with pytest.raises(Unavailable, match="did not store"):
        publish(js, EVENTS, other)
    assert [h and h[jetstream.MSG_ID] for h in js.headers] == ["e-1", "e-2", "e-2", "e-2"]


def test_a_message_without_an_id_is_not_published_twice_to_settle_it() -> None:
    js = ScriptedJetStream(nats.errors.TimeoutError(), STORED)
    with pytest.raises(Unavailable, match="may have been stored"):
        publish(js, jetstream.Message("waymark.events.acme", {}, b"{}"))
    assert len(js.headers) == 1


def test_a_settle_time_the_duplicate_window_would_not_cover_is_refused() -> None:
    with pytest.raises(ValueError, match=r"publish_settle_s \(10\) must be shorter than"):
        BusSettings.from_url("nats://127.0.0.1:4222?duplicate_window_s=10")
    settings = BusSettings.from_url(
        "nats://127.0.0.1:4222?duplicate_window_s=10&publish_settle_s=5"
    )
    assert (settings.duplicate_window_s, settings.publish_settle_s) == (10, 5)
