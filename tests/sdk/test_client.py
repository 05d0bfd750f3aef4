"""The clients: every call against a live server; retries and errors over httpx's mock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import waymark.sdk.client as client_module
from tests.conftest import LiveServer
from waymark.sdk import (
    AsyncClient,
    Backoff,
    Client,
    ClientError,
    ConnectionFailed,
    InvalidRequest,
    ServerUnavailable,
    TraceNotFound,
    WaitTimeout,
)
from waymark.sdk._retry import parse_retry_after

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NATIVE = json.loads((EXAMPLES / "native-events.json").read_text())
TRACE = NATIVE[0]["trace_id"]


def test_client_against_a_live_server(live_server: LiveServer) -> None:
    with Client(live_server.url, tenant="client-test") as client:
        result = client.send(NATIVE)
        assert result.accepted == 3
        assert len(set(result.event_ids)) == 3

        summary = client.summary(TRACE)
        assert (summary.done, summary.state, summary.event_count) == (True, "SUCCEEDED", 3)
        assert summary.tenant == "client-test"

        events = list(client.events(TRACE, page_size=1))  # three pages
        assert [e["stage"] for e in events] == ["UPLOAD", "TRANSFORM", "END"]
        assert [e["event_id"] for e in events] == result.event_ids

        found = list(client.search(domain="dataset", done=True, page_size=1))
        assert [s.trace_id for s in found] == [TRACE]

        [hit] = client.paths("processed/green/parking-fees/fees.parquet")
        assert hit.trace_id == TRACE
        assert hit.received_at is not None and hit.received_at >= hit.at  # sent after

        lineage = client.lineage(TRACE)
        step = f"step:{result.event_ids[1]}"
        assert [(e.from_, e.to) for e in lineage.edges] == [
            ("path:raw/green/parking-fees/fees.csv", step),
            (step, "path:processed/green/parking-fees/fees.parquet"),
        ]
        whole = client.lineage(TRACE, page_size=2)  # a page of one edge: joined again
        assert (whole.edges, whole.nodes, whole.next) == (lineage.edges, lineage.nodes, None)

        assert client.wait(TRACE, timeout=5).done

        with pytest.raises(TraceNotFound):
            client.summary("no-such-trace")
    with Client(live_server.url) as other_tenant, pytest.raises(TraceNotFound):
        other_tenant.summary(TRACE)


def test_wait_holds_until_the_trace_is_done(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        client.send({"trace_id": "t-wait", "stage": "A"})
        with pytest.raises(WaitTimeout) as caught:
            client.wait("t-wait", timeout=0.5)
        assert caught.value.summary is not None
        assert caught.value.summary.state == "RUNNING"
        with pytest.raises(WaitTimeout) as never:
            client.wait("t-never", timeout=0.5)
        assert never.value.summary is None

        async def finish_later() -> Any:
            async with AsyncClient(live_server.url) as aclient:
                waiter = asyncio.create_task(aclient.wait("t-wait", timeout=20))
                await asyncio.sleep(0.3)
                await aclient.send({"trace_id": "t-wait", "trace_status": "FINISHED"})
                return await waiter

        final = asyncio.run(finish_later())
        assert final.done and final.event_count == 2


def test_async_client_against_a_live_server(live_server: LiveServer) -> None:
    async def main() -> None:
        async with AsyncClient(live_server.url, tenant="async") as client:
            await client.send(NATIVE)
            summary = await client.summary(TRACE)
            assert summary.done
            stages = [e["stage"] async for e in client.events(TRACE, page_size=2)]
            assert stages == ["UPLOAD", "TRANSFORM", "END"]
            assert [s.trace_id async for s in client.search(domain_id="parking-fees/1")] == [TRACE]
            assert (await client.paths("raw/green/parking-fees/fees.csv"))[0].trace_id == TRACE
            assert (await client.lineage(TRACE)).nodes
            with pytest.raises(InvalidRequest) as caught:
                await client.send({"stage": "no trace id"})
            assert caught.value.status == 422
            assert caught.value.errors[0]["loc"][-1] == "trace_id"

    asyncio.run(main())


# -- retries and errors, over httpx.MockTransport -----------------------------------------------


class Script:
    """Answers requests in turn from a list of responses or exceptions; records each."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


ACCEPTED = httpx.Response(202, json={"accepted": 1, "event_ids": ["e1"]})
FAST = Backoff(base=0.001, cap=0.01)


def mock_client(script: Script, retries: int = 3) -> Client:
    return Client(
        "http://waymark.test",
        retries=retries,
        backoff=FAST,
        transport=httpx.MockTransport(script),
    )


def test_retries_connection_errors_and_5xx_then_succeeds() -> None:
    script = Script(
        httpx.ConnectError("refused"),
        httpx.Response(503, json={"status": 503, "detail": "store down"}),
        httpx.ReadTimeout("slow"),
        ACCEPTED,
    )
    with mock_client(script) as client:
        assert client.send({"trace_id": "t", "event_id": "e1"}).event_ids == ["e1"]
    assert len(script.requests) == 4
    bodies = {r.content for r in script.requests}
    assert len(bodies) == 1  # every retry sends the same events, same ids


def test_send_sets_event_ids_so_retries_are_idempotent() -> None:
    script = Script(httpx.Response(500), ACCEPTED)
    with mock_client(script) as client:
        client.send({"trace_id": "t"})
    first, second = (json.loads(r.content) for r in script.requests)
    assert first == second
    assert first[0]["event_id"]


def test_gives_up_after_the_retries() -> None:
    refusals = Script(*[httpx.ConnectError("refused")] * 3)
    with mock_client(refusals, retries=2) as client, pytest.raises(ConnectionFailed) as caught:
        client.summary("t")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    script = Script(*[httpx.Response(429)] * 2)
    with mock_client(script, retries=1) as client, pytest.raises(ServerUnavailable) as busy:
        client.summary("t")
    assert busy.value.status == 429


def test_honours_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", pauses.append)
    script = Script(
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(503, headers={"Retry-After": "7"}),
        ACCEPTED,
    )
    client = Client(
        "http://waymark.test", backoff=Backoff(cap=60), transport=httpx.MockTransport(script)
    )
    with client:
        client.send({"trace_id": "t"})
    assert pauses == [2.0, 7.0]


def test_retry_after_as_delta_or_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert Backoff(cap=5).delay(0, retry_after=60) == 5
    assert all(0 <= Backoff(base=1, cap=4).delay(10) <= 4 for _ in range(100))


def test_client_errors_are_not_retried() -> None:
    problem = {
        "type": "about:blank",
        "status": 422,
        "title": "Unprocessable Content",
        "detail": "body.0.trace_id: Field required",
        "errors": [{"loc": ["body", 0, "trace_id"], "msg": "Field required"}],
    }
    script = Script(httpx.Response(422, json=problem))
    with mock_client(script) as client, pytest.raises(InvalidRequest) as caught:
        client.send({"stage": "x"})
    assert len(script.requests) == 1
    assert caught.value.detail == "body.0.trace_id: Field required"
    assert caught.value.errors == problem["errors"]


def test_a_garbled_success_is_an_error_not_a_crash() -> None:
    html = Script(httpx.Response(200, text="<html>"))
    with mock_client(html) as client, pytest.raises(ClientError, match="not JSON"):
        client.summary("t")
    partial = Script(httpx.Response(200, json={"trace_id": "t"}))
    with mock_client(partial) as client, pytest.raises(ClientError, match="unexpected answer"):
        client.summary("t")


def _httpx_errors() -> list[type[Exception]]:
    found = []
    for name in httpx.__all__:
        obj = getattr(httpx, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            found.append(obj)
    return found


@pytest.mark.parametrize("error", _httpx_errors(), ids=lambda e: e.__name__)
def test_no_httpx_error_slips_through(error: type[Exception]) -> None:
    exc = error.__new__(error)
    Exception.__init__(exc, "boom")
    with mock_client(Script(*[exc] * 4)) as client, pytest.raises(ClientError) as caught:
        client.summary("t")
    assert caught.value.__cause__ is exc

    async def main(make: Callable[[], AsyncClient]) -> None:
        async with make() as aclient:
            await aclient.summary("t")

    def make() -> AsyncClient:
        return AsyncClient(
            "http://waymark.test",
            backoff=FAST,
            transport=httpx.MockTransport(Script(*[exc] * 4)),
        )

    with pytest.raises(ClientError):
        asyncio.run(main(make))


def test_tenant_header_and_trace_id_quoting() -> None:
    script = Script(
        httpx.Response(404, json={"detail": "no trace"}),
        ACCEPTED,
    )
    client = Client(
        "http://waymark.test",
        tenant="opendes",
        transport=httpx.MockTransport(script),
    )
    with client:
        with pytest.raises(TraceNotFound):
            client.summary("a/b?c#d")
        client.send({"trace_id": "x"}, tenant="other")
    first, second = script.requests
    assert first.url.raw_path == b"/v1/traces/a%2Fb%3Fc%23d"
    assert first.headers["Waymark-Tenant"] == "opendes"
    assert second.headers["Waymark-Tenant"] == "other"


def test_send_splits_big_batches_within_the_api_limits() -> None:
    answers = [
        httpx.Response(202, json={"accepted": n, "event_ids": [f"e{i}" for i in range(n)]})
        for n in (1000, 500)
    ]
    script = Script(*answers)
    with mock_client(script) as client:
        result = client.send([{"trace_id": f"t{i}"} for i in range(1500)])
    assert result.accepted == 1500
    assert [len(json.loads(r.content)) for r in script.requests] == [1000, 500]
