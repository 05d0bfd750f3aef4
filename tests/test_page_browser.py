"""The web page in a real browser (headless Chromium, Debian's package) against a live
server with real events: what it shows at 1280 and 420 pixels wide, with screenshots of
each view kept under the directory these tests print (``WAYMARK_ARTEFACTS``, else
``build/test-artefacts/page`` in the repository).

Needs ``chromium`` on the PATH (``make test`` installs it when missing)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.browser import Browser
from tests.conftest import LiveServer
from waymark.auth import admin
from waymark.auth.admin import grants_of
from waymark.store import migrate

WIDTHS = (1280, 420)
HOSTILE_MESSAGE = (
    '<script>window.__xss=1</script> write failed <img src=x onerror="window.__xss=2">'
)
HOSTILE_NB = 'Kunne ikke skrive <img src=x onerror="window.__xss=3">'
EXCEPTION = 'Traceback (most recent call last):\n  File "writer.py", line 9\nValueError: bad row 7'


@pytest.fixture(scope="module")
def artefacts(request: pytest.FixtureRequest) -> Iterator[Path]:
    default = Path(__file__).resolve().parents[1] / "build" / "test-artefacts" / "page"
    where = Path(os.environ.get("WAYMARK_ARTEFACTS", default))
    where.mkdir(parents=True, exist_ok=True)
    yield where
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    assert capture is not None
    with capture.global_and_fixture_disabled():  # shown whatever the capture and verbosity
        print(f"\nthe web page's screenshots: {where}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module; each test writes to a tenant of its own."""
    live = LiveServer(f"sqlite:///{tmp_path_factory.mktemp('page') / 'waymark.db'}")
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = Browser(tmp_path_factory.mktemp("chromium"))
    try:
        yield chromium
    finally:
        chromium.close()


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def post(server: LiveServer, tenant: str, events: list[dict[str, Any]]) -> None:
    response = httpx.post(
        f"{server.url}/v1/events", json=events, headers={"Waymark-Tenant": tenant}
    )
    assert response.status_code == 202, response.text


def open_at(browser: Browser, server: LiveServer, fragment: str, width: int) -> None:
    browser.open(f"{server.url}/#{fragment}", width)


def check_page(browser: Browser, width: int) -> None:
    """No script error, nothing but the page's files and /v1 read, nothing wider than the
    window (a table or the graph scrolls in its own box), no producer text run as markup."""
    assert browser.errors() == []
    read = browser.eval(
        "performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)"
    )
    assert read and [p for p in read if not p.startswith(("/ui/", "/v1/"))] == [], read
    assert browser.eval("document.documentElement.scrollWidth") <= width
    assert browser.eval("document.querySelectorAll('img, script:not([src])').length") == 0
    assert browser.eval("window.__xss") is None


def a_failed_upload(tenant: str) -> list[dict[str, Any]]:
    """A router that took 41 s, a writer that failed after 3 min, an indexer skipped; it
    started 4.6 minutes ago, so that "5 min ago" holds for most of a minute of a slow run."""
    return [
        {
            "trace_id": "upload-1",
            "component": "router",
            "status": "IN_PROGRESS",
            "trace_status": "STARTED",
            "domain_id": "parking/1",
            "end_time": ago(275),
        },
        {
            "trace_id": "upload-1",
            "component": "router",
            "status": "SUCCESS",
            "end_time": ago(234),
            "inputs": ["s3://raw/parking.csv"],
            "outputs": ["s3://clean/parking.parquet"],
        },
        {
            "trace_id": "upload-1",
            "component": "writer",
            "stage": "WRITE",
            "status": "IN_PROGRESS",
            "end_time": ago(225),
        },
        {
            "trace_id": "upload-1",
            "component": "writer",
            "stage": "WRITE",
            "status": "FAILED",
            "end_time": ago(45),
            "inputs": ["s3://clean/parking.parquet"],
            "message": HOSTILE_MESSAGE,
            "error_code": 42,
            "exception": EXCEPTION,
            "errors": [{"message": {"en": "Could not write", "nb": HOSTILE_NB}}],
        },
        {
            "trace_id": "upload-1",
            "component": "indexer",
            "status": "SKIPPED",
            "trace_status": "FINISHED",
            "end_time": ago(35),
        },
    ]


def test_a_trace_shown_whole(server: LiveServer, browser: Browser, artefacts: Path) -> None:
    post(server, "t1", a_failed_upload("t1"))
    for width in WIDTHS:
        open_at(browser, server, "tenant=t1&trace=upload-1", width)
        browser.wait_for("document.querySelectorAll('#timeline .lane').length === 3")
        browser.wait_for("document.querySelectorAll('#graph g.node').length === 4")
        # The timeline: IN_PROGRESS and its end paired into one bar per step, by outcome.
        bars = browser.eval(
            "[...document.querySelectorAll('#timeline .lane')].map(l => [l.querySelector("
            "'.lane-step').textContent, l.querySelector('.bar').dataset.status,"
            " l.querySelector('.lane-time').textContent])"
        )
        assert bars == [
            ["router", "SUCCESS", "SUCCESS · 41 s"],
            ["writer / WRITE", "FAILED", "FAILED · 3 min"],
            ["indexer", "SKIPPED", "SKIPPED · at once"],
        ]
        # The failure in full, producers' text as text.
        failure = "#failures article.failure"
        assert browser.text(f"{failure} .message") == HOSTILE_MESSAGE
        assert browser.text(f"{failure} pre.exception") == EXCEPTION
        assert "error_code 42" in browser.text(failure)
        assert browser.texts(f"{failure} dl.languages dt") == ["en", "nb"]
        assert browser.texts(f"{failure} dl.languages dd") == ["Could not write", HOSTILE_NB]
        # Readable times: relative, exact on hover.
        started = browser.eval(
            "(() => { const t = [...document.querySelectorAll('#summary time')][0];"
            " return [t.textContent, t.title, t.dateTime]; })()"
        )
        assert started[0] == "5 min ago"
        assert started[2] in started[1] and started[2].endswith("Z")
        assert "duration" in browser.text("#summary") and "4 min" in browser.text("#summary")
        # The data flow, in the direction data moved: file -> step -> file.
        edges = browser.eval(
            "[...document.querySelectorAll('#graph path.edge')].map(e => [e.dataset.from,"
            " e.dataset.to])"
        )
        nodes = browser.eval(
            "Object.fromEntries([...document.querySelectorAll('#graph g.node')].map(n =>"
            " [n.dataset.id, n.querySelector('title').textContent]))"
        )
        named = {(nodes[a], nodes[b]) for a, b in edges}
        assert ("s3://raw/parking.csv", "router (SUCCESS)") in named
        assert ("router (SUCCESS)", "s3://clean/parking.parquet") in named
        # The writer only read, and failed: it is in the graph too.
        assert ("s3://clean/parking.parquet", "writer / WRITE (FAILED)") in named
        assert len(named) == 3
        check_page(browser, width)
        browser.screenshot(artefacts / f"trace-{width}.png")


def test_steps_pair_by_name_and_a_lone_event_with_a_duration_is_a_bar(
    server: LiveServer, browser: Browser
) -> None:
    post(
        server,
        "t1b",
        [
            {"trace_id": "d", "component": "load", "status": "IN_PROGRESS", "end_time": ago(100)},
            {"trace_id": "d", "component": "other", "status": "SUCCESS", "end_time": ago(90)},
            {"trace_id": "d", "component": "load", "status": "SUCCESS", "end_time": ago(40)},
            {
                "trace_id": "d",
                "component": "index",
                "duration_ms": 30_000,
                "trace_status": "FINISHED",
                "end_time": ago(5),
            },
        ],
    )
    open_at(browser, server, "tenant=t1b&trace=d", 1280)
    browser.wait_for("document.querySelectorAll('#timeline .lane').length === 3")
    assert browser.texts("#timeline .lane-time") == [
        "SUCCESS · 1 min",
        "SUCCESS · at once",
        "SUCCESS · 30 s",
    ]
    widths = browser.eval(
        "[...document.querySelectorAll('#timeline .bar')].map(b => b.getBoundingClientRect().width)"
    )
    assert widths[0] > widths[2] > widths[1]  # 60 s, 30 s, a mark
    check_page(browser, 1280)


def test_the_list_pages_and_follows_new_traces(
    server: LiveServer, browser: Browser, artefacts: Path
) -> None:
    events: list[dict[str, Any]] = []
    for i in range(55):
        failed = i % 10 == 0
        events.append(
            {
                "trace_id": f"run-{i:02}",
                "component": "router",
                "status": "IN_PROGRESS",
                "domain_id": "parking/1",
                "end_time": ago(3571 - i * 60),
            }
        )
        events.append(
            {
                "trace_id": f"run-{i:02}",
                "component": "writer",
                "stage": "WRITE",
                "status": "FAILED" if failed else "SUCCESS",
                "trace_status": "FINISHED",
                "end_time": ago(3571 - i * 60 - 41),
                **(
                    {"errors": [{"message": {"en": "a"}}, {"message": {"en": "b"}}]}
                    if failed
                    else {}
                ),
            }
        )
    post(server, "t2", events)
    for width in WIDTHS:
        open_at(browser, server, "tenant=t2", width)
        browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 50")
        first = browser.texts("#traces tbody tr:first-child td")
        assert first[0] == "run-54" and first[1] == "SUCCEEDED"
        assert first[2] == "6 min ago" and first[3] == "41 s"
        assert first[4] == "writer / WRITE SUCCESS" and first[5] == "0"
        row_50 = browser.texts("#traces tbody tr:nth-child(5) td")
        assert row_50[0] == "run-50" and row_50[1] == "FAILED" and row_50[5] == "2"
        check_page(browser, width)
        browser.screenshot(artefacts / f"list-{width}.png")
    browser.eval("document.getElementById('older').click()")
    browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 5")
    assert browser.texts("#traces tbody td.id") == [f"run-{i:02}" for i in range(4, -1, -1)]
    assert browser.text("#page-info") == "page 2"
    browser.eval("document.getElementById('newer').click()")
    browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 50")
    # A new trace appears without a reload.
    post(server, "t2", [{"trace_id": "run-new", "component": "router", "status": "IN_PROGRESS"}])
    browser.wait_for(
        "document.querySelector('#traces tbody td.id').textContent === 'run-new'", timeout=15
    )
    assert browser.text("#traces tbody tr:first-child td:nth-child(2)") == "RUNNING"
    step = "document.querySelector('#traces tbody tr td:nth-child(5)').textContent"
    assert browser.eval(step).startswith("router IN_PROGRESS silent for ")
    browser.wait_for(f"{step}.endsWith(' s')", timeout=3)  # redrawn as time goes by


def test_the_tenant_filters_and_open_trace_are_in_the_link(
    server: LiveServer, browser: Browser
) -> None:
    for tenant in ("north", "south"):
        post(
            server,
            tenant,
            [
                {"trace_id": f"{tenant}-ok", "trace_status": "FINISHED"},
                {"trace_id": f"{tenant}-bad", "status": "FAILED", "trace_status": "FINISHED"},
            ],
        )
    open_at(browser, server, "tenant=north&state=FAILED", 1280)
    browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 1")
    assert browser.texts("#traces tbody td.id") == ["north-bad"]
    assert browser.eval("document.getElementById('state').value") == "FAILED"
    assert browser.eval("document.getElementById('tenant').value") == "north"
    href = browser.eval("document.querySelector('#traces tbody td.id a').getAttribute('href')")
    assert href == "#tenant=north&state=FAILED&trace=north-bad"
    browser.eval("document.querySelector('#traces tbody td.id a').click()")
    browser.wait_for("document.getElementById('trace-title').textContent === 'north-bad'")
    browser.wait_for("document.querySelector('#summary .state') !== null")
    assert browser.text("#summary .state") == "FAILED"
    back = browser.eval("document.getElementById('back').getAttribute('href')")
    assert back == "#tenant=north&state=FAILED"
    # The search form writes the link too.
    open_at(browser, server, "tenant=south", 1280)
    browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 2")
    browser.eval(
        "document.getElementById('state').value = 'SUCCEEDED';"
        " document.querySelector('#search button').click()"
    )
    browser.wait_for("location.hash === '#tenant=south&state=SUCCEEDED'")
    browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 1")
    assert browser.texts("#traces tbody td.id") == ["south-ok"]


def test_the_overview_puts_failing_datasets_first(
    server: LiveServer, browser: Browser, artefacts: Path
) -> None:
    fin = {"trace_status": "FINISHED"}
    post(
        server,
        "t3",
        [
            *[
                {"trace_id": f"p{i}", "domain_id": "parking/1", "end_time": ago(600), **fin}
                for i in range(3)
            ],
            {
                "trace_id": "b1",
                "domain_id": "bikes/2",
                "status": "FAILED",
                "end_time": ago(900),
                **fin,
            },
            {"trace_id": "b2", "domain_id": "bikes/2", "end_time": ago(30)},
            {
                "trace_id": "t1",
                "domain_id": "trees/1",
                "status": "FAILED",
                "end_time": ago(3 * 86400),
                **fin,
            },
        ],
    )
    for width in WIDTHS:
        open_at(browser, server, "tenant=t3&view=overview", width)
        browser.wait_for("document.querySelectorAll('#overview-table tbody tr').length === 4")
        rows = browser.eval(
            "[...document.querySelectorAll('#overview-table tbody tr')].map(r =>"
            " [...r.children].map((c, i) => i === 0 ? c.textContent :"
            " [...c.children].map(s => s.title + '=' + s.textContent).join(' ')))"
        )
        day = "FAILED={} STALLED=0 RUNNING={} SUCCEEDED={}"
        assert rows == [
            ["all datasets", day.format(1, 1, 3), day.format(2, 1, 3)],
            ["bikes", day.format(1, 1, 0), day.format(1, 1, 0)],
            ["trees", day.format(0, 0, 0), day.format(1, 0, 0)],
            ["parking", day.format(0, 0, 3), day.format(0, 0, 3)],
        ]
        check_page(browser, width)
        browser.screenshot(artefacts / f"overview-{width}.png")
    # A dataset's failures lead to those traces, by a link that says so.
    failed = "#overview-table tbody tr:nth-child(2) td:nth-child(2) a.FAILED"
    assert browser.eval(f"document.querySelector('{failed}').getAttribute('href')") == (
        "#tenant=t3&dataset=bikes&state=FAILED"
    )
    browser.eval(f"document.querySelector('{failed}').click()")
    browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 1")
    assert browser.texts("#traces tbody td.id") == ["b1"]
    assert browser.eval("document.getElementById('dataset').value") == "bikes"


def test_a_running_step_grows_and_the_trace_follows_to_its_end(
    server: LiveServer, browser: Browser
) -> None:
    post(
        server,
        "t4",
        [
            {"trace_id": "live", "component": "router", "status": "SUCCESS", "end_time": ago(20)},
            {
                "trace_id": "live",
                "component": "writer",
                "status": "IN_PROGRESS",
                "end_time": ago(10),
            },
        ],
    )
    open_at(browser, server, "tenant=t4&trace=live", 1280)
    label = "(document.querySelectorAll('#timeline .lane-time')[1]?.textContent ?? '')"
    first = browser.wait_for(f"{label}.startsWith('IN_PROGRESS · running for')")
    assert "silent for" in browser.text("#summary")
    browser.wait_for(f"{label} !== {json.dumps(first)}", timeout=5)  # it grows by the second
    assert browser.eval("document.querySelector('#timeline .bar.growing') !== null")
    post(
        server,
        "t4",
        [
            {
                "trace_id": "live",
                "component": "writer",
                "status": "SUCCESS",
                "trace_status": "FINISHED",
            }
        ],
    )
    browser.wait_for("document.querySelector('#summary .state').textContent === 'SUCCEEDED'")
    assert browser.eval(
        "[...document.querySelectorAll('#timeline .bar')].map(b => b.dataset.status)"
    ) == ["SUCCESS", "SUCCESS"]
    assert browser.eval("document.querySelector('#timeline .bar.growing')") is None
    assert browser.text("#trace-live") == ""


def test_a_data_flow_of_50_steps_and_200_files_is_readable(
    server: LiveServer, browser: Browser, artefacts: Path
) -> None:
    """Fifty steps in a chain, each reading the four files the one before wrote and writing
    four of its own (200 files, and the upload the first step read)."""
    events: list[dict[str, Any]] = []
    for step in range(50):
        events.append(
            {
                "trace_id": "big",
                "component": f"step-{step:02}",
                "end_time": ago(1000 - step),
                "inputs": [f"s3://lake/stage-{step - 1:02}/part-{i}.parquet" for i in range(4)]
                if step
                else ["s3://upload/raw.csv"],
                "outputs": [f"s3://lake/stage-{step:02}/part-{i}.parquet" for i in range(4)],
                **({"trace_status": "FINISHED"} if step == 49 else {}),
            }
        )
    post(server, "t5", events)
    open_at(browser, server, "tenant=t5&trace=big", 1280)
    nodes = "document.querySelectorAll('#graph g.node')"
    browser.wait_for(f"{nodes}.length === 251", timeout=30)
    assert browser.eval("document.querySelectorAll('#graph g.node.file').length") == 201
    assert browser.eval("document.querySelectorAll('#graph path.edge').length") == 1 + 49 * 4 + 200
    overlaps = browser.eval(
        "(() => { const r = [...document.querySelectorAll('#graph g.node rect')]"
        ".map(n => n.getBoundingClientRect()); let n = 0;"
        " for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++)"
        " if (r[i].left < r[j].right && r[j].left < r[i].right && r[i].top < r[j].bottom"
        " && r[j].top < r[i].bottom) n++; return n; })()"
    )
    assert overlaps == 0
    # Drawn at full size in a box that scrolls: the labels stay 12 px, whole or cut in the
    # middle, with the whole path on hover.
    font = browser.eval("getComputedStyle(document.querySelector('#graph text')).fontSize")
    assert font == "12px"
    label = browser.eval(
        "[...document.querySelectorAll('#graph g.node.file')].map(n =>"
        " [n.querySelector('text').textContent, n.querySelector('title').textContent])"
    )
    assert ["upload/raw.csv", "s3://upload/raw.csv"] in label
    assert ["stage-49/part-3.parquet", "s3://lake/stage-49/part-3.parquet"] in label
    check_page(browser, 1280)
    browser.screenshot(artefacts / "lineage-50-steps-1280.png")


def test_a_trace_id_with_slashes_and_markup_opens_by_its_link(
    server: LiveServer, browser: Browser
) -> None:
    trace_id = "ds/1/x<img/src=x/onerror=window.__xss=4>"
    post(
        server,
        "t6",
        [{"trace_id": trace_id, "component": "<b>evil</b>", "trace_status": "FINISHED"}],
    )
    open_at(browser, server, "tenant=t6", 420)
    browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 1")
    assert browser.texts("#traces tbody td.id") == [trace_id]
    browser.eval("document.querySelector('#traces tbody td.id a').click()")
    browser.wait_for("document.querySelector('#summary .state') !== null")
    assert browser.text("#trace-title") == trace_id
    assert browser.eval("location.hash") == "#tenant=t6&trace=" + quote(trace_id, safe="").replace(
        "%20", "+"
    )
    assert browser.texts("#events tbody td:nth-child(2)") == ["<b>evil</b>"]
    check_page(browser, 420)


def make_key(store: str, tenant: str, role: str) -> str:
    """A new API key, made as ``waymark keys create`` makes it."""
    return admin.create(store, grants_of(tenant, [role], []))


def test_sign_in_with_a_key_kept_for_the_tab(
    tmp_path: Path, browser: Browser, artefacts: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'auth.db'}"
    migrate.upgrade(store)
    writer = make_key(store, "alpha", "writer")
    reader = make_key(store, "alpha", "reader")
    elsewhere = make_key(store, "beta", "reader")
    live = LiveServer(store, env={"WAYMARK_AUTH": "keys"})
    try:
        answer = httpx.post(
            f"{live.url}/v1/events",
            json={"trace_id": "secret-1", "trace_status": "FINISHED"},
            headers={"Waymark-Tenant": "alpha", "Authorization": f"Bearer {writer}"},
        )
        assert answer.status_code == 202, answer.text
        message = "document.getElementById('auth-message').textContent"

        def sign_in(credential: str) -> None:
            browser.eval(
                f"document.getElementById('token').value = {json.dumps(credential)};"
                " document.querySelector('#signin button[type=submit]').click()"
            )

        open_at(browser, live, "tenant=alpha", 1280)
        browser.wait_for(f"{message}.includes('(401)')")
        assert "none was given" in browser.eval(message)
        assert browser.eval("document.querySelectorAll('#traces tbody tr').length") == 0
        sign_in("wmk_not-a-key")
        browser.wait_for(f"{message}.includes('was not accepted')")
        sign_in(elsewhere)  # a good key, of another tenant
        browser.wait_for(f"{message}.includes('(403)')")
        assert "may not read this" in browser.eval(message)
        browser.screenshot(artefacts / "refused-1280.png")
        sign_in(reader)
        browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 1")
        assert browser.eval(message) == ""
        assert browser.texts("#traces tbody td.id") == ["secret-1"]
        assert browser.text("#signin-state") == "Signed in (this tab)"
        # Kept for this tab only, and never in the link.
        assert browser.eval("sessionStorage.getItem('waymark-token')") == reader
        assert browser.eval("localStorage.length") == 0
        assert reader not in browser.eval("location.href")
        open_at(browser, live, "tenant=alpha", 420)  # the page loaded again in the same tab
        browser.wait_for("document.querySelectorAll('#traces tbody tr').length === 1")
        assert browser.eval(message) == ""
        browser.eval("document.getElementById('signout').click()")
        browser.wait_for(f"{message}.includes('(401)')")
        assert browser.eval("document.querySelectorAll('#traces tbody tr').length") == 0
        assert browser.eval("sessionStorage.getItem('waymark-token')") is None
        check_page(browser, 1280)
    finally:
        live.stop()


def test_the_graph_merges_pages_of_steps_and_paths_by_id(
    server: LiveServer, browser: Browser
) -> None:
    """The lineage answer as a graph of step and path nodes, paged (``truncated``, ``next``):
    the page's graph module merges pages by node id and draws steps that only read."""
    open_at(browser, server, "view=overview", 1280)
    step = {"kind": "step", "stage": None, "operation": None, "time": "2026-01-01T00:00:00Z"}
    first = {
        "nodes": [
            {"id": "s1", "event_id": "e1", "component": "load", "status": "SUCCESS", **step},
            {"id": "p1", "kind": "path", "path": "s3://in/a.csv"},
            {"id": "p2", "kind": "path", "path": "s3://out/a.parquet"},
        ],
        "edges": [{"from": "p1", "to": "s1"}, {"from": "s1", "to": "p2"}],
        "truncated": True,
        "next": "c1",
    }
    second = {
        "nodes": [
            {"id": "p2", "kind": "path", "path": "s3://out/a.parquet"},
            {"id": "s2", "event_id": "e2", "component": "check", "status": "FAILED", **step},
        ],
        "edges": [{"from": "p2", "to": "s2"}],
        "truncated": False,
        "next": None,
    }
    drawn = browser.eval(
        "(async () => { const { Lineage, drawGraph } = await import('/ui/graph.js');"
        " const lineage = new Lineage(); const box = document.createElement('div');"
        " document.body.append(box); const seen = [];"
        f" for (const page of [{json.dumps(first)}, {json.dumps(second)}]) {{"
        "   lineage.add(page, []); drawGraph(box, lineage);"
        "   seen.push([lineage.truncated, lineage.next, lineage.counts(),"
        "     [...box.querySelectorAll('g.node')].map(n => n.getAttribute('class') + ' '"
        "       + n.querySelector('text').textContent).sort(),"
        "     [...box.querySelectorAll('path.edge')].map(e => e.dataset.from + '>' + e.dataset.to)"
        "       .sort()]); }"
        " return seen; })()"
    )
    assert drawn[0][:3] == [True, "c1", {"steps": 1, "files": 2, "edges": 2}]
    assert drawn[1] == [
        False,
        None,
        {"steps": 2, "files": 2, "edges": 3},
        ["node file in/a.csv", "node file out/a.parquet", "node step FAILED check",
         "node step SUCCESS load"],
        ["p1>s1", "p2>s2", "s1>p2"],
    ]  # fmt: skip
    assert browser.errors() == []


def test_durations_and_relative_times_read_as_words(server: LiveServer, browser: Browser) -> None:
    open_at(browser, server, "view=overview", 420)
    cases = {
        "0": "0 ms",
        "250": "250 ms",
        "41000": "41 s",
        "59400": "59 s",
        "60000": "1 min",
        "190000": "3 min",
        "3600000": "1 h",
        "7500000": "2 h 5 min",
        "86400000": "1 d",
        "273600000": "3 d 4 h",
    }
    said = browser.eval(
        "(async () => { const { duration } = await import('/ui/util.js');"
        f" return Object.fromEntries(Object.keys({json.dumps(cases)}).map(ms =>"
        " [ms, duration(Number(ms))])); })()"
    )
    assert said == cases
    relative = browser.eval(
        "(async () => { const { relative } = await import('/ui/util.js');"
        " const now = Date.parse('2026-01-01T12:00:00Z');"
        " return ['2026-01-01T11:57:00Z', '2026-01-01T12:03:00Z', '2026-01-01T12:00:00.400Z']"
        ".map(t => relative(t, now)); })()"
    )
    assert relative == ["3 min ago", "in 3 min", "just now"]


def test_a_truncated_data_flow_is_said_and_paged(server: LiveServer, browser: Browser) -> None:
    outputs = [f"s3://lake/out/part-{i:04}.parquet" for i in range(1200)]
    post(
        server,
        "t9",
        [
            {
                "trace_id": "wide",
                "component": "split",
                "inputs": ["s3://in/all.csv"],
                "outputs": outputs,
                "trace_status": "FINISHED",
            },
            {
                "trace_id": "wide",
                "component": "check",
                "status": "FAILED",
                "inputs": ["s3://in/all.csv"],
            },
        ],
    )
    open_at(browser, server, "tenant=t9&trace=wide", 1280)
    browser.wait_for("document.querySelectorAll('#graph g.node').length > 0", timeout=60)
    first = browser.eval("document.querySelectorAll('#graph g.node').length")
    assert first < 1203
    assert "truncated" in browser.text("#lineage-note")
    assert browser.eval("document.getElementById('lineage-more').hidden") is False
    for _ in range(5):
        if browser.eval("document.getElementById('lineage-more').hidden"):
            break
        before = browser.eval("document.querySelectorAll('#graph g.node').length")
        browser.eval("document.getElementById('lineage-more').click()")
        browser.wait_for(
            f"document.querySelectorAll('#graph g.node').length > {before}", timeout=60
        )
    assert browser.eval("document.querySelectorAll('#graph g.node').length") == 1203
    assert browser.eval("document.querySelectorAll('#graph g.node.step.FAILED').length") == 1
    assert "truncated" not in browser.text("#lineage-note")


def test_the_list_follows_the_live_stream(server: LiveServer, browser: Browser) -> None:
    """A new trace, and a change of one listed, appear without a reload and well within
    the old 5 s poll, from the stream alone: the list is read once."""
    open_at(browser, server, "tenant=live-list", 1280)
    browser.wait_for("document.getElementById('live').textContent.startsWith('Live')")
    rows = "document.querySelectorAll('#traces tbody tr')"
    lists = (
        "performance.getEntriesByType('resource')"
        ".filter(e => new URL(e.name).pathname === '/v1/traces').length"
    )
    assert browser.eval(f"{rows}.length") == 0
    post(server, "live-list", [{"trace_id": "arrives", "component": "router"}])
    browser.wait_for(f"{rows}.length === 1", timeout=3)
    assert "RUNNING" in browser.eval(f"{rows}[0].textContent")
    post(server, "live-list", [{"trace_id": "second", "component": "router"}])
    post(
        server,
        "live-list",
        [
            {
                "trace_id": "arrives",
                "component": "writer",
                "status": "FAILED",
                "trace_status": "FINISHED",
            }
        ],
    )
    browser.wait_for(f"{rows}.length === 2 && {rows}[0].textContent.includes('FAILED')", timeout=3)
    assert browser.eval(f"{rows}[0].textContent").startswith("arrives")
    assert browser.eval(lists) == 1  # one read of the list: the rest came from the stream
    assert browser.errors() == []


def test_a_filtered_list_takes_only_what_matches_from_the_stream(
    server: LiveServer, browser: Browser
) -> None:
    open_at(browser, server, "tenant=live-filter&state=FAILED", 1280)
    browser.wait_for("document.getElementById('live').textContent.startsWith('Live')")
    rows = "document.querySelectorAll('#traces tbody tr')"
    post(server, "live-filter", [{"trace_id": "fine", "trace_status": "FINISHED"}])
    post(
        server,
        "live-filter",
        [{"trace_id": "broke", "status": "FAILED", "trace_status": "FINISHED"}],
    )
    browser.wait_for(f"{rows}.length === 1", timeout=3)
    time.sleep(0.5)
    assert [browser.eval(f"{rows}[0].querySelector('td').textContent")] == ["broke"]
    assert browser.eval(f"{rows}.length") == 1
