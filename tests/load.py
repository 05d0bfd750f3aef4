"""A steady load of ``POST /v1/events`` from several client threads, recording what each
answer said: the fault tests compare what was acknowledged with what was stored.

Each client posts batches with event ids of their own. A batch answered 503 (with
``Retry-After``, in problem details) is sent again, the same events with the same ids,
as a client following ``Retry-After`` would (sooner, to keep the load up); the first
``abandoning`` clients give such a batch up instead (its ids go to ``abandoned``) and go
on with the next, as a client would that takes a 503 to mean "not stored". A batch
whose answer never came (the connection failed: the server died) has an unknown fate:
it is kept in ``unknown`` and that client stops. Any other answer is ``wrong`` and
stops that client too."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import wait_for


@dataclass
class Load:
    url: str
    docs: list[dict[str, Any]]  # every event the clients may send, in the order they take them
    clients: int = 4
    abandoning: int = 0  # clients that give up a batch answered 503 instead of sending it again
    batch: int = 5  # events per POST
    pause_s: float = 0.01  # between one client's POSTs: a steady load, not a flood
    pause_after_503_s: float = 0.1  # Retry-After asks for more; sooner keeps the load up
    accepted: list[str] = field(default_factory=list)  # every event id answered 202
    sent: set[str] = field(default_factory=set)  # every event id sent, whatever the answer
    # (when it came, monotonic; its status; seconds waited) of each 202 and 503
    answers: list[tuple[float, int, float]] = field(default_factory=list)
    abandoned: set[str] = field(default_factory=set)  # ids of batches given up after a 503
    unknown: list[list[dict[str, Any]]] = field(default_factory=list)  # batches never answered
    cut_off: int = 0  # of those, the ones sent (the connection failed after it was made)
    wrong: list[str] = field(default_factory=list)  # answers that are neither 202 nor 503
    taken: int = 0  # docs taken by the clients (sent, or dropped when stopped)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n < self.abandoning,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads), "a client is stuck"

    def count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def wait(self, events: int, what: str, timeout_s: float = 30) -> None:
        """Wait until ``events`` more are acknowledged; fail naming ``what`` if they are not
        within ``timeout_s``, or if an answer was wrong or never came."""
        target = self.count() + events
        reached = wait_for(
            lambda: self.count() >= target or bool(self.wrong or self.unknown), timeout_s
        )
        assert not self.wrong, self.wrong[:5]
        assert not self.unknown, f"{len(self.unknown)} requests got no answer"
        assert reached, f"{what}: {self.count()} of {target} acknowledged in {timeout_s} s"

    def _take(self) -> list[dict[str, Any]] | None:
        with self._lock:
            start, self.taken = self.taken, self.taken + self.batch
        return self.docs[start : start + self.batch] or None

    def _client(self, abandoning: bool) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            batch = self._take()
            while batch is not None and not self._stop.is_set():
                ids = [d["event_id"] for d in batch]
                with self._lock:
                    self.sent.update(ids)
                started = time.monotonic()
                try:
                    answer = http.post("/v1/events", json=batch)
                except httpx.TransportError as exc:
                    with self._lock:
                        self.unknown.append(batch)
                        self.cut_off += not isinstance(exc, httpx.ConnectError)
                    return
                if answer.status_code == 202 and answer.json()["event_ids"] == ids:
                    with self._lock:
                        self.accepted += ids
                        self.answers.append((time.monotonic(), 202, time.monotonic() - started))
                    batch = self._take()
                    pause = self.pause_s
                elif answer.status_code == 503 and _retry_after(answer) >= 1:
                    with self._lock:
                        self.answers.append((time.monotonic(), 503, time.monotonic() - started))
                        if abandoning:
                            self.abandoned.update(ids)
                    if abandoning:
                        batch = self._take()
                    pause = self.pause_after_503_s
                else:
                    with self._lock:
                        self.wrong.append(f"{ids[0]}: {answer.status_code} {answer.text[:300]}")
                    return
                time.sleep(pause)


def _retry_after(answer: httpx.Response) -> int:
    """The answer's ``Retry-After`` in seconds if it is problem details, else 0."""
    if answer.headers.get("content-type") != "application/problem+json":
        return 0
    return int(answer.headers.get("Retry-After", "0"))
