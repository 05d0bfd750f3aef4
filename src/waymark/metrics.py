"""The process's metrics, in Prometheus's text format (the ``prometheus-client`` library).

Every metric is defined here once, with its name, help and labels; the rest of the code
calls the small functions below (``events_accepted(door, n)``, ...) and never touches a
metric object. Every label takes values from a fixed set, or from the app's route
templates: a request can never make a new series of its own.

Several processes (``waymark serve --workers N``) share one view through
``PROMETHEUS_MULTIPROC_DIR``, the library's multiprocess mode: each worker writes its
values to files there, and :func:`exposition` sums them over the workers. The variable
must be set before the library is imported in a worker (``waymark serve`` sets it
before it starts them: :func:`private_directory`), and a worker that ends marks itself
dead (:func:`process_ended`), so that its gauges leave the sum.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)

MULTIPROC_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"

#: the media type of :func:`exposition`
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

#: the front doors, the values of the ``door`` label
DOORS: Final = ("v1", "okdata", "gsm", "openlineage", "stepfunctions")
#: the ``route`` label of a request that matched no route
UNMATCHED: Final = "<unmatched>"
#: the ``method`` label of a request whose method is none of these
OTHER_METHOD: Final = "OTHER"
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: webhook delivery outcomes: answered 2xx; failed and due again; failed and given up on
DELIVERY_OUTCOMES: Final = ("delivered", "failed", "gave_up")
#: the states a trace can turn to that are counted
TURNED_STATES: Final = ("SUCCEEDED", "FAILED", "STALLED")

# The *_created series (when each series began) only double what is exposed.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library

_ACCEPTED = Counter(
    "waymark_events_accepted_total",
    "Events accepted (durable) by a front door",
    ["door"],
)
_REJECTED = Counter(
    "waymark_events_rejected_total",
    "Submissions a front door refused with a 4xx answer (invalid, too large, not allowed)",
    ["door", "status"],
)
_HTTP = Histogram(
    "waymark_http_request_duration_seconds",
    "HTTP requests by route template, method and status, from the request's arrival to"
    " the end of its answer",
    ["route", "method", "status"],
)
_APPEND = Histogram(
    "waymark_store_append_seconds",
    "Store appends of accepted events (one transaction each, of one or more requests)",
)
_PUBLISH = Histogram(
    "waymark_bus_publish_seconds",
    "Publishes of one request's messages to JetStream, until every one is acknowledged",
)
_BATCHES = Counter("waymark_collector_batches_total", "Batches the collector fetched")
_MESSAGES = Counter("waymark_collector_messages_total", "Messages the collector fetched")
_PENDING = Gauge(
    "waymark_collector_pending_messages",
    "Messages of a stream its durable consumer has not delivered yet (JetStream's"
    " num_pending), as the collector read it last",
    ["source"],
    multiprocess_mode="mostrecent",
)
_DEAD_LETTERS = Counter(
    "waymark_dead_letters_total", "Messages the collector parked in the dead-letter table"
)
_DELIVERIES = Counter(
    "waymark_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, failed: due again, gave_up)",
    ["outcome"],
)
_TURNED = Counter(
    "waymark_traces_turned_total",
    "Traces that turned SUCCEEDED or FAILED (counted by the commit that turned them) or"
    " STALLED (noticed by the stall sweep)",
    ["state"],
)

# Each label set's child, made once: ``labels()`` takes a lock, a dict read does not.
_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def _child(metric: Counter | Histogram, *labels: str) -> Any:
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*labels))
    return child


def events_accepted(door: str, n: int) -> None:
    _child(_ACCEPTED, door).inc(n)


def events_rejected(door: str, status: int) -> None:
    _child(_REJECTED, door, str(status)).inc()


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """One answered request; ``route`` is its route's path template (or
    :data:`UNMATCHED`), never the request's own path."""
    if method not in METHODS:
        method = OTHER_METHOD
    _child(_HTTP, route, method, str(status)).observe(seconds)


def store_append(seconds: float) -> None:
    """One store append took ``seconds`` (whether it succeeded or failed)."""
    _APPEND.observe(seconds)


def bus_publish(seconds: float) -> None:
    """One request's publish took ``seconds`` (whether it succeeded or failed)."""
    _PUBLISH.observe(seconds)


def collector_batch(messages: int) -> None:
    _BATCHES.inc()
    _MESSAGES.inc(messages)


def pending(source: str, n: int) -> None:
    _PENDING.labels(source).set(n)


def dead_letters(n: int) -> None:
    _DEAD_LETTERS.inc(n)


def webhook_delivery(outcome: str) -> None:
    _child(_DELIVERIES, outcome).inc()


def traces_turned(states: list[str]) -> None:
    """Count each state of ``states`` (one item per trace that turned)."""
    for state in states:
        _child(_TURNED, state).inc()


def traces_stalled(n: int) -> None:
    if n:
        _child(_TURNED, "STALLED").inc(n)


for _door in DOORS:  # every door's series exists from the start, at 0
    _ACCEPTED.labels(_door)
for _outcome in DELIVERY_OUTCOMES:
    _DELIVERIES.labels(_outcome)
for _state in TURNED_STATES:
    _TURNED.labels(_state)


# -- exposition and processes ----------------------------------------------------------------


def registry() -> CollectorRegistry:
    """What to expose: every process's values when several share
    ``PROMETHEUS_MULTIPROC_DIR``, else this process's."""
    path = os.environ.get(MULTIPROC_DIR)
    if not path:
        return REGISTRY
    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed, path)  # type: ignore[no-untyped-call]  # untyped in the library
    return summed


def exposition() -> bytes:
    """The metrics in Prometheus's text format (:data:`CONTENT_TYPE`)."""
    return generate_latest(registry())


def serve(host: str, port: int) -> None:
    """Serve :func:`exposition` over HTTP on ``host``:``port`` in a daemon thread (the
    library's own server), for a process without an API of its own (the collector);
    OSError if the port cannot be had."""
    start_http_server(port, host, registry=registry())


def process_ended() -> None:
    """Mark this process dead in a multiprocess directory: its live gauges leave the sum
    (its counters stay, as a dead worker's requests did happen)."""
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # untyped in the library


@contextlib.contextmanager
def private_directory() -> Iterator[str]:
    """A multiprocess directory for the workers of one server: the operator's
    ``PROMETHEUS_MULTIPROC_DIR`` if set (emptied of its files first, as the library
    requires at start), else a new private directory, removed afterwards. Sets the
    variable, so that workers started within inherit it."""
    given = os.environ.get(MULTIPROC_DIR)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        yield given
        return
    path = tempfile.mkdtemp(prefix="waymark-metrics-")  # mode 0700: this user's alone
    os.environ[MULTIPROC_DIR] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_DIR, None)
        shutil.rmtree(path, ignore_errors=True)
