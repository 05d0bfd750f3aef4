"""Bus mode: ``/readyz`` is ready while the bus is connected, not while it is lost, and
ready again once it is back; ``/healthz`` answers all along."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.jetstream import JetStreamServer
from waymark.api.app import create_app
from waymark.api.health import READY_FOR_S
from waymark.config import Settings


def readiness(client: TestClient, status: int, within_s: float = 15) -> dict[str, object]:
    """``/readyz`` once it answers ``status`` (each check's outcome is kept a while)."""
    deadline = time.monotonic() + within_s
    while True:
        answer = client.get("/readyz")
        if answer.status_code == status or time.monotonic() > deadline:
            assert answer.status_code == status, answer.text
            body: dict[str, object] = answer.json()
            return body
        time.sleep(READY_FOR_S / 4)


def test_bus_mode_is_ready_while_the_bus_is_connected(db_url: str, tmp_path: Path) -> None:
    nats = JetStreamServer(tmp_path)
    nats.start()
    try:
        with TestClient(create_app(Settings(store=db_url, bus=nats.url))) as client:
            assert readiness(client, 200) == {"status": "ready", "warnings": []}
            nats.stop()
            assert "NATS" in str(readiness(client, 503)["detail"])
            assert client.get("/healthz").status_code == 200
            nats.start()
            readiness(client, 200)
    finally:
        nats.stop()
