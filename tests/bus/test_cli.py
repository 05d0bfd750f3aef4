"""``waymark dead-letters`` and ``waymark collect`` from the command line."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from tests.bus.conftest import collect_until, make_events, records_of
from tests.conftest import EXAMPLES
from waymark import wire
from waymark.bus.base import BusSettings
from waymark.cli import app
from waymark.store import open_store


def test_dead_letters_lists_parked_messages_as_table_and_json(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.park(
            [
                ("waymark.events.acme", "body.0.trace_id: Field required", b'{"events": [{}]}'),
                ("statuschangedtopic", "message is not JSON", b"\xff\xfe"),
            ]
        )
    finally:
        store.close()
    runner = CliRunner()

    as_json = runner.invoke(app, ["dead-letters", "--store", store_url, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    letters = orjson.loads(as_json.stdout)
    assert [x["subject"] for x in letters] == ["statuschangedtopic", "waymark.events.acme"]
    assert letters[0]["raw_base64"] == "//4="  # not UTF-8: base64
    assert letters[1]["raw"] == '{"events": [{}]}'
    assert letters[1]["reason"] == "body.0.trace_id: Field required"

    plain = runner.invoke(app, ["dead-letters", "--store", store_url])
    assert plain.exit_code == 0, plain.output
    header, *lines = plain.stdout.splitlines()
    assert header.split() == ["ID", "Received", "at", "Subject", "Reason", "Message"]
    assert len(lines) == 2 and "body.0.trace_id: Field required" in lines[1]


def test_dead_letters_show_control_characters_escaped(store_url: str) -> None:
    """A parked message is whatever a producer published: none of its control characters
    reach the terminal, in the table or in JSON (which keeps the same value)."""
    hostile = '{"trace_id": "\x1b[2J\x1b[H\x1b[32mOK\x1b[0m\u202e"}'
    store = open_store(store_url)
    try:
        store.park([("waymark.events.acme", "reason \x9b2J", hostile.encode())])
    finally:
        store.close()
    runner = CliRunner()
    plain = runner.invoke(app, ["dead-letters", "--store", store_url])
    assert plain.exit_code == 0, plain.output
    assert "\x1b" not in plain.stdout and "\x9b" not in plain.stdout
    assert "\u202e" not in plain.stdout
    assert r"\x1b[2J\x1b[H\x1b[32mOK" in plain.stdout and r"reason \x9b2J" in plain.stdout
    as_json = runner.invoke(app, ["dead-letters", "--store", store_url, "--format", "json"])
    assert "\x1b" not in as_json.stdout and "\u202e" not in as_json.stdout
    assert orjson.loads(as_json.stdout)[0]["raw"] == hostile


def test_dead_letters_refuses_an_unknown_format(store_url: str) -> None:
    result = CliRunner().invoke(app, ["dead-letters", "--store", store_url, "--format", "xml"])
    assert result.exit_code == 2
    assert "--format" in result.output


def test_collect_needs_a_bus() -> None:
    result = CliRunner().invoke(
        app, ["collect", "--store", "sqlite:///:memory:", "--bus", ""], env={"WAYMARK_BUS": ""}
    )
    assert result.exit_code == 2
    assert "--bus" in result.output


def test_collect_names_a_bad_bus_url() -> None:
    result = CliRunner().invoke(
        app, ["collect", "--store", "sqlite:///:memory:", "--bus", "nats://127.0.0.1:4222?x=1"]
    )
    assert result.exit_code == 1
    assert "unknown setting 'x'" in result.output


def test_a_replayed_letter_is_collected_and_leaves_the_table(store_url: str, bus_url: str) -> None:
    """A good message parked by a fault since fixed: replayed onto the bus, stored by a
    collector, gone from the dead letters; a message still bad is parked again."""
    settings = BusSettings.from_url(bus_url)
    [record] = records_of(make_events(1, 1))
    [good] = wire.encode_records([record])
    subject = settings.events_subject("default")
    store = open_store(store_url)
    try:
        store.park([(subject, "cannot be read (delivery 10): a bug", good.payload)])
        store.park([(subject, "message is not JSON", b"{nope")])
        bad_id, good_id = (x.id for x in store.dead_letters())
        runner = CliRunner()
        args = ["dead-letters", "--store", store_url, "--bus", bus_url]

        unknown = runner.invoke(app, [*args, "--replay", str(good_id + 100)])
        assert unknown.exit_code == 1
        assert f"no dead letter with id {good_id + 100}" in unknown.output

        replayed = runner.invoke(app, [*args, "--replay", str(good_id), "--replay", str(bad_id)])
        assert replayed.exit_code == 0, replayed.output
        assert f"replayed 2: {good_id} {bad_id}" in replayed.output
        assert store.dead_letters() == []
        collect_until(store, bus_url, lambda c: c.counters.appended + c.counters.parked >= 2)
        assert store.summary("default", record.trace_id) is not None
        [again] = store.dead_letters()
        assert again.raw == b"{nope"  # parked anew by the collector

        discarded = runner.invoke(app, [*args, "--discard", str(again.id)])
        assert discarded.exit_code == 0, discarded.output
        assert "discarded 1" in discarded.output
        assert store.dead_letters() == []
    finally:
        store.close()


def test_replaying_needs_a_bus(store_url: str) -> None:
    result = CliRunner().invoke(
        app, ["dead-letters", "--store", store_url, "--replay", "1"], env={"WAYMARK_BUS": ""}
    )
    assert result.exit_code == 2
    assert "--bus" in result.output


def test_a_gsm_letter_is_replayed_onto_the_gsm_subject(store_url: str, bus_url: str) -> None:
    subject = BusSettings.from_url(bus_url).gsm_subject
    body = (EXAMPLES / "gsm-servicebus-body.json").read_bytes()
    store = open_store(store_url)
    try:
        store.park([(subject, "the store refused it (delivery 10): a bug", body)])
        [letter] = store.dead_letters()
        args = ["dead-letters", "--store", store_url, "--bus", bus_url, "--replay", str(letter.id)]
        replayed = CliRunner().invoke(app, args)
        assert replayed.exit_code == 0, replayed.output
        collect_until(store, bus_url, lambda c: c.counters.appended >= 1)
        correlation = orjson.loads(body)["message"]["data"][0]["properties"]["correlationId"]
        assert store.summary("opendes", correlation) is not None
        assert store.dead_letters() == []
    finally:
        store.close()
