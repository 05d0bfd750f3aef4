"""What only the PostgreSQL store has: a server on the network that can go away, a pool
of connections, and text it cannot hold. The outage runs through a TCP proxy the test
cuts, so the shared server itself stays up."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import PG_URL, LiveServer, free_port
from tests.store.conftest import rec
from tests.tcp_proxy import TcpProxy
from waymark.api.app import create_app
from waymark.api.health import READY_FOR_S
from waymark.errors import BadRequest, Unavailable
from waymark.model import Record
from waymark.store import changefeed
from waymark.store.base import (
    ApiKey,
    DatasetDetails,
    EventQuery,
    Notification,
    Store,
    TraceQuery,
    Webhook,
)
from waymark.store.postgres import PostgresStore

FAST = {"timeout": 0.3, "attempts": 3, "backoff": 0.02, "max_backoff": 0.1}


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    info = psycopg.conninfo.conninfo_to_dict(PG_URL)
    target = (str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    proxied = TcpProxy(target)
    try:
        yield proxied
    finally:
        proxied.close()


def through(url: str, proxy: TcpProxy) -> str:
    host = psycopg.conninfo.conninfo_to_dict(PG_URL).get("host") or "127.0.0.1"
    port = psycopg.conninfo.conninfo_to_dict(PG_URL).get("port") or 5432
    return url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")


def test_an_unreachable_server_is_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    with pytest.raises(Unavailable, match=r"cannot connect to PostgreSQL test@127\.0\.0\.1"):
        PostgresStore(url, open_timeout=0.5, **FAST)  # type: ignore[arg-type]


def test_an_outage_answers_503_with_retry_after_and_the_api_recovers(
    pg_url: str, proxy: TcpProxy
) -> None:
    store = PostgresStore(through(pg_url, proxy), **FAST)  # type: ignore[arg-type]
    try:
        with TestClient(create_app(store=store)) as client:
            assert (
                client.post("/v1/events", json={"trace_id": "t", "event_id": "a"}).status_code
                == 202
            )
            proxy.cut()
            for response in (
                client.post("/v1/events", json={"trace_id": "t", "event_id": "b"}),
                client.get("/v1/traces/t"),
            ):
                assert response.status_code == 503
                assert response.headers["retry-after"] == "1"
                assert response.headers["content-type"] == "application/problem+json"
                assert "is unavailable" in response.json()["detail"]
            assert client.get("/healthz").status_code == 200  # the process lives
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.headers["retry-after"] == "1"
            assert not_ready.json()["status"] == "unavailable"
            assert "is unavailable" in not_ready.json()["detail"]
            proxy.restore()
            # A client retrying as told (Retry-After) gets in once the pool has reconnected.
            deadline = time.monotonic() + 15
            while True:
                again = client.post("/v1/events", json={"trace_id": "t", "event_id": "b"})
                if again.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert again.status_code == 202
            summary = client.get("/v1/traces/t").json()
            assert summary["event_count"] == 2
            time.sleep(READY_FOR_S)  # the outcome of the last readiness check is kept this long
            assert client.get("/readyz").json() == {"status": "ready", "warnings": []}
    finally:
        store.close()


def test_connections_killed_by_the_server_are_replaced(pg_url: str) -> None:
    name = f"wm_test_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(f"{pg_url}&application_name={name}", min_size=2, **FAST)  # type: ignore[arg-type]
    try:
        store.append([rec("t", "e1")])
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                " FROM pg_stat_activity WHERE application_name = %s",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        assert store.append([rec("t", "e2")]).inserted == 1
        summary = store.summary("default", "t")
        assert summary is not None and summary.event_count == 2
    finally:
        store.close()


def test_text_postgresql_cannot_hold_is_refused_as_bad_input(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        with TestClient(create_app(store=store)) as client:
            response = client.post(
                "/v1/events",
                json=[
                    {"trace_id": "t", "event_id": "ok"},
                    {"trace_id": "t", "component": "a\u0000"},
                ],
            )
            assert response.status_code == 422  # refused at the door, in every mode
            assert "NUL" in response.json()["detail"]
            assert client.get("/v1/traces/t").status_code == 404
    finally:
        store.close()


def test_a_value_too_large_to_index_is_bad_input_not_an_outage(pg_url: str) -> None:
    """A tenant and a record id at their length limits, in 4-byte characters that do not
    compress, pass the 2,704 bytes a btree entry may hold."""
    rng = random.Random(4)
    emoji = "".join(chr(rng.randrange(0x1F300, 0x1FAFF)) for _ in range(700))
    store = PostgresStore(pg_url)
    try:
        with pytest.raises(BadRequest, match="too large for PostgreSQL to index"):
            store.append([rec("t", "e1", tenant=emoji[:200], record_id=emoji[200:])])
        assert store.summary(emoji[:200], "t") is None
    finally:
        store.close()


def test_waymark_serve_on_postgresql(pg_url: str) -> None:
    server = LiveServer(pg_url)
    try:
        batch = [{"trace_id": "t", "event_id": f"e{i}", "component": f"c{i}"} for i in range(3)]
        batch.append({"trace_id": "t", "event_id": "end", "trace_status": "FINISHED"})
        posted = httpx.post(f"{server.url}/v1/events", json=batch)
        assert posted.status_code == 202
        assert posted.json()["accepted"] == 4
        again = httpx.post(f"{server.url}/v1/events", json=batch)
        assert again.status_code == 202
        summary = httpx.get(f"{server.url}/v1/traces/t").json()
        assert (summary["done"], summary["event_count"]) == (True, 4)
    finally:
        server.stop()


def test_a_malformed_url_is_named() -> None:
    with pytest.raises(ValueError, match="not a valid PostgreSQL URL"):
        PostgresStore("postgresql://postgres@127.0.0.1/test?bogus_option=1")


#: one call of each operation of :class:`Store`, each reaching the database.
OPERATIONS: dict[str, Callable[[Store], object]] = {
    "append": lambda s: s.append([rec("t", f"e-{uuid.uuid4().hex}", path="/p")]),
    "summary": lambda s: s.summary("default", "t"),
    "summaries": lambda s: s.summaries("default", ["t", "u"]),
    "event_counts": lambda s: s.event_counts([("default", "t"), ("other", "t")]),
    "events": lambda s: s.events("default", "t"),
    "search": lambda s: s.search("default", TraceQuery()),
    "paths": lambda s: s.paths("default", "/p"),
    "lineage": lambda s: s.lineage("default", "t"),
    "trace_items": lambda s: s.trace_items("default", "t", "path"),
    "overview": lambda s: s.overview("default", 0),
    "find_events": lambda s: s.find_events("default", EventQuery(trace_id="t")),
    "put_dataset_details": lambda s: s.put_dataset_details(
        [DatasetDetails("default", "t", "ds", None, "csv", 1, 1, 2)]
    ),
    "dataset_details": lambda s: s.dataset_details("default", trace_id="t"),
    "park": lambda s: s.park([("subject", "reason", b"raw")]),
    "dead_letters": lambda s: s.dead_letters(),
    "discard_dead_letters": lambda s: s.discard_dead_letters([1, 2]),
    "ping": lambda s: s.ping(),
    "check_writable": lambda s: s.check_writable(),
    "delete_traces": lambda s: s.delete_traces([("default", "t-none")]),
    "stale_traces": lambda s: s.stale_traces("default", 1),
    "tenants": lambda s: s.tenants(),
    "drop_tombstones": lambda s: s.drop_tombstones(1),
    "claim": lambda s: s.claim("retried", "me", 2, 1),
    "durability_warnings": lambda s: s.durability_warnings(),
    "add_api_key": lambda s: s.add_api_key(
        ApiKey(f"k{uuid.uuid4().hex[:12]}", "retried", ("default:reader",), "0" * 64, 1)
    ),
    "api_key": lambda s: s.api_key("k-none"),
    "api_keys": lambda s: s.api_keys(),
    "revoke_api_key": lambda s: s.revoke_api_key("k-none", 1),
    "add_webhook": lambda s: s.add_webhook(
        Webhook(
            "default",
            f"wh_{uuid.uuid4().hex}",
            "https://example.com/",
            ("trace.started",),
            "whsec_AA==",
            1,
        )
    ),
    "webhook": lambda s: s.webhook("default", "wh-none"),
    "webhooks": lambda s: s.webhooks("default"),
    "delete_webhook": lambda s: s.delete_webhook("default", "wh-none"),
    "deliveries": lambda s: s.deliveries("default", "wh-none"),
    "sweep_stalls": lambda s: s.sweep_stalls(1),
    "claim_notifications": lambda s: s.claim_notifications(1, lease_us=1),
    "settle_notification": lambda s: s.settle_notification(
        Notification("msg-none", "default", "t", "wh-none", "trace.started", 1, 0, "", ""),
        at_us=1,
        status=200,
        error=None,
        next_us=None,
        delivered=True,
    ),
}
#: what needs no connection: nothing to retry; follow_changes has a connection of its own
#: and makes it again when it is lost (test_the_change_feed_listens_again_after_its_...).
WITHOUT_CONNECTIONS = {"close", "commit_marker", "follow_changes"}


def test_every_operation_is_retried_on_a_connection_broken_under_it(pg_url: str) -> None:
    """Each operation of the Store interface, run on a pooled connection that the server
    has just terminated, succeeds: it is run again on a fresh one. An operation added to
    the interface must be added to OPERATIONS, and then fails here unless it is retried."""
    declared = {
        name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))
    }
    assert declared - WITHOUT_CONNECTIONS == set(OPERATIONS), "add the new operation here"
    store = PostgresStore(pg_url, min_size=1, max_size=2, **FAST)  # type: ignore[arg-type]
    breaks: list[int] = []
    real_getconn = store._pool.getconn

    def getconn(timeout: float | None = None) -> psycopg.Connection[Any]:
        conn = real_getconn(timeout)
        if breaks:
            breaks.pop()
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(  # and wait until its backend has gone
                    "SELECT pg_terminate_backend(%s, 5000)", (conn.info.backend_pid,)
                )
        return conn

    store._pool.getconn = getconn  # type: ignore[method-assign]
    try:
        for name, operation in OPERATIONS.items():
            breaks.append(1)
            operation(store)
            assert breaks == [], f"{name} never took a connection"
        assert store.summary("default", "t") is not None
    finally:
        store.close()


def test_a_database_that_takes_no_writes_is_unavailable_to_the_write_probe(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    with store._pool.connection() as conn:  # its one connection, read-only from now on
        conn.execute("SET default_transaction_read_only = on")
    try:
        store.ping()  # it answers reads
        with pytest.raises(Unavailable, match="takes no writes"):
            store.check_writable()
        with pytest.raises(Unavailable, match="takes no writes"):
            store.append([rec("t", "e1")])
    finally:
        store.close()


def test_the_change_feed_listens_again_after_its_connection_is_terminated(pg_url: str) -> None:
    """A process hears another's appends through the store's change feed; when its
    listening connection is cut, it connects and listens again, and hears what comes after."""
    listener = PostgresStore(pg_url)
    writer = PostgresStore(pg_url)
    heard: list[tuple[str, str]] = []

    def record(tenant: str, trace_id: str) -> Record:
        return rec(trace_id, f"e-{trace_id}", tenant=tenant)

    async def until(count: int) -> None:
        for _ in range(100):
            if len(heard) >= count:
                return
            await asyncio.sleep(0.05)

    async def go() -> None:
        following = asyncio.create_task(listener.follow_changes(heard.extend))
        try:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(writer.append, [record("a", "first")])
            listener.append([record("a", "own")])  # its own: not heard
            await until(1)
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                cut = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (changefeed.listener_name(listener.origin),),
                ).fetchall()
            assert cut == [(True,)]
            await asyncio.sleep(1)  # it connects again
            await asyncio.to_thread(writer.append, [record("b", "second")])
            await until(2)
        finally:
            following.cancel()

    try:
        asyncio.run(go())
    finally:
        listener.close()
        writer.close()
    assert heard == [("a", "first"), ("b", "second")]
