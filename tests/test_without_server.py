"""The base install: the SDK and the CLI's client commands work without the server's
dependencies, and the server commands say which extra to install.

Each check runs in a subprocess whose import system refuses every package of the
``server`` extra (a ``sitecustomize`` on ``PYTHONPATH`` puts a finder first on the meta
path), against a live server that runs with everything installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveServer

REFUSED = ("alembic", "fastapi", "nats", "psycopg", "psycopg_pool", "sqlalchemy", "starlette",
           "uvicorn")  # fmt: skip

REFUSER = f"""
import importlib.abc
import sys

REFUSED = {REFUSED!r}


class RefuseServerPackages(importlib.abc.MetaPathFinder):
    '''Makes the server extra's packages look not installed.'''

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, RefuseServerPackages())
"""

SERVER_MODULES = ("waymark.api", "waymark.store", "waymark.bus", "waymark.collector",
                  "waymark.ingest", "waymark.sink", "waymark.wire", "waymark.errors")  # fmt: skip


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that has only the base install."""
    site = tmp_path / "base-install"
    site.mkdir()
    (site / "sitecustomize.py").write_text(REFUSER)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in ``env``."""
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run(env, "-m", "waymark.cli", *args)


def test_the_refuser_refuses(base_env: dict[str, str]) -> None:
    """Without this, every other test here could pass on an import system that refuses nothing."""
    for package in REFUSED:
        done = run(base_env, "-c", f"import {package}")
        assert done.returncode == 1, package
        assert f"No module named '{package}'" in done.stderr


SDK_SCRIPT = """
import json
import sys

from waymark.sdk import Client, Tracker

url, server_side = sys.argv[1], json.loads(sys.argv[2])
tracker = Tracker(url=url, component="no-server-test")
with tracker.step(trace_id="sdk-base", stage="LOAD", outputs=["s3://b/out.csv"]):
    pass
with tracker.step(trace_id="sdk-base", stage="DONE", trace_status="FINISHED"):
    pass
assert tracker.close(20), tracker.stats()
with Client(url) as client:
    sent = client.send({"trace_id": "sdk-sent", "status": "FAILED", "trace_status": "FINISHED"})
    summary = client.wait("sdk-base", timeout=20)
    failed = client.summary("sdk-sent")
    stages = [e["stage"] for e in client.events("sdk-base")]
    hits = client.paths("s3://b/out.csv")
loaded = [m for m in sys.modules if any(m == s or m.startswith(s + ".") for s in server_side)]
print(json.dumps({
    "accepted": len(sent.event_ids),
    "state": summary.state,
    "stages": stages,
    "failed": failed.state,
    "paths": [h.trace_id for h in hits],
    "loaded": sorted(loaded),
}))
"""


def test_the_sdk_sends_and_reads_without_the_server_extra(
    base_env: dict[str, str], live_server: LiveServer
) -> None:
    server_side = json.dumps([*SERVER_MODULES, *REFUSED])
    done = run(base_env, "-c", SDK_SCRIPT, live_server.url, server_side)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {
        "accepted": 1,
        "state": "SUCCEEDED",
        "stages": ["LOAD", "DONE"],
        "failed": "FAILED",
        "paths": ["sdk-base"],
        "loaded": [],
    }


def test_the_client_commands_work_without_the_server_extra(
    base_env: dict[str, str], live_server: LiveServer
) -> None:
    url = ("--url", live_server.url)
    sent = cli(base_env, "send", "--trace-id", "cli-base", "--status", "SUCCESS",
               "--trace-status", "FINISHED", "--path", "raw/in.csv", *url)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    still_open = json.dumps({"trace_id": "cli-open", "status": "IN_PROGRESS"})
    from_stdin = run(base_env, "-m", "waymark.cli", "send", "-", *url, stdin=still_open)
    assert from_stdin.returncode == 0, from_stdin.stderr

    status = cli(base_env, "status", "cli-base", "--format", "json", *url)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "SUCCEEDED"
    history = cli(base_env, "history", "cli-base", "--format", "csv", *url)
    assert history.returncode == 0, history.stderr
    assert len(history.stdout.strip().splitlines()) == 2  # header and the one event

    assert cli(base_env, "wait", "cli-base", "--timeout", "10", *url).returncode == 0
    assert cli(base_env, "wait", "cli-open", "--timeout", "0.5", *url).returncode == 2

    path = cli(base_env, "path", "raw/in.csv", "--format", "json", *url)
    assert path.returncode == 0, path.stderr
    assert [hit["trace_id"] for hit in json.loads(path.stdout)] == ["cli-base"]


@pytest.mark.parametrize(
    "command",
    [
        ("serve", "--port", "9"),
        ("migrate", "--store", "sqlite:///unused.db"),
        ("collect", "--bus", "nats://127.0.0.1:9"),
        ("streams", "--bus", "nats://127.0.0.1:9"),
        ("dead-letters", "--store", "sqlite:///unused.db"),
    ],
    ids=lambda command: command[0],
)
def test_a_server_command_names_the_extra_to_install(
    base_env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    done = run(base_env, "-m", "waymark.cli", *command, cwd=work)
    assert done.returncode == 1
    assert f"waymark {command[0]} needs " in done.stderr
    assert "pip install 'waymark-status[server]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(work.iterdir())  # no store file was made on the way


FIND_PACKAGES = """
import importlib.util, json, sys
print(json.dumps([name for name in sys.argv[1:] if importlib.util.find_spec(name)]))
"""

SEND_ONE = """
import sys
from waymark.sdk import Client
Client(sys.argv[1]).send({"trace_id": "fresh", "trace_status": "FINISHED"})
"""


def test_a_fresh_install_without_extras(tmp_path: Path, live_server: LiveServer) -> None:
    """``pip install`` of the project without extras, in a new virtual environment: no
    server dependency comes along, and the SDK and the client commands work."""
    project = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"
    shutil.copytree(
        project / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(project / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def in_venv(program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / program), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )

    installed = in_venv("python", "-m", "pip", "install", "--quiet", str(source))
    assert installed.returncode == 0, installed.stderr
    present = in_venv("python", "-c", FIND_PACKAGES, *REFUSED)
    assert (present.returncode, json.loads(present.stdout)) == (0, []), present.stderr

    sent = in_venv("python", "-c", SEND_ONE, live_server.url)
    assert sent.returncode == 0, sent.stderr
    status = in_venv("waymark", "status", "fresh", "--format", "json", "--url", live_server.url)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "SUCCEEDED"
    serve = in_venv("waymark", "serve", "--port", "9")
    assert serve.returncode == 1
    assert "pip install 'waymark-status[server]'" in serve.stderr
