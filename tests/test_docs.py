"""Every example in README.md and docs/*.md runs as written, on a fresh copy of the project.

The convention, for whoever writes docs:

- A fenced block tagged ``sh``, ``bash``, ``shell`` or ``python`` is run; one tagged
  ``toml`` is a pipelines file and must load (``waymark serve --pipelines`` would take
  it). Blocks with any other tag (``text``, none) are shown to readers, not run.
- A block that needs something this test does not have starts with a comment line
  ``# needs: <what>``, which tells the reader too: ``# needs: AWS Lambda``, ``# needs:
  Airflow``, ``# needs: a PostgreSQL database and NATS with JetStream``, ``# needs: port
  8000 free (serves until stopped)``. Such a block is not run; the reason must not be empty.
- The blocks of one file run in the order they appear, each in a new process (``bash -e
  -o pipefail``, or the project's Python), against one ``waymark serve`` of their own with
  an empty SQLite store: a block may use what an earlier block of the same file sent.
  Their working directory is a copy of the project's tracked files with ``.venv`` linked in,
  as after ``git clone`` and ``make install``; ``WAYMARK_URL`` names the server.
- The server listens on a free port, not 8000: ``localhost:8000`` and ``127.0.0.1:8000``
  in a block are replaced by its address before the block runs. Nothing else is changed.
- ``curl`` fails the block on an HTTP error answer (it runs as ``curl --fail-with-body``),
  a block waits for the jobs it started in the background, and each block has
  :data:`BLOCK_TIMEOUT_S` to finish.
- After a file's blocks, no trace of its examples may be STALLED: example events carry
  times that make sense whenever the examples are run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_TAGS = {
    "sh": "shell",
    "bash": "shell",
    "shell": "shell",
    "python": "python",
    "toml": "pipelines",
}
NEEDS = re.compile(r"#\s*needs:(.*)")
FENCE = re.compile(
    r"^(?P<indent> *)```(?P<tag>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
SERVER = re.compile(r"\b(localhost|127\.0\.0\.1):8000\b")
BLOCK_TIMEOUT_S = 120
TENANTS = ("default", "demo", "opendes")
"""The tenants the examples use; each is checked for STALLED traces."""

LOAD_PIPELINES = "from waymark.pipelines import load; load('pipelines.toml')"
SHELL_PRELUDE = """\
set -e -o pipefail
curl() { command curl --fail-with-body "$@"; }
"""
SHELL_EPILOGUE = """
for job in $(jobs -p); do wait "$job"; done
"""


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    kind: str  # shell or python
    code: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def needs(self) -> str | None:
        """What the block says it needs (``# needs: ...`` on its first line), else None."""
        first = self.code.lstrip().partition("\n")[0]
        found = NEEDS.match(first)
        return found.group(1).strip() if found else None


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text()
    found = []
    for match in FENCE.finditer(text):
        kind = RUN_TAGS.get(match["tag"])
        if kind is None:
            continue
        line = text.count("\n", 0, match.start()) + 1
        indent = len(match["indent"])
        code = "".join(row[indent:] for row in match["body"].splitlines(keepends=True))
        found.append(Block(doc, line, kind, code))
    return found


def fresh_copy(to: Path) -> Path:
    """The project's tracked files, as a clone has them, with the installed ``.venv``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = to / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (to / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return to


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(f"sqlite:///{tmp_path / 'docs.db'}")
    try:
        yield live
    finally:
        live.stop()


def run(block: Block, server: LiveServer, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = SERVER.sub(server.url.removeprefix("http://"), block.code)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "WAYMARK_URL": server.url,
    }
    for name in ("WAYMARK_STORE", "WAYMARK_BUS", "WAYMARK_TENANT", "WAYMARK_PIPELINES"):
        env.pop(name, None)
    if block.kind == "shell":
        command = ["bash", "-c", SHELL_PRELUDE + code + SHELL_EPILOGUE]
    elif block.kind == "pipelines":
        (cwd / "pipelines.toml").write_text(code)
        command = [sys.executable, "-c", LOAD_PIPELINES]
    else:
        command = [sys.executable, "-c", code]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
    )


RUNNABLE = [doc for doc in DOCS if any(b.needs is None for b in blocks(doc))]
"""The files with a block to run; a server is started for each."""


@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda d: str(d.relative_to(ROOT)))
def test_examples_run_as_written(doc: Path, server: LiveServer, tmp_path: Path) -> None:
    found = blocks(doc)
    cwd = fresh_copy(tmp_path / "clone")
    for block in found:
        if block.needs is not None:
            assert block.needs, f"{block.where}: '# needs:' names nothing"
            continue
        done = run(block, server, cwd)
        assert done.returncode == 0, (
            f"{block.where} failed ({done.returncode}):\n{block.code}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    for tenant in TENANTS:
        stalled = httpx.get(
            f"{server.url}/v1/traces",
            params={"state": "STALLED"},
            headers={"Waymark-Tenant": tenant},
        ).json()["items"]
        assert not stalled, (
            f"{doc.name}: examples STALLED at once: {[t['trace_id'] for t in stalled]}"
        )


def test_blocks_are_found_as_a_reader_sees_them(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(
        "Intro\n\n```sh\necho one\n```\n\n```toml\n[default]\n```\n\n"
        "1. a step:\n\n   ```python\n   print(2)\n   ```\n\n"
        "```bash\n# needs: AWS Lambda\naws lambda invoke\n```\n\n```\nplain\n```\n"
        "```text\n$ shown\n```\n"
    )
    found = blocks(doc)
    assert [(b.line, b.kind, b.code, b.needs) for b in found] == [
        (3, "shell", "echo one\n", None),
        (7, "pipelines", "[default]\n", None),
        (13, "python", "print(2)\n", None),
        (17, "shell", "# needs: AWS Lambda\naws lambda invoke\n", "AWS Lambda"),
    ]
