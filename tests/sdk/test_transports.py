"""Each transport, and the one place that picks one (``nats`` against a real NATS: the
tests' own JetStream server, ``jetstream``)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.jetstream import JetStreamServer
from waymark import wire
from waymark.sdk import Client, Tracker
from waymark.sdk.errors import ConnectionFailed, MissingExtra
from waymark.sdk.transports import make, resolve
from waymark.sdk.transports.console import ConsoleTransport
from waymark.sdk.transports.http import HttpTransport
from waymark.sdk.transports.memory import MemoryTransport
from waymark.sdk.transports.noop import NoopTransport

# -- resolution ---------------------------------------------------------------------------------


def test_an_explicit_argument_comes_first() -> None:
    memory = MemoryTransport()
    env = {"WAYMARK_TRANSPORT": "console", "WAYMARK_URL": "http://elsewhere:1"}
    assert resolve(memory, "http://ignored:1", env) is memory
    assert isinstance(resolve("memory", None, env), MemoryTransport)
    http = resolve(None, "http://127.0.0.1:9", env)
    assert isinstance(http, HttpTransport) and http.url == "http://127.0.0.1:9"


def test_then_the_environment() -> None:
    assert isinstance(resolve(None, None, {"WAYMARK_TRANSPORT": "console"}), ConsoleTransport)
    by_scheme = resolve(None, None, {"WAYMARK_URL": "https://waymark.example"})
    assert isinstance(by_scheme, HttpTransport) and by_scheme.url == "https://waymark.example"
    both = resolve(None, None, {"WAYMARK_TRANSPORT": "http", "WAYMARK_URL": "http://h:8"})
    assert isinstance(both, HttpTransport) and both.url == "http://h:8"


def test_then_noop_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    import waymark.sdk.transports as transports

    transports._warned_unconfigured = False
    with caplog.at_level(logging.WARNING, "waymark.sdk"):
        assert isinstance(resolve(None, None, {}), NoopTransport)
        assert isinstance(resolve(None, None, {}), NoopTransport)
    assert caplog.text.count("no transport configured") == 1


def test_a_wrong_argument_raises_a_wrong_environment_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ValueError, match="unknown transport kind 'kafka'"):
        resolve("kafka")
    with pytest.raises(ValueError, match="cannot tell the transport"):
        resolve(None, "ftp://x")
    with caplog.at_level(logging.WARNING, "waymark.sdk"):
        assert isinstance(resolve(None, None, {"WAYMARK_TRANSPORT": "kafka"}), NoopTransport)
    assert "unusable" in caplog.text


def test_the_tracker_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYMARK_TRANSPORT", "memory")
    monkeypatch.setenv("WAYMARK_TENANT", "from-env")
    with Tracker() as tracker:
        assert isinstance(tracker.transport, MemoryTransport)
        assert tracker.tenant == "from-env"


def test_nats_without_nats_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)  # as if nats-py were not installed
    with pytest.raises(MissingExtra, match=r"pip install 'waymark-status\[nats\]'") as caught:
        make("nats", "nats://127.0.0.1:4222")
    assert isinstance(caught.value, ImportError)
    assert caught.value.extra == "nats"


# -- each transport -----------------------------------------------------------------------------


def test_memory_and_noop() -> None:
    memory = MemoryTransport()
    with Tracker(transport=memory, tenant="m") as tracker:
        with tracker.step(trace_id="t", stage="A"):
            pass
        assert tracker.flush(5)
        assert [e["stage"] for e in memory.events] == ["A"]
        assert memory.tenants == ["m"]
        memory.clear()
        assert memory.events == []
    with Tracker(transport="noop") as quiet:
        with quiet.step(trace_id="t"):
            pass
        assert quiet.flush(5)
        assert quiet.stats().sent == 1


def test_console_writes_one_json_line_per_event() -> None:
    out = io.StringIO()
    with Tracker(transport=ConsoleTransport(out), tenant="c") as tracker:
        for stage in ("A", "B"):
            with tracker.step(trace_id="t-console", stage=stage):
                pass
        assert tracker.flush(5)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["tenant"], d["stage"], d["trace_id"]) for d in lines] == [
        ("c", "A", "t-console"),
        ("c", "B", "t-console"),
    ]


def test_http_batches_to_the_server(live_server: LiveServer) -> None:
    with Tracker(transport="http", url=live_server.url, tenant="h", batch_size=7) as tracker:
        for i in range(20):
            with tracker.step(trace_id="t-http", stage=f"S{i}"):
                pass
        assert tracker.flush(10)
    with Client(live_server.url, tenant="h") as client:
        assert client.summary("t-http").event_count == 20


# -- nats, against the real server ----------------------------------------------------------------


async def _with_jetstream(url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    import nats

    nc = await nats.connect(url)
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


async def _read_back(js: Any, subject: str, count: int) -> AsyncIterator[Any]:
    """Up to ``count`` messages on ``subject``, through a consumer of our own."""
    sub = await js.pull_subscribe(subject, stream=wire.STREAM)
    try:
        got = 0
        while got < count:
            try:
                batch = await sub.fetch(count - got, timeout=2)
            except TimeoutError:  # nats-py raises its own subclass, or asyncio's
                return
            for msg in batch:
                await msg.ack()
                got += 1
                yield msg
    finally:
        consumer = (await sub.consumer_info()).name
        await sub.unsubscribe()
        await js.delete_consumer(wire.STREAM, consumer)


def test_nats_publishes_what_the_collector_decodes(jetstream: JetStreamServer) -> None:
    from waymark.sdk.transports.nats import NatsTransport

    tenant = f"sdk-test.{uuid.uuid4().hex[:8]}"  # a dot, to exercise the subject escaping
    subject = wire.events_subject(tenant)
    tracker = Tracker(transport=NatsTransport(jetstream.url), tenant=tenant, component="nats-test")
    try:
        with tracker.step(trace_id="trace-nats", stage="PUBLISH") as step:
            step.add(outputs=["s3://bucket/out.parquet"])
        with pytest.raises(ZeroDivisionError), tracker.step(trace_id="trace-nats", stage="BAD"):
            _ = 1 / 0
        assert tracker.flush(20)
    finally:
        tracker.close()

    async def check(js: Any) -> list[Any]:
        try:
            return [msg async for msg in _read_back(js, subject, 10)]
        finally:
            await js.purge_stream(wire.STREAM, subject=subject)

    messages = asyncio.run(_with_jetstream(jetstream.url, check))
    decoded = [wire.decode(m.data) for m in messages]
    events = [e for d in decoded for e in d.events]
    assert {d.tenant for d in decoded} == {tenant}
    assert [(e.trace_id, e.stage, e.status) for e in events] == [
        ("trace-nats", "PUBLISH", "SUCCESS"),
        ("trace-nats", "BAD", "FAILED"),
    ]
    assert events[0].outputs == ["s3://bucket/out.parquet"]
    assert events[1].exception == "ZeroDivisionError: division by zero"
    for message, one in zip(messages, decoded, strict=True):
        assert message.headers["Nats-Msg-Id"] == wire.msg_id([e.event_id for e in one.events])


def test_nats_a_retried_publish_is_stored_once(jetstream: JetStreamServer) -> None:
    from waymark.sdk.transports.nats import NatsTransport

    tenant = f"sdk-test-{uuid.uuid4().hex[:8]}"
    subject = wire.events_subject(tenant)
    events = [{"trace_id": "t-dup", "event_id": uuid.uuid4().hex, "stage": "X"}]
    transport = NatsTransport(jetstream.url)
    try:
        transport.send(tenant, events)
        transport.send(tenant, events)  # as after a lost acknowledgement
    finally:
        transport.close()

    async def count(js: Any) -> int:
        try:
            return len([m async for m in _read_back(js, subject, 5)])
        finally:
            await js.purge_stream(wire.STREAM, subject=subject)

    assert asyncio.run(_with_jetstream(jetstream.url, count)) == 1


def test_nats_unreachable_is_a_retryable_connection_failure() -> None:
    from waymark.sdk.transports.nats import NatsTransport

    transport = NatsTransport("nats://127.0.0.1:9", timeout=1)
    try:
        with pytest.raises(ConnectionFailed):
            transport.send("t", [{"trace_id": "t", "event_id": "e"}])
    finally:
        transport.close()


def test_the_sdk_creates_a_missing_stream_once_as_the_bus_would(
    jetstream: JetStreamServer,
) -> None:
    from waymark.bus.nats import ensure_stream
    from waymark.sdk.transports.nats import create_missing_stream

    tag = uuid.uuid4().hex[:8]
    by_sdk, by_bus = f"SDKTEST_SDK_{tag}", f"SDKTEST_BUS_{tag}"

    async def work(js: Any) -> tuple[Any, Any]:
        try:
            await create_missing_stream(js, by_sdk, f"sdktest.{tag}.sdk.>")
            await create_missing_stream(js, by_sdk, f"sdktest.{tag}.sdk.>")  # there: left alone
            await ensure_stream(js, by_bus, f"sdktest.{tag}.bus.>")  # the server's defaults
            return (await js.stream_info(by_sdk)).config, (await js.stream_info(by_bus)).config
        finally:
            for name in (by_sdk, by_bus):
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)

    sdk_config, bus_config = asyncio.run(_with_jetstream(jetstream.url, work))
    assert sdk_config.subjects == [f"sdktest.{tag}.sdk.>"]
    apart = {"name", "subjects"}
    sdk_settings = {k: v for k, v in sdk_config.as_dict().items() if k not in apart}
    bus_settings = {k: v for k, v in bus_config.as_dict().items() if k not in apart}
    assert sdk_settings == bus_settings
    assert sdk_config.duplicate_window == 120 and sdk_config.max_age == 7 * 24 * 3600
