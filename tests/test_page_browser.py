"""The web page in a real browser (headless Chromium) against a live server: what
producers sent is shown as text, and an open trace updates itself when it finishes.

Needs ``chromium`` on the PATH (``make test`` installs Debian's package when missing)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import LiveServer

HOSTILE_ID = "x<img/src=x/onerror=alert(1)>"
HOSTILE_COMPONENT = "<b>evil</b>"
HOSTILE_MESSAGE = "<script>alert(2)</script>"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("these tests need chromium on the PATH: `make test` installs it (apt-get)")
    return found


def dump_dom(url: str, profile: Path, budget_ms: int = 5000, timeout_s: float = 60) -> str:
    """The page's DOM once its scripts have run (and its fetches have settled)."""
    argv = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=True)
    return done.stdout


def post(server: LiveServer, *events: dict[str, object]) -> None:
    response = httpx.post(f"{server.url}/v1/events", json=list(events))
    assert response.status_code == 202, response.text


def test_what_producers_sent_is_shown_as_text(live_server: LiveServer, tmp_path: Path) -> None:
    post(
        live_server,
        {
            "trace_id": HOSTILE_ID,
            "component": HOSTILE_COMPONENT,
            "message": HOSTILE_MESSAGE,
            "status": "FAILED",
            "trace_status": "FINISHED",
        },
    )
    listing = dump_dom(f"{live_server.url}/", tmp_path / "a")
    assert html.escape(HOSTILE_ID, quote=False) in listing  # the trace is listed, as text
    assert html.escape(HOSTILE_COMPONENT, quote=False) in listing
    assert "<img" not in listing and "<b>evil" not in listing

    detail = dump_dom(f"{live_server.url}/#trace={quote(HOSTILE_ID, safe='')}", tmp_path / "b")
    assert html.escape(HOSTILE_MESSAGE, quote=False) in detail  # the event's message
    assert 'class="state FAILED">FAILED' in detail
    assert "<img" not in detail and "<script>alert" not in detail


def test_an_open_trace_updates_itself_when_it_finishes(
    live_server: LiveServer, tmp_path: Path
) -> None:
    post(live_server, {"trace_id": "upload-1", "status": "IN_PROGRESS", "component": "router"})

    def finish_later() -> None:
        time.sleep(4)  # the page is open and long-polling by then
        post(
            live_server,
            {"trace_id": "upload-1", "trace_status": "FINISHED", "component": "indexer"},
        )

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    try:
        dom = dump_dom(f"{live_server.url}/#trace=upload-1", tmp_path / "c", budget_ms=30_000)
    finally:
        finisher.join()
    summary = dom.partition('id="summary"')[2].partition("</dl>")[0]
    assert 'class="state SUCCEEDED">SUCCEEDED' in summary
    assert "indexer" in dom.partition('id="events"')[2]  # the events were read again
    assert "updates when it moves" not in dom  # no longer waiting


def test_an_open_trace_shows_its_lineage_and_the_ends_of_many_errors(
    live_server: LiveServer, tmp_path: Path
) -> None:
    post(
        live_server,
        {
            "trace_id": "wide",
            "event_id": "conv",
            "component": "converter",
            "inputs": ["raw/a.csv"],
            "outputs": ["clean/a.parquet"],
        },
        *(
            {
                "trace_id": "wide",
                "event_id": f"e{n:02}",
                "end_time": 1_790_000_000_000 + n,
                "errors": [{"message": {"en": f"bad row {n}"}}],
            }
            for n in range(12)
        ),
        {"trace_id": "wide", "event_id": "end", "trace_status": "FINISHED"},  # no long poll
    )
    detail = dump_dom(f"{live_server.url}/#trace=wide", tmp_path / "c")
    assert "raw/a.csv → [converter]" in detail and "[converter] → clean/a.parquet" in detail
    errors = re.search(r'id="errors"[^>]*>(.*?)</ul>', detail, re.S)
    assert errors is not None
    shown = re.findall(r"<li[^>]*>(.*?)</li>", errors.group(1))
    assert shown == [*(f"bad row {n}" for n in range(5)), "… 2 more …",
                     *(f"bad row {n}" for n in range(7, 12))]  # fmt: skip
