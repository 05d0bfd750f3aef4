import httpx

from tests.conftest import LiveServer


def test_live_server_answers(live_server: LiveServer) -> None:
    r = httpx.post(
        f"{live_server.url}/v1/events", json={"trace_id": "t", "trace_status": "FINISHED"}
    )
    assert r.status_code == 202
    assert httpx.get(f"{live_server.url}/v1/traces/t").json()["done"] is True
