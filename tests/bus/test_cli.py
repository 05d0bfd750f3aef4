"""``waymark dead-letters`` and ``waymark collect`` from the command line."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

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

    table = runner.invoke(app, ["dead-letters", "--store", store_url], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "Dead letters (2)" in table.stdout
    assert "body.0.trace_id: Field required" in table.stdout


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
