"""The web page: served with a strict policy, and its script consistent with its page."""

from __future__ import annotations

import re
from importlib.resources import files

from fastapi.testclient import TestClient

STATIC = files("waymark.api") / "static"


def test_the_page_and_its_files_are_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/ui/app.js"' in page.text
    script = client.get("/ui/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/style.css").headers["content-type"].startswith("text/css")


def test_only_the_page_files_are_served(client: TestClient) -> None:
    for name in ("index.html", "../page.py", "nothing.js", "__init__.py"):
        response = client.get(f"/ui/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"] == "application/problem+json"


def test_the_script_puts_what_producers_sent_into_the_page_as_text() -> None:
    script = STATIC.joinpath("app.js").read_text()
    for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert unsafe not in script, unsafe


def test_every_element_the_script_uses_is_on_the_page() -> None:
    script = STATIC.joinpath("app.js").read_text()
    page = STATIC.joinpath("index.html").read_text()
    used = set(re.findall(r'\$\("([\w-]+)"\)', script))
    present = set(re.findall(r'id="([\w-]+)"', page))
    assert used, "the script looks elements up with $(...)"
    assert used <= present, sorted(used - present)


def test_the_script_reads_only_the_v1_api() -> None:
    """One ``fetch``, in ``api()``; every call of ``api`` names a ``/v1`` path."""
    script = STATIC.joinpath("app.js").read_text()
    assert script.count("fetch(") == 1
    calls = re.findall(r"(?<!function )\bapi\(([^,)]+)", script)
    assert calls
    for argument in calls:
        assert argument.startswith(('"/v1/', "traceUrl(")), argument
    assert 'return "/v1/traces/" + encodeURIComponent(traceId)' in script
