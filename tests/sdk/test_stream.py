"""``Client.stream``: the event-stream parsing, and a lost connection resumed with the
last id seen (over httpx.MockTransport: the server side is in tests/test_stream.py)."""

from __future__ import annotations

import httpx
import pytest

from waymark.sdk import Client, ServerUnavailable
from waymark.sdk._retry import Backoff
from waymark.sdk.stream import Messages

SUMMARY = (
    '{"trace_id":"t1","tenant":"default","done":false,"trace_status":"STARTED",'
    '"trace_event_status":"OK","outcome":"SUCCESS","state":"RUNNING","started_at":null,'
    '"updated_at":"2026-01-01T00:00:00Z","finished_at":null,"duration_ms":null,'
    '"event_count":1,"domain":null,"domain_id":null,"user":null,'
    '"current":{"event_id":"e1","component":null,"stage":null,"operation":null,'
    '"status":"SUCCESS","time":"2026-01-01T00:00:00Z"},"error_count":0,"errors":[],'
    '"last_errors":[],"path_count":0,"paths":[],"last_paths":[],'
    '"links":{"events":"/e","errors":"/r","paths":"/p","lineage":"/l"}}'
)


def test_messages_are_parsed_as_an_event_stream_is() -> None:
    parser = Messages()
    lines = [
        ": keep-alive",
        "id: e-1",
        "",
        "event: reset",
        "id: e-2",
        'data: {"reason":',
        "data: 1}",
        "",
    ]
    found = [m for m in map(parser.feed, lines) if m is not None]
    assert parser.last_event_id == "e-2"  # a keep-alive's id moves the position too
    assert [(m.event, m.id, m.data) for m in found] == [("reset", "e-2", {"reason": 1})]


def test_a_lost_stream_is_resumed_from_the_last_id() -> None:
    asked: list[str | None] = []

    def serve(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        assert request.url.params.get_list("state") == ["FAILED"]
        if len(asked) == 1:
            body = (
                f"event: ready\nid: e-0\ndata: {{}}\n\nevent: summary\nid: e-1\ndata: {SUMMARY}\n\n"
            )
            return httpx.Response(200, text=body)  # then the connection ends
        if len(asked) == 2:
            return httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "0"})
        return httpx.Response(200, text=f"event: summary\nid: e-2\ndata: {SUMMARY}\n\n")

    client = Client(
        "http://waymark.test", backoff=Backoff(base=0), transport=httpx.MockTransport(serve)
    )
    stream = client.stream(state=["FAILED"])
    got = [next(stream) for _ in range(3)]
    stream.close()
    assert [(m.event, m.id) for m in got] == [
        ("ready", "e-0"),
        ("summary", "e-1"),
        ("summary", "e-2"),
    ]
    assert got[1].summary is not None and got[1].summary.trace_id == "t1"
    assert asked == [None, "e-1", "e-1"]


def test_a_stream_that_cannot_be_had_raises_after_the_retries() -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "0"})

    client = Client("http://waymark.test", retries=2, transport=httpx.MockTransport(serve))
    with pytest.raises(ServerUnavailable):
        next(client.stream())
