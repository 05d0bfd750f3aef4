"""The real ``waymark`` command against a live server: on an 80-column terminal (a
pseudo-terminal) and piped, every client command and every exit code of ``wait``."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.cells import cell_len

from tests.conftest import LiveServer
from tests.test_api import TRACE, native_examples
from waymark import __version__

WAYMARK = str(Path(sys.executable).with_name("waymark"))
COLUMNS = 80
SGR = re.compile(r"\x1b\[[0-9;]*m")
"""The only escape sequences the CLI itself writes: colours and styles, on a terminal."""
BOX = re.compile("[\u2500-\u257f]")

# What a producer could send to take over the reader's terminal: clear the screen, home the
# cursor, print a green "OK"; a C1 CSI (the one-byte form of ESC [) ringing the bell; a
# right-to-left override that would show "evil" reversed; a line break to forge a row.
HOSTILE = "\x1b[2J\x1b[H\x1b[32mOK\x1b[0m \x9b5n\x07 \u202eevil\u202c\nFAKE ROW"
HOSTILE_SHOWN = r"\x1b[2J\x1b[H\x1b[32mOK\x1b[0m \x9b5n\x07 \u202eevil\u202c\x0aFAKE ROW"
LONG = "The file has 3 columns where the schema needs 4: " + "x" * 150 + " (end)"


@dataclass
class Ran:
    code: int
    out: str
    err: str = ""


def piped(server: LiveServer, *args: str, stdin: str | None = None, timeout: float = 60) -> Ran:
    """The command with its output piped, as in ``waymark ... | less``."""
    done = subprocess.run(
        [WAYMARK, *args, "--url", server.url],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": str(COLUMNS)},
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def on_terminal(server: LiveServer, *args: str) -> Ran:
    """The command on an 80-column pseudo-terminal (stdout and stderr both)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
    env = {**os.environ, "COLUMNS": str(COLUMNS), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [WAYMARK, *args, "--url", server.url],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    code = proc.wait(30)
    return Ran(code, b"".join(chunks).decode().replace("\r\n", "\n"))


def visible_lines(output: str) -> list[str]:
    return SGR.sub("", output).splitlines()


def assert_fits(output: str) -> None:
    wide = [line for line in visible_lines(output) if cell_len(line) > COLUMNS]
    assert not wide, wide


def assert_no_control(output: str, *, terminal: bool) -> None:
    """Nothing a terminal would act on, beyond line breaks (and, on a terminal, the
    CLI's own colours)."""
    text = SGR.sub("", output) if terminal else output
    found = re.findall("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text)
    assert not found, found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    store = tmp_path_factory.mktemp("cli") / "waymark.db"
    live = LiveServer(f"sqlite:///{store}")
    try:
        post(live, native_examples())
        post(
            live,
            {
                "trace_id": "broken",
                "status": "FAILED",
                "trace_status": "FINISHED",
                "component": "csv-validator",
                "stage": "VALIDATE",
                "errors": [{"message": {"nb": "Ugyldig verdi.", "en": "Invalid value."}}],
            },
        )
        post(
            live,
            [
                {"trace_id": "long", "component": "data-uploader", "stage": "UPLOAD",
                 "trace_status": "STARTED", "domain_id": "parking-fees/1",
                 "start_time": "2026-11-20T10:00:00Z", "end_time": "2026-11-20T10:00:41Z"},
                {"trace_id": "long", "component": "a-component-with-a-rather-long-name",
                 "operation": "validate_every_column_of_the_file", "status": "FAILED",
                 "trace_status": "FINISHED", "message": LONG,
                 "end_time": "2026-11-20T10:03:41Z", "duration_ms": 180000},
            ],
        )  # fmt: skip
        post(
            live,
            {
                "trace_id": "hostile",
                "status": "FAILED",
                "trace_status": "FINISHED",
                "component": "evil\x1b]0;owned\x07",
                "message": HOSTILE,
                "errors": [{"message": {"en": HOSTILE}}],
                "path": "raw/hostile\x1b[2J.csv",
            },
        )
        yield live
    finally:
        live.stop()


def post(server: LiveServer, events: Any) -> None:
    r = httpx.post(f"{server.url}/v1/events", json=events)
    assert r.status_code == 202, r.text


# -- status ---------------------------------------------------------------------------------------


def test_status_on_a_terminal_shows_state_step_and_okdata_fields(server: LiveServer) -> None:
    ran = on_terminal(server, "status", "broken")
    assert ran.code == 0
    assert_fits(ran.out)
    shown = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1)
        for line in visible_lines(ran.out)
        if line.strip()
    )
    assert shown["State"] == "FAILED"
    assert shown["Current step"] == "csv-validator / VALIDATE (FAILED)"
    assert re.fullmatch(r"(just now|[\d.]+ (ms|s) ago)", shown["Last moved"])
    assert (shown["Done"], shown["Trace status"], shown["Event status"]) == (
        "yes",
        "FINISHED",
        "FAILED",
    )
    assert shown["Errors"] == "Invalid value."
    assert "\x1b[" in ran.out  # in colour on a terminal


def test_status_piped_json_and_csv(server: LiveServer) -> None:
    ran = piped(server, "status", TRACE)
    assert ran.code == 0 and "\x1b" not in ran.out and not BOX.search(ran.out)
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in ran.out.splitlines())
    assert lines["State"] == "SUCCEEDED"
    assert lines["Current step"] == "pipeline / END (SUCCESS)"
    assert lines["Last moved"].startswith("2026-11-20T10:00:07")
    assert lines["Last moved"].endswith(" ago)")
    assert lines["Errors"] == "-"

    ran = piped(server, "status", "broken", "--format", "json")
    summary = json.loads(ran.out)
    assert summary == httpx.get(f"{server.url}/v1/traces/broken").json()
    assert summary["state"] == "FAILED" and summary["trace_event_status"] == "FAILED"

    rows = list(csv.reader(io.StringIO(piped(server, "status", "broken", "--format", "csv").out)))
    assert rows == [  # okdata's columns, as scripts read them
        ["Done", "Trace ID", "Status", "Event status", "Errors"],
        ["yes", "broken", "FINISHED", "FAILED", "Invalid value."],
    ]


def test_status_shows_the_first_and_last_errors_of_many(server: LiveServer) -> None:
    post(server, [
        {"trace_id": "many", "event_id": f"m{n:02}", "start_time": f"2026-11-20T10:00:{n:02}Z",
         "errors": [{"message": {"en": f"bad row {n}"}}]}
        for n in range(30)
    ])  # fmt: skip
    ran = piped(server, "status", "many", "--format", "csv")
    assert ran.code == 0
    shown = list(csv.reader(io.StringIO(ran.out)))[1][4]
    first = "; ".join(f"bad row {n}" for n in range(5))
    assert shown.startswith(first + "; (20 more); bad row 25")


# -- history --------------------------------------------------------------------------------------


def test_history_fits_80_columns_on_a_terminal(server: LiveServer) -> None:
    for args in (
        ("status", "long", "--history"),
        ("history", TRACE),
        ("history", "long", "--wide"),
    ):
        ran = on_terminal(server, *args)
        assert ran.code == 0
        assert_fits(ran.out)
    ran = on_terminal(server, "history", "long")
    lines = visible_lines(ran.out)
    header = next(i for i, line in enumerate(lines) if line.startswith("Time"))
    assert lines[header].split() == ["Time", "Took", "Component", "Step", "Status", "message"]
    column = lines[header].index("message")  # where the last column starts
    folded = "".join(line[column:].replace(" ", "") for line in lines[header + 2 :])
    assert folded == LONG.replace(" ", "")  # all of it, folded inside its column
    assert "10:00:41" in ran.out and "10:03:41" in ran.out
    assert "41 s" in ran.out and "3 min" in ran.out


def test_history_piped_is_plain_and_whole(server: LiveServer) -> None:
    ran = piped(server, "status", "long", "--history", "--wide")
    assert ran.code == 0
    assert "\x1b" not in ran.out and not BOX.search(ran.out)
    lines = ran.out.splitlines()
    assert len(lines) == 3  # the header and one line per event: nothing wrapped
    events = httpx.get(f"{server.url}/v1/traces/long/events").json()["items"]
    for line, event in zip(lines[1:], events, strict=True):
        assert line.startswith(event["time"])  # the whole time
        assert event["event_id"] in line and event["component"] in line
    assert lines[2].endswith(LONG)
    assert "validate_every_column_of_the_file" in lines[2]  # the operation, as no stage
    assert lines[1].split()[:6] == [
        events[0]["time"],
        "41",
        "s",
        "data-uploader",
        "UPLOAD",
        "SUCCESS",
    ]


def test_history_csv_and_json(server: LiveServer) -> None:
    ran = piped(server, "status", TRACE, "--history", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(ran.out)))  # okdata's columns
    assert [r["Component"] for r in rows] == ["data-uploader", "csv-to-parquet", "pipeline"]
    assert [r["Status"] for r in rows] == ["STARTED", "CONTINUE", "FINISHED"]
    assert [r["Event status"] for r in rows] == ["OK", "OK", "OK"]
    assert rows[0]["Domain ID"] == "parking-fees/1"
    assert rows[1]["End"] == "2026-11-20T10:00:06.618000Z"
    ran = piped(server, "history", TRACE, "--format", "json")
    assert (
        json.loads(ran.out) == httpx.get(f"{server.url}/v1/traces/{TRACE}/events").json()["items"]
    )


def test_unknown_trace_exits_4(server: LiveServer) -> None:
    ran = piped(server, "status", "nope")
    assert ran.code == 4 and "no trace 'nope'" in ran.err


# -- terminal safety ------------------------------------------------------------------------------


def test_control_characters_from_producers_are_shown_escaped(server: LiveServer) -> None:
    for args in (
        ("status", "hostile"),
        ("status", "hostile", "--history"),
        ("status", "hostile", "--history", "--wide"),
        ("path", "raw/hostile\x1b[2J.csv"),
    ):
        table = on_terminal(server, *args)
        plain = piped(server, *args)
        assert table.code == plain.code == 0
        assert_no_control(table.out, terminal=True)
        assert_no_control(plain.out, terminal=False)
        assert r"evil\x1b]0;owned\x07" in plain.out  # the component, escaped
        if "--wide" not in args:  # narrow columns of --wide fold it between others
            assert r"\x1b]0;owned\x07" in "".join(SGR.sub("", table.out).split())
    plain = piped(server, "status", "hostile", "--history").out
    assert HOSTILE_SHOWN in plain  # all of it, on one line
    assert not any(line.startswith("FAKE ROW") for line in plain.splitlines())
    assert r"evil\x1b]0;owned\x07" in plain

    for fmt in ("json", "csv"):
        for args in (("status", "hostile"), ("history", "hostile")):
            ran = piped(server, *args, "--format", fmt)
            assert_no_control(ran.out.replace("\r\n", "\n"), terminal=False)
    summary = json.loads(piped(server, "status", "hostile", "--format", "json").out)
    assert summary["errors"] == [{"message": {"en": HOSTILE}}]  # the same value, escaped


def test_control_characters_in_errors_are_shown_escaped(server: LiveServer) -> None:
    for ran in (on_terminal(server, "status", "x\x1b[2Jy"), piped(server, "status", "x\x1b[2Jy")):
        assert ran.code == 4
        assert_no_control(ran.out + ran.err, terminal=True)
        assert r"x\x1b[2Jy" in ran.out + ran.err


def test_wait_shows_steps_escaped(server: LiveServer) -> None:
    for ran in (on_terminal(server, "wait", "hostile"), piped(server, "wait", "hostile")):
        assert ran.code == 1
        assert_no_control(ran.out, terminal=True)
        assert r"\x1b[2J" in ran.out


# -- wait -----------------------------------------------------------------------------------------


def test_wait_exit_codes(server: LiveServer) -> None:
    assert piped(server, "wait", TRACE).code == 0
    assert piped(server, "wait", TRACE, "--timeout", "0").code == 0  # done already: no wait
    assert piped(server, "wait", "broken").code == 1
    post(server, {"trace_id": "open", "status": "IN_PROGRESS"})
    ran = piped(server, "wait", "open", "--timeout", "0.5")
    assert ran.code == 2 and "open: RUNNING" in ran.out
    ran = piped(server, "wait", "never", "--timeout", "0.5")
    assert ran.code == 2 and "'never' did not appear within 0.5 s" in ran.err


def test_wait_shows_each_step_as_it_arrives(server: LiveServer) -> None:
    with subprocess.Popen(
        [WAYMARK, "wait", "soon", "--timeout", "30", "--url", server.url],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        post(server, {"trace_id": "soon", "component": "uploader", "trace_status": "STARTED"})
        first = proc.stdout.readline()  # shown while the trace is still running
        assert "uploader" in first and "SUCCESS" in first
        post(server, {"trace_id": "soon", "component": "converter", "status": "IN_PROGRESS"})
        assert "converter" in proc.stdout.readline()
        post(server, {"trace_id": "soon", "component": "indexer", "trace_status": "FINISHED"})
        rest = proc.stdout.read().splitlines()
        code = proc.wait(30)
    assert code == 0
    assert len(rest) == 2 and "indexer" in rest[0]
    assert rest[1] == "soon: SUCCEEDED (SUCCESS)"


# -- path, send -----------------------------------------------------------------------------------


def test_path_lists_each_trace_once_with_its_state(server: LiveServer) -> None:
    post(server, [
        {"trace_id": "p-old", "path": "raw/p.csv", "trace_status": "FINISHED", "status": "FAILED",
         "end_time": "2026-11-20T10:00:00Z"},
        {"trace_id": "p-new", "path": "raw/p.csv", "component": "uploader",
         "end_time": "2026-11-20T11:00:00Z"},
        {"trace_id": "p-new", "inputs": ["raw/p.csv"], "component": "converter",
         "end_time": "2026-11-20T11:00:05Z"},
    ])  # fmt: skip
    ran = piped(server, "path", "raw/p.csv")
    assert ran.code == 0
    rows = [re.split(r"\s{2,}", line) for line in ran.out.splitlines()]
    assert rows[0] == ["Trace ID", "State", "Touched", "Current step"]
    assert [r[:2] for r in rows[1:]] == [["p-new", "STALLED"], ["p-old", "FAILED"]]
    data = json.loads(piped(server, "path", "raw/p.csv", "--format", "json").out)
    assert [(d["trace_id"], d["state"]) for d in data] == [
        ("p-new", "STALLED"),
        ("p-old", "FAILED"),
    ]
    assert_fits(on_terminal(server, "path", "raw/p.csv").out)


def test_send_from_file_stdin_and_flags(server: LiveServer, tmp_path: Path) -> None:
    events = [{**e, "trace_id": "sent"} for e in native_examples()]
    ran = piped(server, "send", "-", stdin=json.dumps(events))
    assert ran.code == 0 and len(ran.out.split()) == 3
    file = tmp_path / "events.json"
    file.write_text(json.dumps({"trace_id": "sent-file"}))
    assert piped(server, "send", str(file)).code == 0
    ran = piped(server, "send", "--trace-id", "flags", "--status", "FAILED",
                "--trace-status", "FINISHED", "--component", "c", "--domain", "dataset",
                "--domain-id", "fees/1", "--error", "Bad row.", "--error", "Bad header.",
                "--error-code", "17", "--input", "raw/a.csv", "--input", "raw/b.csv",
                "--output", "out/a.parquet", "--message", "gave up")  # fmt: skip
    assert ran.code == 0
    (event,) = httpx.get(f"{server.url}/v1/traces/flags/events").json()["items"]
    assert event["event_id"] == ran.out.strip()
    assert {k: event[k] for k in ("domain", "domain_id", "error_code", "inputs", "outputs")} == {
        "domain": "dataset",
        "domain_id": "fees/1",
        "error_code": 17,
        "inputs": ["raw/a.csv", "raw/b.csv"],
        "outputs": ["out/a.parquet"],
    }
    assert event["errors"] == [{"message": {"en": "Bad row."}}, {"message": {"en": "Bad header."}}]
    assert httpx.get(f"{server.url}/v1/traces/flags").json()["state"] == "FAILED"


def test_send_reports_a_rejected_field_once(server: LiveServer) -> None:
    ran = piped(server, "send", "--trace-id", "f", "--status", "MAYBE")
    assert ran.code == 4
    assert ran.err.count("status") == 1 and "Input should be" in ran.err
    ran = piped(server, "send", "-", stdin='[{"trace_id": "ok"}, {"trace_id": "x", "bogus": 1}]')
    assert ran.code == 4 and ran.err.count("bogus") == 1 and "body.1.bogus" in ran.err
    assert httpx.get(f"{server.url}/v1/traces/ok").status_code == 404  # nothing stored
    assert piped(server, "send").code == 4
    ran = piped(server, "send", "-", stdin="{not json")
    assert ran.code == 4 and "is not JSON" in ran.err


# -- the command itself ---------------------------------------------------------------------------


def test_version_and_help() -> None:
    done = subprocess.run([WAYMARK, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout == f"waymark {__version__}\n"
    env = {**os.environ, "COLUMNS": "80"}
    for command in ("status", "history", "path"):
        done = subprocess.run([WAYMARK, command, "--help"], capture_output=True, text=True, env=env)
        assert "--format table|json|csv" in done.stdout
        options = done.stdout.split("Options:")[1]
        assert not re.search(r"<(str|bool|int|float)>", options), options
    done = subprocess.run([WAYMARK, "wait", "--help"], capture_output=True, text=True, env=env)
    assert "--timeout SECONDS" in done.stdout


def test_unreachable_server_names_the_url() -> None:
    url = "http://127.0.0.1:9"
    for args in (("status", "x"), ("wait", "x", "--timeout", "1"), ("send", "--trace-id", "x")):
        done = subprocess.run(
            [WAYMARK, *args, "--url", url], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 4
        assert f"cannot reach the Waymark server at {url}" in done.stderr


def test_wait_returns_when_the_trace_finishes(server: LiveServer) -> None:
    post(server, {"trace_id": "later", "status": "IN_PROGRESS"})

    def finish() -> None:
        time.sleep(0.5)
        post(server, {"trace_id": "later", "trace_status": "FINISHED"})

    threading.Thread(target=finish).start()
    ran = piped(server, "wait", "later", "--timeout", "30")
    assert ran.code == 0 and ran.out.endswith("later: SUCCEEDED (SUCCESS)\n")


# -- watch ----------------------------------------------------------------------------------------


def test_watch_prints_each_change_as_it_comes(server: LiveServer) -> None:
    """`waymark watch` follows the live stream: one line a change, the filters kept; with
    --count it stops after that many."""
    watching = subprocess.Popen(
        [sys.executable, "-m", "waymark.cli", "watch", "--url", server.url, "--tenant", "watched",
         "--state", "FAILED", "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # the stream is open
        for trace_id, status in (("fine", "SUCCESS"), ("bad-1", "FAILED"), ("bad-2", "FAILED")):
            answer = httpx.post(
                f"{server.url}/v1/events",
                json={"trace_id": trace_id, "component": "writer", "status": status,
                      "trace_status": "FINISHED"},
                headers={"Waymark-Tenant": "watched"},
            )  # fmt: skip
            assert answer.status_code == 202
        out, err = watching.communicate(timeout=20)
    finally:
        watching.kill()
    assert watching.returncode == 0, err
    lines = out.splitlines()
    assert [line.split()[1:] for line in lines] == [
        ["bad-1", "FAILED", "writer", "FAILED"],
        ["bad-2", "FAILED", "writer", "FAILED"],
    ]
    assert_no_control(out, terminal=False)


def test_watch_names_a_bad_filter() -> None:
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "waymark.cli",
            "watch",
            "--url",
            "http://127.0.0.1:9",
            "--count",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2 and "--count" in ran.stderr
