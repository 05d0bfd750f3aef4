"""``waymark streams`` reads each NATS server's JetStream sync setting from its monitoring
endpoint and warns where acknowledged messages can be lost, against real servers: the
tests' own (``sync_interval: always``) and one left at NATS's default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tests.conftest import free_port
from tests.jetstream import JetStreamServer
from waymark.bus.syncing import judge
from waymark.cli import app

runner = CliRunner()


@pytest.fixture
def default_sync(tmp_path: Path) -> Iterator[JetStreamServer]:
    """A NATS server as installed: JetStream on, sync_interval not set."""
    server = JetStreamServer(tmp_path, sync=None)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def servers(bus_url: str, *monitors: str) -> list[dict[str, object]]:
    args = [arg for monitor in monitors for arg in ("--monitor", monitor)]
    shown = runner.invoke(app, ["streams", "--bus", bus_url, "--format", "json", *args])
    assert shown.exit_code == 0, shown.output
    return [row for row in orjson.loads(shown.stdout) if row["kind"] == "server"]


def test_a_server_that_syncs_before_acknowledging_is_shown_without_warning(
    bus_url: str, jetstream: JetStreamServer
) -> None:
    [row] = servers(bus_url, jetstream.monitor_url)
    assert row["name"] == jetstream.monitor_url
    assert row["sync"] == "always"
    assert row["warning"] is None
    table = runner.invoke(
        app, ["streams", "--bus", bus_url, "--monitor", jetstream.monitor_url],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "sync_interval always" in table.output
    assert "syncs before acknowledging" in table.output
    assert "warning" not in table.output


def test_a_server_with_the_default_sync_interval_is_warned_of(
    bus_url: str, jetstream: JetStreamServer, default_sync: JetStreamServer
) -> None:
    synced, unsynced = servers(bus_url, jetstream.monitor_url, default_sync.monitor_url)
    assert synced["sync"] == "always" and synced["warning"] is None
    assert unsynced["name"] == default_sync.monitor_url
    assert unsynced["sync"] == "120 s"  # NATS's default: two minutes
    warning = str(unsynced["warning"])
    assert "acknowledges at once but syncs stream data every 120 s" in warning
    assert "set sync_interval: always" in warning

    table = runner.invoke(
        app, ["streams", "--bus", bus_url, "--monitor", default_sync.monitor_url],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "can lose acknowledged messages" in table.output
    assert "warning: NATS server" in table.output


def test_a_monitoring_endpoint_that_does_not_answer_is_named(bus_url: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    [row] = servers(bus_url, nowhere)
    assert row["exists"] is False and row["sync"] is None
    assert f"could not read {nowhere}/varz" in str(row["warning"])
    assert "--monitor" in str(row["warning"])


def test_a_server_before_nats_2_10_cannot_sync_before_acknowledging() -> None:
    # /varz of Debian's nats-server 2.9.10: its JetStream config has no sync fields.
    varz = {
        "server_name": "old",
        "version": "2.9.10",
        "jetstream": {"config": {"max_memory": 1, "max_storage": 1, "store_dir": "/x"}},
    }
    sync, warning = judge(varz)
    assert sync == "none (before NATS 2.10)"
    assert warning is not None and "NATS server old (2.9.10) cannot sync" in warning
    assert judge({"server_name": "core", "jetstream": {}}) == (None, None)  # JetStream off
