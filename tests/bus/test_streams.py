"""``waymark streams``: stream and consumer settings held against the bus URL, changed on
request, against the real NATS server."""

from __future__ import annotations

import asyncio

import nats
import orjson
from typer.testing import CliRunner

from tests.bus.conftest import publish, records_of
from waymark.bus import open_bus, streams
from waymark.bus.base import BusSettings
from waymark.cli import app

runner = CliRunner()


def by_name(found: list[streams.Found]) -> dict[str, streams.Found]:
    return {f.name: f for f in found}


def server_side(settings: BusSettings) -> tuple[dict[str, object], dict[str, object]]:
    """What the server holds for the events stream and its consumer."""

    async def go() -> tuple[dict[str, object], dict[str, object]]:
        nc = await nats.connect(list(settings.servers))
        try:
            js = nc.jetstream()
            stream = await js.stream_info(settings.stream)
            consumer = await js.consumer_info(settings.stream, settings.consumer)
            return (
                {
                    "max_age": stream.config.max_age,
                    "duplicate_window": stream.config.duplicate_window,
                    "messages": stream.state.messages,
                },
                {
                    "ack_wait": consumer.config.ack_wait,
                    "max_ack_pending": consumer.config.max_ack_pending,
                },
            )
        finally:
            await nc.close()

    return asyncio.run(go())


def open_consumers(url: str) -> None:
    """What a collector's start does: create the streams and the durable consumer."""

    async def go() -> None:
        bus = open_bus(url)
        try:
            await bus.sources()
        finally:
            await bus.close()

    asyncio.run(go())


def test_missing_streams_are_shown_then_created(bus_url: str) -> None:
    settings = BusSettings.from_url(bus_url)
    found = by_name(asyncio.run(streams.inspect(settings)))
    assert not found[settings.stream].exists and not found[settings.gsm_stream].exists
    applied = by_name(asyncio.run(streams.apply(settings)))
    assert applied[settings.stream].changed and applied[settings.gsm_stream].changed
    again = asyncio.run(streams.inspect(settings))
    assert [f.name for f in again if f.kind == "stream" and not f.exists] == []
    assert all(not f.differences for f in again)


def test_changed_settings_are_shown_then_applied_keeping_the_messages(bus_url: str) -> None:
    open_consumers(bus_url)
    publish(bus_url, records_of([{"event_id": "kept-1", "trace_id": "kept"}]))
    changed = BusSettings.from_url(
        f"{bus_url}&max_age_s=3600&duplicate_window_s=30&ack_wait_s=7&max_ack_pending=100"
    )
    found = by_name(asyncio.run(streams.inspect(changed)))
    events = found[changed.stream]
    assert events.messages == 1
    assert {d.setting: (d.current, d.wanted) for d in events.differences} == {
        "max_age_s": (604800.0, 3600.0),
        "duplicate_window_s": (120.0, 30.0),
    }
    consumer = found[f"{changed.stream}/{changed.consumer}"]
    assert {d.setting: (d.current, d.wanted) for d in consumer.differences} == {
        "ack_wait_s": (2.0, 7.0),
        "max_ack_pending": (20_000, 100),
    }

    applied = asyncio.run(streams.apply(changed))
    assert {f.name for f in applied if f.changed} == {
        changed.stream,
        changed.gsm_stream,
        f"{changed.stream}/{changed.consumer}",
        f"{changed.gsm_stream}/{changed.consumer}",
    }
    stream, consumer_now = server_side(changed)
    assert stream == {"max_age": 3600.0, "duplicate_window": 30.0, "messages": 1}
    assert consumer_now == {"ack_wait": 7.0, "max_ack_pending": 100}
    assert all(not f.differences for f in asyncio.run(streams.inspect(changed)))


def test_the_command_shows_differences_and_applies_them(bus_url: str) -> None:
    asyncio.run(streams.apply(BusSettings.from_url(bus_url)))
    refused = runner.invoke(app, ["streams", "--bus", f"{bus_url}&max_age_s=60", "--apply"])
    assert refused.exit_code == 1
    assert "NATS refused: 'duplicates window can not be larger then max age'" in refused.output
    shorter = f"{bus_url}&max_age_s=600"
    shown = runner.invoke(app, ["streams", "--bus", shorter], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "max_age_s 604800.0 -> 600.0" in shown.output
    assert "differs" in shown.output
    assert "waymark streams --apply" in shown.output

    applied = runner.invoke(app, ["streams", "--bus", shorter, "--apply", "--format", "json"])
    assert applied.exit_code == 0, applied.output
    rows = orjson.loads(applied.stdout)
    assert {r["name"] for r in rows if r["changed"]} == {
        BusSettings.from_url(shorter).stream,
        BusSettings.from_url(shorter).gsm_stream,
    }
    after = runner.invoke(app, ["streams", "--bus", shorter, "--format", "json"])
    assert all(r["differences"] == [] for r in orjson.loads(after.stdout))


def test_the_command_names_what_is_wrong() -> None:
    down = runner.invoke(app, ["streams", "--bus", "nats://127.0.0.1:4999"])
    assert down.exit_code == 1
    assert "cannot reach NATS at nats://127.0.0.1:4999" in down.output
    bad = runner.invoke(app, ["streams", "--bus", "nats://127.0.0.1:4222?max_age=1"])
    assert bad.exit_code == 1
    assert "unknown setting 'max_age'" in bad.output
    none = runner.invoke(app, ["streams"], env={"WAYMARK_BUS": ""})
    assert none.exit_code == 2
    assert "bus URL" in none.output
