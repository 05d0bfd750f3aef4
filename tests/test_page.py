"""The web page's files: served with a strict policy, and nothing else under ``/ui``. What the
page shows is tested in a browser (``test_page_browser.py``)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_the_page_and_its_files_are_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in re.findall(r'(?:src|href)="/ui/([^"]+)"', page.text):
        served = client.get(f"/ui/{name}")
        assert served.status_code == 200, name
        assert served.headers["content-security-policy"] == policy
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        assert client.get(f"/ui/{name}").headers["content-type"].startswith(kind)
    assert "Permission is hereby granted" in client.get("/ui/dagre.LICENSE.txt").text


def test_only_the_page_files_are_served(client: TestClient) -> None:
    for name in ("index.html", "../page.py", "nothing.js", "__init__.py"):
        response = client.get(f"/ui/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"] == "application/problem+json"
