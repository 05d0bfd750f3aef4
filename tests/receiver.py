"""A webhook receiver for the tests: a real HTTP server on a free loopback port that
answers by a plan (status codes, or ``"hang"``) and keeps every request it got."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int | str

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Answers the n-th request with ``plan[n]`` (then with ``then``); ``"hang"`` holds the
    connection until :meth:`stop`."""

    plan: list[int | str] = field(default_factory=list)
    then: int | str = 200
    port: int = 0
    got: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    n = len(receiver.got)
                    answer = receiver.plan[n] if n < len(receiver.plan) else receiver.then
                    receiver.got.append(
                        Received(time.monotonic(), dict(self.headers.items()), body, answer)
                    )
                if answer == "hang":
                    receiver.released.wait(60)
                    return
                self.send_response(int(answer))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 20, **match: Any) -> list[Received]:
        """The requests whose body has ``match``'s values, once there are ``count``."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [r for r in self.got if all(r.json.get(k) == v for k, v in match.items())]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def verified(secret: str, received: Received) -> Any:
    """The message, as the Standard Webhooks library reads it after checking its signature
    (it raises if the signature is wrong)."""
    headers = {k.lower(): v for k, v in received.headers.items()}
    return Webhook(secret).verify(received.body, headers)
